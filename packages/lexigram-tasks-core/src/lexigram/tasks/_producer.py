"""Where a task's jobs are enqueued, and `submit_job`, the one way the core enqueues them.

Routing: `queue_for` maps a ``@task(queue=...)`` name to a queue object, from the
process-wide default queue (`set_default_queue`) and the named queues
(`set_task_queues`) the tasks provider or a command sets at start-up. Enqueueing:
`submit_job`, `enqueue_job` and `enqueue_jobs` bound every enqueue by the process-wide
timeout (`configure_enqueue_timeout`) and report each job a queue accepted as "queued"
on `lexigram.tasks.events.producer_events()`.

`lexigram.tasks.decorators` re-exports every public name here; import them from there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from lexigram.contracts.tasks import (
    BackendConnectionError,
    Job,
    Result,
    ResultStoreProtocol,
    TaskQueueError,
    TaskQueueProtocol,
)
from lexigram.tasks.constants import DEFAULT_ENQUEUE_TIMEOUT
from lexigram.tasks.events import QUEUED, JobEvent, new_job_event, producer_events
from lexigram.tasks.handles import register_job_stores
from lexigram.tasks.observability._tracing import producer_span, producer_spans

if TYPE_CHECKING:
    from lexigram.contracts.tasks import ProgressStoreProtocol

DEFAULT_QUEUE = "default"
"""The `@task(queue=...)` value that means "the application's default queue"."""

_default_queue: TaskQueueProtocol | None = None
_named_queues: dict[str, TaskQueueProtocol] = {}
# The running runtime's opener of queues no configured backend serves (see `queue_for`).
_open_other_queue: Callable[[str], TaskQueueProtocol] | None = None


def set_default_queue(
    queue: TaskQueueProtocol | None,
    *,
    result_store: ResultStoreProtocol | None = None,
    progress_store: ProgressStoreProtocol | None = None,
) -> None:
    """Set the queue that `TaskFunction.delay` enqueues on (None to unset).

    The tasks provider calls this at boot with the application's primary queue; call it
    yourself in scripts and tests that use a queue without the provider.

    Args:
        queue: The default queue, or None.
        result_store: The result store its workers write to, so that the handles
            ``.delay()`` returns can await results (see `register_job_stores`).
        progress_store: The progress store its handlers report to.
    """
    global _default_queue  # noqa: PLW0603 - one process-wide default, as `delay` needs
    _default_queue = queue
    if queue is not None and (result_store is not None or progress_store is not None):
        register_job_stores(queue, result_store=result_store, progress_store=progress_store)


def set_task_queues(queues: Mapping[str, TaskQueueProtocol]) -> None:
    """Set the queues `TaskFunction.delay` routes to by name (``@task(queue=name)``).

    The tasks provider calls this at boot with every backend under its name and under
    its queue name; an empty mapping unsets them.

    Args:
        queues: Queue objects by name.
    """
    _named_queues.clear()
    _named_queues.update(queues)


def install_task_queues(
    default: TaskQueueProtocol,
    named: Mapping[str, TaskQueueProtocol],
    *,
    open_other: Callable[[str], TaskQueueProtocol] | None = None,
) -> Callable[[], None]:
    """Make `default` and `named` the queues ``.delay()`` uses; return how to take them back.

    What a runtime (a booted `TaskProvider`, a ``lexigram-tasks worker`` process) does at
    start. The returned function unsets them again, unless another runtime has installed
    its own queues since (then it leaves those alone).

    Args:
        default: The default queue.
        named: Queue objects by name (see `routing_table`).
        open_other: Opens the queue of a name `named` lacks, on the runtime's own backend
            (`lexigram.tasks.di._other_queues`); None: such a name is refused.
    """
    global _open_other_queue  # noqa: PLW0603 - installed and taken back with the queues
    set_default_queue(default)
    set_task_queues(named)
    _open_other_queue = open_other

    def uninstall() -> None:
        global _open_other_queue  # noqa: PLW0603
        if _default_queue is default:
            set_default_queue(None)
            set_task_queues({})
            _open_other_queue = None

    return uninstall


def routing_table(backends: Mapping[str, TaskQueueProtocol]) -> dict[str, TaskQueueProtocol]:
    """The names a job may give its queue by: every backend's, and unambiguous queue names.

    Each queue is listed under its backend's name and, where no other backend's queue has
    the same ``queue_name`` and no backend is named so, under its queue name too. What the
    tasks provider and the worker command install for ``.delay()`` and route jobs by.

    Args:
        backends: Each backend's queue, by backend name.
    """
    table = dict(backends)
    by_queue_name: dict[str, list[TaskQueueProtocol]] = {}
    for queue in backends.values():
        by_queue_name.setdefault(str(getattr(queue, "queue_name", "")), []).append(queue)
    for queue_name, queues in by_queue_name.items():
        if queue_name and len(queues) == 1 and queue_name not in table:
            table[queue_name] = queues[0]
    return table


def route_job(
    job: Job,
    table: Mapping[str, TaskQueueProtocol],
    fallback: TaskQueueProtocol,
    open_other: Callable[[str], TaskQueueProtocol] | None = None,
) -> TaskQueueProtocol:
    """The queue ``job.queue_name`` names, as `queue_for` finds it; `fallback` for none.

    A name of `table` gives its queue; any other name (but ``"default"``) the queue
    `open_other` opens, else `fallback`. A job naming a backend (``@task(queue="reports")``
    built with ``.s()``) is given that backend's own queue name, so that its record, a
    retry and a dead letter name the queue it is on rather than the backend's name.
    """
    name = job.queue_name
    if not name:
        return fallback
    queue = _queue_named(name, table, fallback, open_other)
    if queue is None:
        return fallback
    served = getattr(queue, "queue_name", None)
    if isinstance(served, str) and served:
        job.queue_name = served
    return queue


def get_task_queues() -> dict[str, TaskQueueProtocol]:
    """Return a copy of the queues `TaskFunction.delay` routes to by name."""
    return dict(_named_queues)


def queue_for(name: str) -> TaskQueueProtocol:
    """Return the queue a task declared with ``@task(queue=name)`` is enqueued on.

    ``"default"`` is the default queue; any other name is a queue set with
    `set_task_queues`, the default queue when that one serves a queue of this name, or
    else the queue of that name on the running runtime's own backend (a booted
    `TaskProvider`'s primary backend, a worker command's backend), which
    ``lexigram-tasks worker APP --queue name`` consumes.

    Raises:
        TaskQueueError: No queue of that name is set and no runtime is running to open
            one (only `set_default_queue` was called), or the runtime's backend keeps
            its queues in this process (``memory``), where no worker consumes it.
    """
    if name == DEFAULT_QUEUE:
        return get_default_queue()
    queue = _queue_named(name, _named_queues, _default_queue, _open_other_queue)
    if queue is not None:
        return queue
    known = sorted(_named_queues) or ["(none)"]
    msg = (
        f"No task queue named {name!r} is set, so a task declared with "
        f"@task(queue={name!r}) cannot be enqueued with .delay(); names set: "
        f"{', '.join(known)}. Boot a TaskProvider (it opens the queue {name!r} on its "
        "backend), pass the queue to set_task_queues, or enqueue with "
        ".apply_async(queue, ...)."
    )
    raise TaskQueueError(msg, queue_name=name)


def _queue_named(
    name: str,
    table: Mapping[str, TaskQueueProtocol],
    default: TaskQueueProtocol | None,
    open_other: Callable[[str], TaskQueueProtocol] | None,
) -> TaskQueueProtocol | None:
    """The rule both `queue_for` and `route_job` follow: the queue `name` leads to.

    ``"default"`` is `default`; else the queue `table` holds under the name, `default`
    when it serves a queue of that name, the one `open_other` opens, or None.
    """
    if name == DEFAULT_QUEUE:
        return default
    queue = table.get(name)
    if queue is not None:
        return queue
    if default is not None and getattr(default, "queue_name", None) == name:
        return default
    return None if open_other is None else open_other(name)


def queue_serving(queue_name: str) -> TaskQueueProtocol | None:
    """The queue of this process whose ``queue_name`` is `queue_name`, or None.

    Looked up among the default queue and the named queues (`set_task_queues`): the
    queues a tasks provider or a worker command consumes.
    """
    for queue in (_default_queue, *_named_queues.values()):
        if queue is not None and getattr(queue, "queue_name", None) == queue_name:
            return queue
    return None


def get_default_queue() -> TaskQueueProtocol:
    """Return the queue that `TaskFunction.delay` enqueues on.

    Raises:
        TaskQueueError: No default queue is configured.
    """
    if _default_queue is None:
        msg = (
            "No default task queue is configured, so .delay() has nowhere to enqueue. Boot "
            "the application with TasksModule/TaskProvider (it sets the default queue), call "
            "lexigram.tasks.decorators.set_default_queue(queue), or use "
            ".apply_async(queue, ...) with an explicit queue."
        )
        raise TaskQueueError(msg)
    return _default_queue


_enqueue_timeout: float | None = DEFAULT_ENQUEUE_TIMEOUT


def configure_enqueue_timeout(seconds: float | None) -> None:
    """Set how long every enqueue of this process may take (None: as long as it takes).

    The composition roots (`TaskProvider`, every ``lexigram-tasks`` command) set it from
    ``tasks.backend.enqueue_timeout``, so a web request calling ``.delay()`` while the
    broker is down fails after that many seconds with a clear error instead of hanging.
    """
    global _enqueue_timeout  # noqa: PLW0603 - a process-wide setting, like envelope signing
    _enqueue_timeout = seconds


def _enqueue_timed_out(
    queue: TaskQueueProtocol, what: str, seconds: float
) -> BackendConnectionError:
    return BackendConnectionError(
        f"Enqueueing {what} on queue {str(getattr(queue, 'queue_name', '?'))!r} got no answer "
        f"within {seconds:g} s (tasks.backend.enqueue_timeout): the broker may be down or "
        "overloaded. The job may or may not have been enqueued; send it again with the same "
        "idempotency key to be sure it runs once, or raise the timeout."
    )


async def submit_job(queue: TaskQueueProtocol, job: Job) -> Result[str, TaskQueueError]:
    """``queue.enqueue(job)`` that also reports the job: the one way the core enqueues.

    Emits one "queued" `JobEvent` on `producer_events()` when the queue accepted a new
    job (not for a duplicate id or idempotency key, nor a refused job). Use it wherever
    ``queue.enqueue`` would be called (it returns the same `Result`), e.g. as the
    scheduler's callback: ``functools.partial(submit_job, queue)``.

    Raises:
        BackendConnectionError: The queue gave no answer within the enqueue timeout
            (`configure_enqueue_timeout`), or could not reach its server.
    """
    timeout = _enqueue_timeout
    with producer_span(job, _queue_name(queue, job)):
        try:
            async with asyncio.timeout(timeout):
                result = await queue.enqueue(job)
        except TimeoutError:
            assert timeout is not None  # noqa: S101 - no deadline, no TimeoutError from it
            raise _enqueue_timed_out(queue, f"job {job.id} ({job.name})", timeout) from None
    if result.is_ok() and result.unwrap() == job.id:
        stream = producer_events()
        if stream:
            pending = stream.deliver(_queued(queue, job))
            if pending is not None:
                await pending
    return result


async def enqueue_job(queue: TaskQueueProtocol, job: Job) -> Job:
    """Enqueue `job` on `queue` and report it (`submit_job`), raising if it was refused.

    Returns:
        The job (for a duplicate idempotency key: carrying the first job's id).

    Raises:
        TaskQueueError: The queue refused the job.
    """
    result = await submit_job(queue, job)
    if result.is_err():
        raise result.unwrap_err()
    job_id = result.unwrap()
    if job_id != job.id:  # a duplicate idempotency key: the first job stands for this call
        job.id = job_id
    return job


async def enqueue_jobs(queue: TaskQueueProtocol, jobs: Sequence[Job]) -> list[Job | Exception]:
    """Enqueue several jobs with the queue's bulk call and report each accepted one.

    Returns:
        Per job, in order: the job (carrying the first job's id for a duplicate key),
        or the error the queue returned for it.
    """
    timeout = _enqueue_timeout
    # A generator: read only when a tracer is set.
    with producer_spans((job, _queue_name(queue, job)) for job in jobs):
        try:
            async with asyncio.timeout(timeout):
                results = await queue.enqueue_many(list(jobs))
        except TimeoutError:
            assert timeout is not None  # noqa: S101 - no deadline, no TimeoutError from it
            raise _enqueue_timed_out(queue, f"{len(jobs)} jobs", timeout) from None
    out: list[Job | Exception] = []
    accepted: list[Job] = []
    for job, result in zip(jobs, results, strict=True):
        if result.is_err():
            out.append(result.unwrap_err())
            continue
        job_id = result.unwrap()
        if job_id != job.id:
            job.id = job_id
        else:
            accepted.append(job)
        out.append(job)
    stream = producer_events()
    if stream:
        for job in accepted:
            pending = stream.deliver(_queued(queue, job))
            if pending is not None:
                await pending
    return out


def _queue_name(queue: TaskQueueProtocol, job: Job) -> str:
    return job.queue_name or str(getattr(queue, "queue_name", "") or "")


def _queued(queue: TaskQueueProtocol, job: Job) -> JobEvent:
    return new_job_event(
        kind=QUEUED,
        task=job.name,
        job_id=job.id,
        queue=_queue_name(queue, job),
        enqueued_at=job.created_at,
        metadata=job.metadata,
    )
