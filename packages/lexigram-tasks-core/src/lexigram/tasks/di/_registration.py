"""Handler and schedule registration of `TaskProvider` (a mixin, to keep files small)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from lexigram.contracts.tasks import Job, JobTemplate, Priority, TaskRegistrationError
from lexigram.tasks.constants import scheduled_task_id
from lexigram.tasks.decorators import TaskFunction, schedule_template
from lexigram.tasks.execution import HandlerRegistry, TaskOptions
from lexigram.tasks.scheduling import TaskScheduler

logger = logging.getLogger(__name__)


class HandlerRegistrationMixin:
    """Registers handlers and cron schedules on `registry` and `scheduler`."""

    registry: HandlerRegistry
    scheduler: TaskScheduler | None

    def register_handler(
        self,
        task_name: str,
        handler: Callable[..., Any],
        *,
        options: TaskOptions | None = None,
    ) -> None:
        """Register a task handler (workers see it at once, even after boot).

        Args:
            task_name: Name of the task type.
            handler: Handler function (sync or async).
            options: The task's options (default: a ``@task`` function's own, else
                the defaults); the worker runs every job of the task with them.
        """
        self.registry.register(task_name, handler, options=options)

    def register_scheduled_task(self, task_func: Any) -> None:
        """Register a decorated task function for scheduling.

        Validates that the task has the metadata ``@scheduled`` sets (``_task_name`` and
        ``_cron``). Registration is atomic: if scheduling fails, the handler is rolled
        back (a handler it replaced is restored). With the scheduler disabled, the
        handler is registered and the schedule is skipped with a warning.

        Args:
            task_func: Task function decorated with ``@scheduled``.

        Raises:
            TaskRegistrationError: ``_task_name`` or ``_cron`` is missing, or the cron
                expression is invalid.
        """
        name = getattr(task_func, "_task_name", None)
        cron = getattr(task_func, "_cron", None)
        missing = [attr for attr, value in (("_task_name", name), ("_cron", cron)) if not value]
        if missing:
            msg = (
                f"register_scheduled_task() got {task_func!r}, which has no "
                f"{' or '.join(missing)}. Decorate the function with @scheduled('<cron>') "
                "(or register a plain task with register_handler)."
            )
            raise TaskRegistrationError(msg, details={"missing": missing})
        options = task_func.options if isinstance(task_func, TaskFunction) else None
        template = schedule_template(str(name), options)
        if options is None:  # a duck-typed stand-in names its priority only
            template.priority = int(getattr(task_func, "_priority", Priority.NORMAL))
        self._register_and_schedule(str(name), task_func, str(cron), template)

    def _register_and_schedule(
        self,
        name: str,
        handler: Callable[..., Any],
        cron: str,
        template: JobTemplate,
        options: TaskOptions | None = None,
    ) -> None:
        previous = self.registry.lookup(name)
        self.registry.register(name, handler, options=options)
        if self.scheduler is None:
            logger.warning(
                "Task %r is registered but not scheduled (cron %r): the scheduler is disabled.",
                name,
                cron,
            )
            return
        try:
            # A fixed id: every process declaring this task shares one schedule, and the
            # scheduler's per-occurrence idempotency key makes it fire once across them.
            # Stored like the schedules declared before boot (written at once when the
            # loop runs, else by the scheduler's start), so `schedule list` shows it.
            self.scheduler.schedule_job(template, cron, job_id=scheduled_task_id(name))
        except Exception as exc:
            if previous is None:
                self.registry.remove(name)
            else:
                self.registry.register(name, previous[0], options=previous[1])
            msg = (
                f"Cannot schedule task {name!r} with cron {cron!r}: {exc} The handler "
                "registration was rolled back; fix the cron expression."
            )
            raise TaskRegistrationError(msg, details={"task_name": name, "cron": cron}) from exc

    def schedule_job_sync(
        self,
        job_template: Job | JobTemplate,
        cron_expression: str,
        job_id: str | None = None,
    ) -> str | None:
        """Schedule a job with cron expression.

        Args:
            job_template: Template (or job) to enqueue at each occurrence.
            cron_expression: Cron expression, e.g. ``"0 9 * * 1-5"``.
            job_id: Schedule id (generated when omitted).

        Returns:
            The schedule id, or None when the scheduler is disabled.
        """
        if self.scheduler is None:
            logger.warning("schedule_job_sync() ignored: the scheduler is disabled.")
            return None
        return self.scheduler.schedule_job_sync(job_template, cron_expression, job_id)

    def unschedule_job_sync(self, job_id: str) -> bool:
        """Remove a scheduled job; True if it was scheduled."""
        return self.scheduler.unschedule_job_sync(job_id) if self.scheduler is not None else False

    def get_scheduled_jobs(self) -> dict[str, Any] | None:
        """Get scheduled jobs information (None when the scheduler is disabled).

        Returns:
            ``{"scheduled_jobs": [{"job_id", "name", "cron", "next_run", "enabled"}]}``.
        """
        if self.scheduler is None:
            return None
        return {
            "scheduled_jobs": [
                {
                    "job_id": job.job_id,
                    "name": job.job_template.name,
                    "cron": job.cron_expression,
                    "next_run": job.next_run,
                    "enabled": job.enabled,
                }
                for job in self.scheduler.get_scheduled_jobs()
            ]
        }
