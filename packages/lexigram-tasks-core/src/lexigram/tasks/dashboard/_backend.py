"""What the dashboard reads and does, through the operations the commands use.

`DashboardBackend` opens the backend's queues and stores with the builders every
``lexigram-tasks`` command uses (`lexigram.tasks.cli._context`, the composition root
`TaskProvider` shares) the first time a page needs them, keeps them for the app's
life, and answers each page with plain dicts built by `lexigram.tasks.admin`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lexigram.contracts.tasks import (
    FailureRecord,
    TaskBackendSpec,
    TaskQueueProtocol,
    WorkflowRunStoreProtocol,
    WorkflowStateStoreProtocol,
    WorkflowStatus,
)
from lexigram.tasks import admin
from lexigram.tasks.cli._context import (
    Stores,
    close_quietly,
    describe,
    is_process_local,
    open_queue,
    open_store,
    open_stores,
    release_backend,
)
from lexigram.tasks.cli._errors import CLIError
from lexigram.tasks.cli._lookup import resolve_job_id
from lexigram.tasks.cli._opener import QueueOpener
from lexigram.tasks.dlq import PersistentDeadLetterQueue
from lexigram.tasks.handles import JobHandle
from lexigram.tasks.workflows import with_job_states
from lexigram.tasks.workflows._advance import STEP_SUCCEEDED
from lexigram.tasks.workflows._queued import list_run_infos

if TYPE_CHECKING:
    from lexigram.tasks.config import TaskConfig

logger = logging.getLogger(__name__)

RECENT_FAILURES = 10
"""Dead letters the overview lists."""

DLQ_PAGE = 200
"""Dead letters the DLQ page lists (newest first)."""


@dataclass(slots=True)
class _Sample:
    at: float
    value: float


@dataclass(slots=True)
class _Rates:
    """Per-second rates from two reads of a counter some time apart."""

    samples: dict[str, _Sample] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)

    def update(self, key: str, value: float, at: float) -> float | None:
        last = self.samples.get(key)
        if last is None or at <= last.at:
            if last is None:
                self.samples[key] = _Sample(at, value)
            return self.rates.get(key)
        self.rates[key] = (value - last.value) / (at - last.at)
        self.samples[key] = _Sample(at, value)
        return self.rates[key]


class DashboardBackend:
    """The backend as the dashboard sees it.

    Args:
        spec: The backend, built from the config like every command's.
        queues: Queues to show besides the default and those running workers consume.
        config: The configuration `spec` came from. A job the dashboard sends (a dead
            letter retried, a schedule run now) goes where its queue's name leads, as
            ``dlq retry`` and ``schedule run-now`` send it (`QueueOpener`): another
            configured backend's queue when the name is that backend's.
    """

    def __init__(
        self,
        spec: TaskBackendSpec,
        queues: tuple[str, ...] = (),
        *,
        config: TaskConfig | None = None,
    ) -> None:
        self.spec = spec
        self.extra_queues = queues
        self.sending = QueueOpener(config, spec)
        self.description = describe(spec)
        self.process_local = is_process_local(spec)
        self._queues: dict[str, TaskQueueProtocol] = {}
        self._stores: Stores | None = None
        self._progress: Any = None
        self._workflows: Any = None
        self._depth = _Rates()
        self._done = _Rates()

    def __repr__(self) -> str:
        return f"DashboardBackend({self.description!r})"

    # -- opening and closing -----------------------------------------------------------

    @property
    def stores(self) -> Stores:
        """The backend's shared stores (opened on first use)."""
        if self._stores is None:
            self._stores = open_stores(
                self.spec, "dlq_backend", "result_store", "scheduler_store", "cache"
            )
            self._progress = open_store(self.spec, "create_progress_store")
            self._workflows = open_store(self.spec, "create_workflow_state_store")
        return self._stores

    def queue(self, name: str | None = None) -> TaskQueueProtocol:
        """The queue of that name on the backend (None: the default queue)."""
        target = name or self.spec.queue_name
        found = self._queues.get(target)
        if found is None:
            found = self._queues[target] = open_queue(self.spec, target)
        return found

    async def close(self, *, release: bool = False) -> None:
        """Close every queue and store opened here.

        Args:
            release: Also close the connection pools the backend shares among all its
                queues and stores in this event loop. Only a process that serves the
                dashboard alone does: mounted in an app, those pools are the app's too.
        """
        if self._stores is not None:
            await self._stores.close()
            await close_quietly(self._progress, self._workflows)
            self._stores = None
        await close_quietly(*self._queues.values())
        self._queues.clear()
        await self.sending.close()
        if release:
            await release_backend(self.spec)

    # -- reading -----------------------------------------------------------------------

    async def workers(self) -> list[dict[str, Any]] | None:
        """Running workers with their processed-per-second rate (None: not recorded)."""
        cache = self.stores.cache
        if cache is None:
            return None
        workers = await admin.registered_workers(cache)
        for record in workers:
            seen = float(record.get("seen_at") or 0.0)
            rate = self._done.update(
                str(record.get("id")), float(record.get("processed") or 0), seen
            )
            record["rate"] = rate
        return workers

    async def queues(self, workers: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        """Each queue's counts, how fast its depth changes, and its workers' throughput."""
        names = admin.watched_queues(self.spec.queue_name, workers)
        names = list(dict.fromkeys([*names, *self.extra_queues]))
        now = time.monotonic()
        rows = await asyncio.gather(*(admin.queue_counts(self.queue(n), n) for n in names))
        for row in rows:
            row["depth_rate"] = self._depth.update(row["queue"], row["total"], now)
            consuming = [w for w in workers or [] if row["queue"] in (w.get("queues") or [])]
            rates = [w["rate"] for w in consuming if w.get("rate") is not None]
            row["done_rate"] = sum(rates) if rates else None
            row["workers"] = len(consuming)
        return list(rows)

    async def running(self, workers: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        """Jobs running now: those workers report, and those whose progress is live."""
        found: dict[str, dict[str, Any]] = {}
        for worker in workers or []:
            for job in worker.get("running") or []:
                found[str(job["id"])] = {**job, "worker": worker.get("id"), "progress": None}
        _ = self.stores
        if self._progress is not None:
            for info in await self._progress.list_active():
                entry = found.setdefault(
                    info.job_id, {"id": info.job_id, "task": None, "worker": None}
                )
                entry["progress"] = _progress_dict(info)
                if entry["task"] is None:
                    # Reported before the worker's next heartbeat names it: ask the queue.
                    job = await self.queue().get_job(info.job_id)
                    if job is not None:
                        entry.update(task=job.name, started_at=job.started_at)
        return sorted(found.values(), key=lambda r: (r.get("started_at") or 0.0, r["id"]))

    async def recent_failures(self, limit: int = RECENT_FAILURES) -> list[dict[str, Any]] | None:
        """The newest dead letters (None: the backend keeps none outside its workers)."""
        dlq_backend = self.stores.dlq_backend
        if dlq_backend is None:
            return None
        dlq = PersistentDeadLetterQueue(backend=dlq_backend, queue=self.queue())
        return [admin.dead_letter_row(r) for r in await dlq.list_failed(limit=limit)]

    async def dead_letters(self, task_name: str | None) -> tuple[list[dict[str, Any]], int] | None:
        """The DLQ page: rows (newest first, of one task if named) and the total."""
        dlq_backend = self.stores.dlq_backend
        if dlq_backend is None:
            return None
        dlq = PersistentDeadLetterQueue(backend=dlq_backend, queue=self.queue())
        records = await dlq.list_failed(limit=DLQ_PAGE, job_name=task_name or None)
        return [admin.dead_letter_row(r) for r in records], await dlq.size()

    async def schedules(self) -> list[dict[str, Any]] | None:
        """Stored schedules (None: the backend keeps them inside the scheduler)."""
        store = self.stores.scheduler_store
        if store is None:
            return None
        rows, _ = await admin.list_schedules(store)
        for row in rows:
            row["outcome"] = admin.outcome_text(row)
        return rows

    async def job(self, job_id: str, queue_name: str | None = None) -> dict[str, Any]:
        """Everything known of one job: status, arguments, result, attempts, traceback.

        A backend without a result store shows what its queue (and dead letters) know:
        the jobs waiting or running, with no result.

        Args:
            job_id: The job's id or a unique prefix of it.
            queue_name: The queue the job is on (None: the default queue). A workflow
                run's page links each step's job with its run's queue: a run applied
                on another queue than the default has its jobs there.

        Raises:
            OperationError: The id (or prefix) names no job, or several; or the backend
                keeps its jobs inside its worker processes (process-local).
        """
        queue_name = (queue_name or "").strip() or None
        queue = self.queue(queue_name)
        stores = self.stores
        if stores.result_store is None and self.process_local:
            msg = (
                f"The {self.spec.type} backend keeps jobs inside its worker processes, so "
                "there is nothing to read from here."
            )
            raise admin.OperationError(msg)
        try:
            full_id, note = await resolve_job_id(queue, stores.result_store, job_id, self.spec.type)
        except CLIError as exc:
            # A dead-lettered job is in neither the queue nor the result store.
            if stores.dlq_backend is None:
                raise admin.OperationError(exc.message) from None
            try:
                record = await admin.find_dead_letter(stores.dlq_backend, queue, job_id)
            except admin.OperationError:
                raise admin.OperationError(exc.message) from None
            full_id, note = record.job.id, ""
        handle: JobHandle[Any] = JobHandle(
            queue, full_id, result_store=stores.result_store, progress_store=self._progress
        )
        job = await queue.get_job(full_id)
        result = None if stores.result_store is None else await stores.result_store.get(full_id)
        dead: FailureRecord | None = None
        if stores.dlq_backend is not None:
            dead = await PersistentDeadLetterQueue(backend=stores.dlq_backend, queue=queue).get(
                full_id
            )
        if job is None and dead is not None:
            job = dead.job
        try:
            status = await admin.job_status(handle)
        except admin.OperationError as exc:
            if dead is None:
                # The note says why the job may not be found (no prefix search, no results).
                raise admin.OperationError(exc.message + note) from None
            status = {"id": full_id, "status": "dead-lettered", "progress": None}
        if dead is not None:
            status["status"] = "dead-lettered"
        view = _job_view(full_id, status, job, result, dead)
        # The page polls its live part on the same queue it was opened with.
        view["lookup_queue"] = queue_name
        return view

    async def workflows(self) -> list[dict[str, Any]] | None:
        """Workflows that have not finished (None: not recorded where the dashboard can list).

        Queue-driven runs come from a store that lists them
        (`ListingWorkflowRunStoreProtocol`), and each row opens its run page, as
        `workflow show` opens it. Resumable in-process chains (``TaskChain`` with a state
        store, `WorkflowStateStoreProtocol.list_active`) are listed too, marked as such:
        they have no run page, since no queue holds their steps.
        """
        _ = self.stores
        store = self._workflows
        if store is None or self.process_local:
            return None
        runs = await list_run_infos(store, status=WorkflowStatus.RUNNING)
        in_process = isinstance(store, WorkflowStateStoreProtocol)
        if runs is None and not in_process:
            return None
        rows = [
            {
                "id": run.workflow_id,
                "kind": run.kind,
                "status": run.status.value,
                "completed_steps": sum(step.status == STEP_SUCCEEDED for step in run.steps),
                "created_at": run.created_at,
                "updated_at": run.updated_at or run.created_at,
                "linked": True,
            }
            for run in runs or ()
        ]
        if in_process:
            rows += [
                {
                    "id": s.workflow_id,
                    "kind": "in-process",
                    "status": s.status.value,
                    "completed_steps": len(s.completed_steps),
                    "created_at": s.created_at.timestamp(),
                    "updated_at": s.last_updated.timestamp(),
                    "linked": False,
                }
                for s in await store.list_active()
            ]
        return rows

    async def workflow(self, workflow_id: str) -> dict[str, Any] | None:
        """One queue-driven workflow run with its steps (None: no such run)."""
        _ = self.stores
        store = self._workflows
        if not isinstance(store, WorkflowRunStoreProtocol) or self.process_local:
            return None
        info = await admin.load_workflow(store, workflow_id)
        if info is None:
            return None
        try:
            # As `workflow show`: the steps not ended say whether a worker holds them.
            info = await with_job_states(info, self.queue(info.queue_name))
        except Exception:  # the queue cannot be asked: the run is shown all the same
            logger.warning(
                "The queue of workflow %s could not be asked which steps are running; "
                "steps not ended show as queued.",
                workflow_id,
                exc_info=True,
            )
        return admin.workflow_dict(info)

    # -- acting ------------------------------------------------------------------------

    def _dlq_backend(self) -> Any:
        dlq_backend = self.stores.dlq_backend
        if dlq_backend is None:
            msg = f"The {self.spec.type} backend keeps no dead letters outside its workers."
            raise admin.OperationError(msg)
        return dlq_backend

    async def retry(self, job_ids: list[str]) -> str:
        """Retry dead letters by id (one id: its prefix is accepted too)."""
        dlq_backend = self._dlq_backend()
        if len(job_ids) == 1:
            job, target = await admin.retry_dead_letter(
                dlq_backend, self.sending, job_ids[0], result_store=self.stores.result_store
            )
            return admin.requeued_line(job, target)
        return await admin.retry_dead_letters_reported(
            dlq_backend, self.sending, job_ids=job_ids, result_store=self.stores.result_store
        )

    async def retry_all(self) -> str:
        """Retry every dead letter."""
        return await admin.retry_dead_letters_reported(
            self._dlq_backend(), self.sending, result_store=self.stores.result_store
        )

    async def delete(self, job_ids: list[str]) -> str:
        """Delete dead letters for good by whole id."""
        count = await admin.delete_dead_letter(self._dlq_backend(), job_ids)
        return f"Deleted {count} dead-lettered job(s)."

    async def schedule_action(self, key: str, action: str) -> str:
        """Pause, resume or run now the schedule stored under `key`."""
        store = self.stores.scheduler_store
        if store is None:
            msg = f"The {self.spec.type} backend keeps schedules inside the scheduler process."
            raise admin.OperationError(msg)
        rows, records = await admin.list_schedules(store)
        row = admin.find_schedule(rows, key)
        name = admin.schedule_name(row)
        if action == "pause":
            done = await admin.pause_schedule(store, row)
            return f"Paused schedule {name}." if done else f"Schedule {name} is already paused."
        if action == "resume":
            next_run = await admin.resume_schedule(store, row, records[row["key"]])
            return f"Schedule {name} is not paused." if next_run is None else f"Resumed {name}."
        if action == "run-now":
            job, target = await admin.run_schedule_now(
                store, row, records[row["key"]], self.sending
            )
            return f"Enqueued job {job.id} ({job.name}) of schedule {name} on {target!r}."
        msg = f"Unknown schedule action {action!r}: use pause, resume or run-now."
        raise admin.OperationError(msg)


def _progress_dict(info: Any) -> dict[str, Any]:
    return {
        "current": info.current,
        "total": info.total,
        "percentage": info.percentage,
        "message": info.message,
        "updated_at": info.updated_at,
    }


def _job_view(
    job_id: str,
    status: dict[str, Any],
    job: Any,
    result: Any,
    dead: FailureRecord | None,
) -> dict[str, Any]:
    timeline: list[tuple[str, float]] = []
    view: dict[str, Any] = {
        "id": job_id,
        "status": status["status"],
        "progress": status["progress"],
    }
    if job is not None:
        view.update(
            task=job.name,
            queue=job.queue_name,
            args=list(job.args),
            kwargs=job.kwargs,
            priority=job.priority,
            attempts=job.retry_count,
            max_retries=job.max_retries,
            last_error=job.last_error,
            metadata=job.metadata,
        )
        timeline.append(("created", job.created_at))
        if job.scheduled_at:
            timeline.append(("due", job.scheduled_at))
        if job.started_at:
            timeline.append(("started", job.started_at))
    if result is not None:
        view.update(
            result=result.data,
            error=result.error,
            duration=result.duration,
            attempts=max(view.get("attempts") or 0, result.retry_count),
            task=view.get("task") or result.name,
        )
        if result.completed_at:
            timeline.append(("completed" if result.success else "finished", result.completed_at))
        if result.failed_at:
            timeline.append(("failed", result.failed_at))
    if dead is not None:
        view.update(
            error=dead.error,
            traceback=dead.traceback,
            attempts=dead.attempt_count,
            reason=dead.metadata.get("reason"),
            worker=admin.dead_letter_worker(dead.metadata),
        )
        timeline.append(("dead-lettered", dead.failed_at))
    view["timeline"] = sorted(timeline, key=lambda t: t[1])
    return view
