"""`JobHandle`: the enqueued job, plus its result, status and progress.

``await fn.delay(...)`` and ``await fn.apply_async(queue, ...)`` return a `JobHandle`.
It reads like the `Job` that was enqueued (``handle.id``, ``handle.args`` ...;
``handle.job`` is the `Job` itself) and also remembers the queue it was enqueued on
and the stores its workers write to, so it can answer ``await
handle.result(timeout=5)``, ``await handle.status()``, ``await handle.progress()``
and ``await handle.cancel()``. Another process rebuilds one from
a job id: ``JobHandle(queue, job_id, result_store=store)``.

The stores of a queue are found in the registry `register_job_stores` fills: the
composition root registers every queue it builds with its backend's result and
progress stores, so ``.delay()`` in an application (or inside a worker) needs nothing
more. A script that builds its own queue passes ``result_store=`` explicitly.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Coroutine
from typing import Any, Generic, NamedTuple, TypeVar, overload

from lexigram.contracts.tasks import (
    CancellableQueueProtocol,
    CancelOutcome,
    Job,
    JobResult,
    JobStatus,
    ProgressInfo,
    ProgressStoreProtocol,
    ResultStoreProtocol,
    TaskCancelledError,
    TaskConfigurationError,
    TaskExecutionError,
    TaskNotFoundError,
    TaskQueueProtocol,
)
from lexigram.tasks.constants import WORKFLOW_STEP_KEY
from lexigram.tasks.execution._cancel import cancelled_result

logger = logging.getLogger(__name__)

R = TypeVar("R")
T = TypeVar("T")

_FOREVER_CHUNK = 3600.0  # seconds per store wait when the caller waits without a timeout


class JobStores(NamedTuple):
    """The stores the workers of one queue write to (what a `JobHandle` reads).

    Attributes:
        result_store: Where job results are stored, or None.
        progress_store: Where handlers' progress is saved, or None.
    """

    result_store: ResultStoreProtocol | None = None
    progress_store: ProgressStoreProtocol | None = None


# Queue object -> its stores. Weak where the queue allows it, so a registry entry never
# keeps a closed queue alive; queues that cannot be weakly referenced are kept by id.
_weak_stores: weakref.WeakKeyDictionary[Any, JobStores] = weakref.WeakKeyDictionary()
_strong_stores: dict[int, tuple[TaskQueueProtocol, JobStores]] = {}


def register_job_stores(
    queue: TaskQueueProtocol,
    *,
    result_store: ResultStoreProtocol | None,
    progress_store: ProgressStoreProtocol | None = None,
) -> None:
    """Record the stores the workers of `queue` write to, for the handles of its jobs.

    The composition root calls this for every queue it builds; call it yourself for a
    queue you build by hand (or pass ``result_store=`` to ``apply_async``).

    Args:
        queue: The queue object ``.delay()``/``.apply_async()`` enqueue on.
        result_store: Its workers' result store (None: results cannot be awaited).
        progress_store: Its workers' progress store.
    """
    stores = JobStores(result_store=result_store, progress_store=progress_store)
    try:
        _weak_stores[queue] = stores
    except TypeError:  # not hashable or not weakly referenceable
        _strong_stores[id(queue)] = (queue, stores)


def job_stores_for(queue: TaskQueueProtocol) -> JobStores:
    """Return the stores registered for `queue` (empty `JobStores` when none are)."""
    try:
        found = _weak_stores.get(queue)
    except TypeError:
        found = None
    if found is not None:
        return found
    entry = _strong_stores.get(id(queue))
    if entry is not None and entry[0] is queue:
        return entry[1]
    return JobStores()


class JobHandle(Generic[R]):
    """An enqueued job that can await its result and report its status and progress.

    Reading an attribute of the `Job` reads it from the job as enqueued (``handle.id``,
    ``handle.name``, ``handle.args`` ...), so code written for the `Job` that
    ``.delay()`` used to return keeps working; ``handle.job`` is the `Job` itself, for
    code that needs one. Two names of `Job` are methods here instead: `status` and
    `result` (read ``handle.job.status`` for the enqueued copy's field). ``R`` is the
    task's return type: ``await handle.result()`` of a task declared
    ``async def add(a: int, b: int) -> int`` is an ``int`` to a type checker.

    Args:
        queue: The queue the job was enqueued on.
        job: The job, or the id of a job enqueued elsewhere (another process); a handle
            built from an id knows only the id until `fetch` reads the job.
        result_store: Where its workers store results (default: the store registered
            for `queue` with `register_job_stores`).
        progress_store: Where its handler saves progress (default: the registered one).

    Example:
        handle = await add.apply_async(queue, 2, 3, result_store=results)
        assert await handle.result(timeout=5) == 5
        same = JobHandle[int](queue, handle.id, result_store=results)
    """

    __slots__ = ("_job", "_progress_store", "_queue", "_result_store")

    def __init__(
        self,
        queue: TaskQueueProtocol,
        job: Job | str,
        *,
        result_store: ResultStoreProtocol | None = None,
        progress_store: ProgressStoreProtocol | None = None,
    ) -> None:
        if isinstance(job, str):
            if not job.strip():
                msg = "JobHandle needs a job id, got an empty string. Pass the id .delay() gave."
                raise TaskConfigurationError(msg)
            job = Job(id=job.strip())
        registered = job_stores_for(queue)
        self._job = job
        self._queue = queue
        self._result_store = result_store if result_store is not None else registered.result_store
        self._progress_store = (
            progress_store if progress_store is not None else registered.progress_store
        )

    def __getattr__(self, name: str) -> Any:
        # Only called for names the handle does not define: the job's attributes.
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._job, name)

    def __repr__(self) -> str:
        return f"<JobHandle {self._job.id} task={self._job.name!r}>"

    @property
    def job(self) -> Job:
        """The job as enqueued (or as last read by `fetch`)."""
        return self._job

    @property
    def id(self) -> str:
        """The job's id."""
        return self._job.id

    @property
    def name(self) -> str:
        """The job's task name ("" for a handle built from an id, until `fetch`)."""
        return self._job.name

    @property
    def queue(self) -> TaskQueueProtocol:
        """The queue the job was enqueued on."""
        return self._queue

    @property
    def result_store(self) -> ResultStoreProtocol | None:
        """The result store this handle reads (None: results cannot be awaited)."""
        return self._result_store

    @overload
    async def result(
        self: JobHandle[Coroutine[Any, Any, T]], timeout: float | None = 30.0
    ) -> T: ...
    @overload
    async def result(self: JobHandle[T], timeout: float | None = 30.0) -> T: ...
    async def result(self, timeout: float | None = 30.0) -> Any:
        """Wait for the job's result and return what the handler returned.

        The wait is the result store's own (woken when the result is stored where the
        backend can, e.g. in memory or through Redis), not a polling loop here.

        Args:
            timeout: Longest wait in seconds; None waits until there is a result.

        Returns:
            The handler's return value.

        Raises:
            TaskCancelledError: The job was cancelled (`cancel`).
            TaskExecutionError: The job failed for good (its error is the message,
                ``details["error"]``).
            TimeoutError: No result within `timeout` seconds.
            TaskConfigurationError: No result store is known for the job's queue.
        """
        outcome = await self.wait(timeout)
        if outcome.cancelled:
            msg = f"{self._label()} was cancelled, so it has no result."
            raise TaskCancelledError(msg, details={"job_id": self.id, "task": self.name})
        if not outcome.success:
            msg = f"{self._label()} failed: {outcome.error or 'no error message'}"
            raise TaskExecutionError(
                msg, details={"job_id": self.id, "task": self.name, "error": outcome.error}
            )
        return outcome.data

    async def wait(self, timeout: float | None = 30.0) -> JobResult:
        """Wait for the job's stored `JobResult` (success or failure) and return it.

        Raises:
            TimeoutError: No result within `timeout` seconds.
            TaskConfigurationError: No result store is known for the job's queue.
        """
        store = self._require_result_store()
        if timeout is not None:
            found = await store.wait(self.id, timeout=timeout)
            if found is None:
                where = await self._where_now()
                msg = f"{self._label()} has no result after {timeout:g} s: {where}"
                raise TimeoutError(msg)
            return found
        while True:
            found = await store.wait(self.id, timeout=_FOREVER_CHUNK)
            if found is not None:
                return found

    async def status(self) -> JobStatus:
        """Return where the job is now: PENDING, RUNNING, RETRYING, COMPLETED, FAILED or CANCELLED.

        A stored result decides COMPLETED/FAILED/CANCELLED; otherwise the queue's copy of
        the job says whether it waits or runs.

        Raises:
            TaskNotFoundError: Neither the queue nor the result store knows the job (an
                unknown id, an expired result, or a task with ``store_result=False``).
        """
        store = self._result_store
        if store is not None:
            found = await store.get(self.id)
            if found is not None:
                return found.status
        queued = await self._queue.get_job(self.id)
        if queued is not None:
            return queued.status
        if store is not None:  # it may have finished between the two reads
            found = await store.get(self.id)
            if found is not None:
                return found.status
        msg = (
            f"{self._label()} is neither in its queue nor in the result "
            "store: the id is unknown, its result expired, or its task does not store "
            "results (store_result=False)."
        )
        raise TaskNotFoundError(msg, details={"job_id": self.id})

    async def _where_now(self) -> str:
        """Where the job is, for the message of a wait that timed out (never raises)."""
        try:
            queued = await self._queue.get_job(self.id)
        except Exception:  # the wait's own message says enough; this is a hint
            return (
                "check that a worker consumes its queue and that the task stores results "
                "(store_result=True), or wait longer."
            )
        if queued is None:
            return (
                "it is neither waiting nor running, and no result is stored: the task may "
                "not store results (store_result=False), its result may have expired, or the "
                "id is unknown."
            )
        if queued.status is JobStatus.RUNNING:
            return "it is still running. Wait longer."
        return (
            f"it is still waiting in queue {self._queue.queue_name!r} ({queued.status.value})."
            " Check that a worker consumes that queue, or wait longer."
        )

    async def cancel(self) -> CancelOutcome:
        """Cancel the job: remove it if it waits, stop its handler if it runs.

        A waiting or delayed job is removed from its queue and never runs (REMOVED). A
        running job is removed too and its worker cancels the handler within about a
        second (STOPPING); the handler can hold that off with `shield_cancellation`.
        Either way the job is not retried nor dead-lettered, and the result store
        records it as cancelled, so `result` raises `TaskCancelledError` and `status`
        says CANCELLED. A job that already finished is left as it was (FINISHED). A
        running job on a queue without `CancellableQueueProtocol` is left alone
        (UNSUPPORTED): such a backend can only remove waiting jobs.

        A step of a queue-driven workflow is cancelled only where its run can be ended
        with it (the step recorded as cancelled, the run FAILED): on a queue with a
        workflow run store registered (`register_workflow_store`; the provider, the
        ``lexigram-tasks job cancel`` command and ``apply_async`` register theirs).

        Returns:
            What happened, as a `CancelOutcome`; ``outcome.cancelled`` is True for
            REMOVED and STOPPING.

        Raises:
            TaskConfigurationError: The job is a workflow step and no run store is
                registered for this handle's queue object; nothing was cancelled.
        """
        queue = self._queue
        # A workflow step says so in its metadata, read before the job is gone. Removing
        # one must end its step in the run store, or its run waits for it forever: with
        # no store known for this queue object, nothing is removed (see _refuse_step).
        queued = await queue.get_job(self.id)
        step = queued if queued is not None and WORKFLOW_STEP_KEY in queued.metadata else None
        if step is not None and not _runs_workflows(queue):
            raise _refuse_step(queue, step)
        if isinstance(queue, CancellableQueueProtocol):
            outcome = await queue.cancel(self.id)
        else:
            outcome = await self._delete_waiting(queued)
        store = self._result_store
        if outcome is CancelOutcome.REMOVED and step is not None:
            await _end_workflow_step(queue, step)
        if outcome.cancelled:
            if outcome is CancelOutcome.STOPPING and await _just_finished(store, self.id):
                # Its handler had returned and its result was stored; only the ack that
                # follows the result was still on its way. It finished: keep its result.
                return CancelOutcome.FINISHED
            if store is not None:
                try:
                    await store.store(self.id, cancelled_result(self.id, self.name))
                except Exception:
                    # The job is cancelled all the same; a stopped worker records it too.
                    logger.exception("Recording job %s as cancelled failed.", self.id)
            return outcome
        finished = store is not None and await store.get(self.id) is not None
        if outcome is CancelOutcome.NOT_FOUND and finished:
            return CancelOutcome.FINISHED
        return outcome

    async def _delete_waiting(self, queued: Job | None) -> CancelOutcome:
        """Cancel on a queue that can only delete: a waiting job, never a running one.

        Args:
            queued: The job as its queue holds it, just read (None: not there).
        """
        if queued is None:
            return CancelOutcome.NOT_FOUND
        if queued.status is JobStatus.RUNNING:
            return CancelOutcome.UNSUPPORTED
        deleted = await self._queue.delete_job(self.id)
        return CancelOutcome.REMOVED if deleted else CancelOutcome.NOT_FOUND

    async def progress(self) -> ProgressInfo | None:
        """Return the progress the handler last reported, or None (none yet, or no store)."""
        if self._progress_store is None:
            return None
        return await self._progress_store.get(self.id)

    async def fetch(self) -> JobHandle[R]:
        """Read the job's attributes from its queue into this handle and return it.

        Raises:
            TaskNotFoundError: The queue no longer holds the job.
        """
        queued = await self._queue.get_job(self.id)
        if queued is None:
            msg = f"Job {self.id} is not in its queue (finished, deleted, or an unknown id)."
            raise TaskNotFoundError(msg, details={"job_id": self.id})
        self._job = queued
        return self

    def _require_result_store(self) -> ResultStoreProtocol:
        if self._result_store is None:
            msg = (
                f"{self._label()}: no result store is known for its queue, "
                "so its result cannot be awaited. Boot the application with "
                "TasksModule/TaskProvider, pass result_store= to apply_async() or "
                "JobHandle(...), or call register_job_stores(queue, result_store=...)."
            )
            raise TaskConfigurationError(msg)
        return self._result_store

    def _label(self) -> str:
        """``Job <id> (task '<name>')``, or ``Job <id>`` while the name is not known."""
        name = self._job.name
        return f"Job {self._job.id} (task {name!r})" if name else f"Job {self._job.id}"


def _runs_workflows(queue: TaskQueueProtocol) -> bool:
    from lexigram.tasks.workflows import _advance  # noqa: PLC0415 - imports this module

    return _advance.workflow_store_for(queue) is not None


def _refuse_step(queue: TaskQueueProtocol, job: Job) -> TaskConfigurationError:
    """The error of `JobHandle.cancel` for a workflow step on a queue with no run store.

    Removing the step's job without recording the step would leave its run RUNNING
    forever, showing the step queued for a job that no longer exists; the queue object
    the handle was built on (not the one ``apply_async`` used, not one a provider built)
    has no run store to record it in.
    """
    place = job.metadata.get(WORKFLOW_STEP_KEY)
    run = place.get("id", "?") if isinstance(place, dict) else "?"
    name = getattr(queue, "queue_name", "?")
    job_id = job.id
    msg = (
        f"Job {job_id} is a step of workflow {run!r}, and no workflow run store is "
        f"registered for this queue object ({name!r}), so cancelling it here would leave "
        "the run running forever; nothing was cancelled. Call "
        "lexigram.tasks.workflows.register_workflow_store(queue, store) with the run store "
        "its workers use, or cancel it through the provider's queue or `lexigram-tasks job "
        f"cancel {job_id} --queue {name}`."
    )
    return TaskConfigurationError(msg, details={"job_id": job_id, "workflow_id": run})


async def _end_workflow_step(queue: TaskQueueProtocol, job: Job) -> None:
    """A workflow step removed before it ran ends its run, as if it had failed.

    (A step cancelled while running is ended by its worker.) The step is recorded as
    cancelled, the run is marked FAILED with the error "cancelled before it ran", its
    error callback runs, and no later step is enqueued.
    """
    place = job.metadata.get(WORKFLOW_STEP_KEY)
    if place is None:
        return
    from lexigram.tasks.workflows import _advance  # noqa: PLC0415 - imports this module

    await _advance.step_failed(queue, job, place, "cancelled before it ran", logger, cancelled=True)


__all__ = ["JobHandle", "JobStores", "job_stores_for", "register_job_stores"]


async def _just_finished(store: ResultStoreProtocol | None, job_id: str) -> bool:
    """Whether `store` holds an outcome of the job's run other than a cancellation."""
    if store is None:
        return False
    try:
        stored = await store.get(job_id)
    except Exception:
        return False
    return stored is not None and not stored.cancelled
