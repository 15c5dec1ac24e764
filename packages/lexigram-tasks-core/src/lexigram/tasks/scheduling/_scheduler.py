"""`TaskScheduler`: enqueues jobs from cron schedules, once per occurrence across processes.

Each occurrence is enqueued with a deterministic idempotency key (`_misfire`), so
schedulers sharing a schedule id and a queue fire it once. They share schedule ids by
restoring them from one store (`restore_from_store`) or by passing the same `job_id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from lexigram.contracts.tasks import Err, Job, JobTemplate, SchedulerStoreProtocol
from lexigram.tasks._outage import OutageLog
from lexigram.tasks._timezone import resolve_timezone
from lexigram.tasks.scheduling._cron import CronExpression, NoOccurrenceError
from lexigram.tasks.scheduling._handle import ScheduleHandle
from lexigram.tasks.scheduling._job import ScheduledJob, ScheduleOutcome
from lexigram.tasks.scheduling._misfire import (
    MisfirePolicy,
    fire_key,
    occurrences_to_fire,
)
from lexigram.tasks.scheduling._owners import (
    DEFAULT_NAMESPACE,
    check_namespace,
    merge_declared,
)
from lexigram.tasks.scheduling._persistence import StoredSchedules
from lexigram.tasks.scheduling._store import SchedulerStore, as_scheduler_store

if TYPE_CHECKING:
    from lexigram.tasks.config import TaskSchedulerConfig

logger = logging.getLogger(__name__)

T = TypeVar("T")

EnqueueCallback = Callable[[Job], Any]
"""Receives each job to enqueue: `queue.enqueue` or any sync/async callable."""


class TaskScheduler(StoredSchedules):
    """Task scheduler for cron-like job scheduling.

    Manages periodic job execution using cron expressions. The loop sleeps until the
    earliest next fire time (never longer than `check_interval`, and woken early when a
    schedule changes) and enqueues each due occurrence with a deterministic
    idempotency key, so several schedulers sharing schedules and a queue fire it once.

    Persistence: `schedule_job`/`unschedule_job` change the schedule at once and return
    an awaitable `ScheduleHandle`. With a store, the store write starts on the running
    loop right away; called with no running loop, it happens at the next
    `start_scheduler` or loop check, or when the handle is awaited. `enable_job` and
    `disable_job` are written the same way for schedules the store holds. The `_sync`
    variants never write to the store.

    Misfires (see `MisfirePolicy`): a scheduler that was down or late fires the latest
    missed occurrence once by default.

    Ownership: schedules are saved with the scheduler's `namespace` (the application)
    and `queue_name`, and a scheduler restores only its namespace's schedules. Before
    each check it re-reads them, so a schedule removed or paused in the store (e.g. by
    ``lexigram-tasks schedule remove``) does not fire again.

    Not thread-safe: call it from its event loop's thread.

    Example:
        scheduler = TaskScheduler()
        template = JobTemplateProtocol(name="cleanup", args=())
        scheduler.schedule_job(template, "0 0 * * *")  # Daily at midnight
        await scheduler.start_scheduler(queue.enqueue)

    Args:
        check_interval: Longest sleep between checks for due jobs (seconds).
        store: Optional store for durable persistence of schedules and next-run times:
            a `SchedulerStore` subclass or a backend's dict-record
            `SchedulerStoreProtocol`. Restore with `restore_from_store` after a restart.
        timezone: IANA timezone cron expressions are evaluated in (per-schedule override
            in `schedule_job`).
        misfire_policy: What to do with missed occurrences.
        misfire_grace_time: Seconds an occurrence may be late and still count as on time
            (used by `MisfirePolicy.SKIP`).
        max_catch_up: Most occurrences one schedule fires in one check under
            `MisfirePolicy.ALL`.
        namespace: The application owning this scheduler's schedules; schedulers of
            other namespaces sharing the store never restore or fire them.
        queue_name: The queue the jobs go to, recorded on each schedule (for
            ``lexigram-tasks schedule run-now`` and listings).
        adopt_unowned: Also restore stored schedules saved without a namespace (by an
            older version); by default only those this scheduler declares are taken over.

    Raises:
        ValueError: A bad timezone, interval, policy or cap.
    """

    def __init__(
        self,
        check_interval: float = 60.0,
        store: SchedulerStore | SchedulerStoreProtocol | None = None,
        *,
        timezone: str = "UTC",
        misfire_policy: MisfirePolicy | str = MisfirePolicy.LATEST,
        misfire_grace_time: float = 60.0,
        max_catch_up: int = 100,
        namespace: str = DEFAULT_NAMESPACE,
        queue_name: str | None = None,
        adopt_unowned: bool = False,
    ) -> None:
        if check_interval <= 0:
            msg = f"check_interval must be > 0 seconds, got {check_interval!r}. Pass e.g. 1.0."
            raise ValueError(msg)
        if max_catch_up < 1:
            msg = f"max_catch_up must be >= 1, got {max_catch_up!r}. Pass e.g. 100."
            raise ValueError(msg)
        try:
            policy = MisfirePolicy(misfire_policy)
        except ValueError:
            allowed = ", ".join(repr(p.value) for p in MisfirePolicy)
            msg = f"Unknown misfire_policy {misfire_policy!r}. Use one of {allowed}."
            raise ValueError(msg) from None
        resolve_timezone(timezone)
        self.check_interval = check_interval
        self.timezone = timezone
        self.misfire_policy = policy
        self.misfire_grace_time = misfire_grace_time
        self.max_catch_up = max_catch_up
        self._namespace = check_namespace(namespace)
        self.queue_name = queue_name
        self.adopt_unowned = adopt_unowned
        self.store: SchedulerStore | None = None if store is None else as_scheduler_store(store)
        self.scheduled_jobs: dict[str, ScheduledJob] = {}
        # Schedules declared without a timezone of their own: they follow `set_timezone`.
        self._in_scheduler_zone: set[str] = set()
        self.running = False
        self._callback: EnqueueCallback | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        # Store bookkeeping: ids whose store record must be (re)written or deleted, ids
        # the store holds, and the writes running in the background.
        self._dirty: set[str] = set()
        self._stored: set[str] = set()
        self._writes: set[asyncio.Task[None]] = set()
        self._store_lock = asyncio.Lock()
        # Each loop that talks to the store reports an outage in one line when it begins
        # and one when it ends (pending writes are retried at the next check).
        self._check_outage = OutageLog(logger, "Scheduler", "check its schedules")
        self._read_outage = OutageLog(logger, "Scheduler", "re-read the schedules from its store")
        self._write_outage = OutageLog(logger, "Scheduler", "write changes to its store")

    @classmethod
    def from_config(
        cls,
        config: TaskSchedulerConfig,
        store: SchedulerStore | SchedulerStoreProtocol | None = None,
        **options: Any,
    ) -> TaskScheduler:
        """Build a scheduler from `TaskSchedulerConfig` (interval, timezone, namespace).

        Args:
            config: The scheduler section of `TaskConfig`.
            store: Optional schedule store.
            **options: Further keyword arguments of `TaskScheduler`.

        Returns:
            The scheduler.
        """
        if config.namespace is not None:
            options.setdefault("namespace", config.namespace)
        if config.adopt_unowned:
            options.setdefault("adopt_unowned", True)
        return cls(config.check_interval, store, timezone=config.timezone, **options)

    # ------------------------------------------------------------------ scheduling

    def schedule_job_sync(
        self,
        job_template: JobTemplate | Job,
        cron_expression: str,
        job_id: str | None = None,
        *,
        timezone: str | None = None,
    ) -> str:
        """Schedule a job with cron expression (sync, no persistence).

        For the primary version with store persistence, use `schedule_job`.

        Args:
            job_template: Job template or job to schedule.
            cron_expression: Cron expression (e.g. ``"0 9 * * 1-5"``).
            job_id: Optional schedule id, generated (unique) if not provided. A schedule
                with the same id is replaced.
            timezone: Timezone of this schedule (defaults to the scheduler's).

        Returns:
            The schedule id.

        Raises:
            ValueError: The cron expression or timezone is invalid.
        """
        template = (
            job_template
            if isinstance(job_template, JobTemplate)
            else JobTemplate.from_job(job_template)
        )
        tz = timezone or self.timezone
        cron = CronExpression(cron_expression, timezone=tz)
        schedule_id = job_id or f"scheduled_{template.name}_{uuid.uuid4().hex[:12]}"
        next_run, enabled = _next_or_spent(cron, schedule_id)
        scheduled = ScheduledJob(
            job_template=template,
            cron_expression=cron.expression,
            next_run=next_run,
            enabled=enabled,
            timezone=tz,
            job_id=schedule_id,
            namespace=self._namespace,
            # Where its jobs go: its task's queue (``@scheduled(..., queue=...)``), else ours.
            queue_name=template.queue_name or self.queue_name,
        )
        scheduled._cron = cron  # noqa: SLF001 - reuse the expression just parsed
        previous = self.scheduled_jobs.get(schedule_id)
        if previous is not None:
            # The definition is replaced; the state (paused, last run) is kept.
            merge_declared(scheduled, previous)
            if (previous.job_template, previous.cron_expression, previous.timezone) != (
                template,
                cron.expression,
                tz,
            ):
                logger.info("Replacing schedule %r with cron %r.", schedule_id, cron.expression)
        self.scheduled_jobs[schedule_id] = scheduled
        if timezone is None:
            self._in_scheduler_zone.add(schedule_id)
        else:
            self._in_scheduler_zone.discard(schedule_id)
        self._wakeup.set()
        return schedule_id

    def declared_timezone(self, schedule_id: str) -> str | None:
        """The timezone `schedule_id` was declared with; None when it follows the scheduler's.

        A schedule declared without one is evaluated in ``self.timezone``, and moves with
        `set_timezone`; the command line declares it again that way in its own scheduler,
        so ``tasks.scheduler.timezone`` applies there as it does here.
        """
        if schedule_id in self._in_scheduler_zone:
            return None
        job = self.scheduled_jobs.get(schedule_id)
        return job.timezone if job is not None else None

    def set_timezone(self, timezone: str) -> None:
        """Make `timezone` the scheduler's, for the schedules that have none of their own.

        Those declared without a timezone are evaluated in the new one from now on (their
        next run is computed again); those given one keep it. `TaskProvider` calls this
        when it adopts an application's configuration after schedules were declared.

        Raises:
            ValueError: The timezone is not a known IANA name.
        """
        resolve_timezone(timezone)
        self.timezone = timezone
        now = time.time()
        for schedule_id in sorted(self._in_scheduler_zone):
            job = self.scheduled_jobs.get(schedule_id)
            if job is None or job.timezone == timezone:
                continue
            cron = CronExpression(job.cron_expression, timezone=timezone)
            job.timezone = timezone
            job._cron = cron  # noqa: SLF001 - the expression just parsed, as when declared
            job.next_run, still = _next_or_spent(cron, schedule_id, now)
            job.enabled = job.enabled and still
            self._persist_if_stored(schedule_id)
        self._wakeup.set()

    def schedule_job(
        self,
        job_template: JobTemplate | Job,
        cron_expression: str,
        job_id: str | None = None,
        *,
        timezone: str | None = None,
    ) -> ScheduleHandle[str]:
        """Schedule a job and persist it to the store if one is configured.

        The schedule exists when this returns; ``await`` the handle to wait for the
        store write and get the id (``handle.value`` holds it too).

        Args:
            job_template: Job template or job to schedule.
            cron_expression: Cron expression (e.g. ``"0 9 * * 1-5"``).
            job_id: Optional schedule id, generated (unique) if not provided.
            timezone: Timezone of this schedule (defaults to the scheduler's).

        Returns:
            An awaitable handle resolving to the schedule id.

        Raises:
            ValueError: The cron expression or timezone is invalid.
        """
        schedule_id = self.schedule_job_sync(
            job_template, cron_expression, job_id, timezone=timezone
        )
        return self._persist(schedule_id, schedule_id)

    def unschedule_job_sync(self, job_id: str) -> bool:
        """Remove a scheduled job (sync, no store deletion).

        Args:
            job_id: Schedule id to remove.

        Returns:
            True if the job was removed, False if not found.
        """
        removed = self.scheduled_jobs.pop(job_id, None) is not None
        self._in_scheduler_zone.discard(job_id)
        if removed:
            self._wakeup.set()
        return removed

    def unschedule_job(self, job_id: str) -> ScheduleHandle[bool]:
        """Remove a scheduled job and delete it from the store.

        The store record is deleted even when this scheduler does not hold the schedule.

        Args:
            job_id: Schedule id to remove.

        Returns:
            An awaitable handle resolving to True if this scheduler held the schedule.
        """
        removed = self.unschedule_job_sync(job_id)
        return self._persist(job_id, removed)

    def get_scheduled_jobs(self) -> list[ScheduledJob]:
        """Get all scheduled jobs.

        Returns:
            List of all scheduled jobs.
        """
        return list(self.scheduled_jobs.values())

    def get_scheduled_job(self, job_id: str) -> ScheduledJob | None:
        """Get a specific scheduled job.

        Args:
            job_id: Schedule id.

        Returns:
            The scheduled job, or None if not found.
        """
        return self.scheduled_jobs.get(job_id)

    def enable_job(self, job_id: str) -> bool:
        """Enable a scheduled job; it next fires at its next occurrence from now.

        Args:
            job_id: Schedule id.

        Returns:
            True if the job was enabled, False if not found.
        """
        job = self.scheduled_jobs.get(job_id)
        if job is None:
            return False
        if not job.enabled:
            # Occurrences that passed while disabled are not misfires: skip them.
            job.enabled = True
            job.next_run = job.calculate_next_run()
            self._wakeup.set()
            self._persist_if_stored(job_id)
        return True

    def disable_job(self, job_id: str) -> bool:
        """Disable a scheduled job (it stays registered but does not fire).

        Args:
            job_id: Schedule id.

        Returns:
            True if the job was disabled, False if not found.
        """
        job = self.scheduled_jobs.get(job_id)
        if job is None:
            return False
        if job.enabled:
            job.enabled = False
            self._persist_if_stored(job_id)
        return True

    def get_next_run_times(self) -> dict[str, float]:
        """Get next run times for all enabled scheduled jobs.

        Returns:
            Dictionary mapping schedule id to next run timestamp.
        """
        return {jid: job.next_run for jid, job in self.scheduled_jobs.items() if job.enabled}

    # ------------------------------------------------------------------ persistence

    # ------------------------------------------------------------------ the loop

    async def start_scheduler(self, enqueue_callback: EnqueueCallback) -> None:
        """Start the scheduler loop in the background and return.

        Args:
            enqueue_callback: Receives each due job: ``queue.enqueue`` (whose `Err`
                results are logged) or any sync or async callable.
        """
        if self.running:
            logger.warning("start_scheduler() called on a running scheduler; ignored.")
            return
        self._callback = enqueue_callback
        self._wakeup = asyncio.Event()
        await self._flush_logged()
        self.running = True
        self._loop_task = asyncio.get_running_loop().create_task(
            self._run(), name="lexigram-task-scheduler"
        )
        logger.info("Scheduler started with %d schedule(s).", len(self.scheduled_jobs))

    async def stop_scheduler(self, timeout: float = 10.0) -> None:
        """Stop the scheduler gracefully.

        The loop finishes the enqueue in progress (cancelled after `timeout` seconds),
        then pending store writes complete.

        Args:
            timeout: Seconds to wait for the loop before cancelling it.
        """
        self.running = False
        self._wakeup.set()
        task, self._loop_task = self._loop_task, None
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self._flush_logged()
        logger.info("Scheduler stopped.")

    async def _run(self) -> None:
        while self.running:
            # Cleared before the check, so a change or a stop made during it (which sets
            # the event) ends the wait below at once.
            self._wakeup.clear()
            try:
                await self._tick()
                delay = self._delay(time.time())
            except Exception as exc:
                self._check_outage.failed(exc, self.check_interval)
                delay = self.check_interval
            else:
                self._check_outage.succeeded()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), delay)

    def _delay(self, now: float) -> float:
        upcoming = [job.next_run for job in self.scheduled_jobs.values() if job.enabled]
        if not upcoming:
            return self.check_interval
        return max(0.0, min(self.check_interval, min(upcoming) - now))

    async def _tick(self) -> None:
        """Fire every due schedule once, then write pending store changes."""
        if self.store is not None and self._stored:
            try:
                await self.sync_from_store()
            except Exception as exc:
                # The store being down must not stop schedules: fire what is held.
                self._read_outage.failed(exc)
            else:
                self._read_outage.succeeded()
        now = time.time()
        due = [j for j in self.scheduled_jobs.values() if j.enabled and j.next_run <= now]
        for job in sorted(due, key=lambda j: j.next_run):
            if not self.running:
                return
            try:
                await self._fire(job, now)
            except Exception:
                # One schedule that cannot fire must not stop the others after it.
                logger.exception("Schedule %r could not fire; the others go on.", job.job_id)
        await self._flush()

    def occurrences_to_fire(self, job: ScheduledJob, now: float) -> list[float]:
        """Return the fire times of `job` to enqueue at `now`, per the misfire policy.

        Args:
            job: A schedule whose `next_run` is due.
            now: The current time.

        Returns:
            Fire times, oldest first (empty when none is to fire).
        """
        return occurrences_to_fire(
            job.cron,
            job.next_run,
            now,
            policy=self.misfire_policy,
            grace_time=self.misfire_grace_time,
            max_catch_up=self.max_catch_up,
            schedule_id=job.job_id,
        )

    async def _fire(self, job: ScheduledJob, now: float) -> None:
        schedule_id = job.job_id
        times = self.occurrences_to_fire(job, now)
        if len(times) != 1 or times[0] != job.next_run:
            logger.info(
                "Schedule %r was due at %s; misfire policy %r fires %d occurrence(s).",
                schedule_id,
                job.next_run,
                self.misfire_policy.value,
                len(times),
            )
        if not times:
            job.last_run = job.cron.latest_at_or_before(now)
            job.apply_state({"last_outcome": ScheduleOutcome.SKIPPED.value, "last_error": None})
        for fire_time in times:
            job.last_run = fire_time
            job_id, error = await self._enqueue(job, fire_time)
            outcome = ScheduleOutcome.FAILED if error is not None else ScheduleOutcome.ENQUEUED
            job.apply_state(
                {"last_outcome": outcome.value, "last_error": error, "last_job_id": job_id}
            )
        if self.scheduled_jobs.get(schedule_id) is not job:
            return  # unscheduled or replaced while enqueueing
        try:
            job.next_run = job.cron.get_next(now)
            finished = False
        except NoOccurrenceError:
            # A one-off (a year field) fired its last occurrence: it rests, paused, so
            # that it is never due again and the other schedules keep firing.
            finished = True
            job.enabled = False
            logger.info(
                "Schedule %r has no occurrence left after %s (cron %r); it is paused.",
                schedule_id,
                job.last_run,
                job.cron_expression,
            )
        if self.store is not None and schedule_id in self._stored:
            state = job.state()
            if not finished:
                del state["enabled"]  # a pause made meanwhile in the store must stand
            try:
                await self.store.update_fields(job.key, state)
            except Exception:
                logger.exception("Could not record the last run of schedule %r.", schedule_id)

    def make_job(self, job: ScheduledJob, fire_time: float) -> Job:
        """Build the job for one occurrence: its idempotency key is deterministic.

        The key (`fire_key`) is the occurrence's identity: every scheduler process builds
        the same one, and the queue's set-if-absent on it makes the occurrence run once.
        The job id is fresh per call on purpose: a queue accepts the same job id again
        once that job has finished (how a dead-lettered job is retried), so a
        deterministic id would let a late scheduler re-run an occurrence that another
        scheduler's copy had already completed.

        Args:
            job: The schedule.
            fire_time: The occurrence's fire time.

        Returns:
            The job to enqueue.
        """
        created = job.job_template.create_job()
        created.idempotency_key = fire_key(job.job_id, fire_time)
        created.cron_expression = job.cron_expression
        created.metadata["schedule_id"] = job.job_id
        created.metadata["fire_time"] = fire_time
        return created

    async def _enqueue(self, job: ScheduledJob, fire_time: float) -> tuple[str | None, str | None]:
        """Enqueue one occurrence; return (job id, None) or (None, why it failed)."""
        callback = self._callback
        if callback is None:
            return None, "the scheduler is not running"
        created = self.make_job(job, fire_time)
        try:
            outcome = callback(created)
            if inspect.isawaitable(outcome):
                outcome = await outcome
        except Exception as exc:
            # Not retried by this scheduler: another scheduler process may still fire it.
            logger.exception(
                "Could not enqueue occurrence %s of schedule %r.",
                created.idempotency_key,
                job.job_id,
            )
            return None, f"{type(exc).__name__}: {exc}"
        if isinstance(outcome, Err):
            logger.error(
                "Enqueue of occurrence %s of schedule %r failed: %s",
                created.idempotency_key,
                job.job_id,
                outcome.error,
            )
            return None, str(outcome.error)
        logger.debug("Enqueued occurrence %s as job %s.", created.idempotency_key, created.id)
        return _enqueued_id(outcome, created.id), None


def _enqueued_id(outcome: Any, fallback: str) -> str:
    """The job id a callback's outcome names (an `Ok` value, a job, an id), else `fallback`."""
    value = getattr(outcome, "value", outcome)
    value = getattr(value, "id", value)
    return value if isinstance(value, str) and value else fallback


def _next_or_spent(
    cron: CronExpression, schedule_id: str, now: float | None = None
) -> tuple[float, bool]:
    """A new schedule's next run and whether it can fire: a spent one-off rests paused.

    A one-off (a year field) declared after its moment has no next run. It is kept, at
    its last occurrence and paused, rather than refused: the code that declares it does
    not stop working on the day after, and `schedule list` shows it as done.
    """
    moment = time.time() if now is None else now
    try:
        return cron.get_next(moment), True
    except NoOccurrenceError:
        last = cron.get_prev(moment)
        logger.warning(
            "Schedule %r (cron %r) has no occurrence left: its last was %s. It is kept "
            "paused; remove the declaration once it is no longer needed.",
            schedule_id,
            cron.expression,
            datetime.fromtimestamp(last, tz=UTC).isoformat(),
        )
        return last, False
