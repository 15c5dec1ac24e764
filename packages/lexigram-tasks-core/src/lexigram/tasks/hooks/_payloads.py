"""Payloads of the lifecycle hook actions ("task.queued", "task.started", ...).

They are values only: a `HookRegistryProtocol.emit` call carries one of them to every
observer of the action. Frozen so that one observer cannot change what the next sees.

The first fields of each payload are the original ones; the trailing ones with
defaults (job id, worker id, queue, attempt, duration, and the whole `JobEvent`) carry
what the job event stream knows. Emitters that do not know them leave them empty.
`hook_call_for` is the one mapping from a `JobEvent` to an action and its payload.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lexigram.tasks.events import COMPLETED, FAILED, QUEUED, STARTED, JobEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskEnqueuedHook:
    """Payload fired when a task is placed on the queue (action ``"task.queued"``).

    Attributes:
        task_name: Name or type label of the enqueued task.
        queue_name: Name of the queue the task was added to.
        task_id: Id of the new job ("" when the emitter does not report it).
        event: The job event this payload was made from (None when emitted by hand).
    """

    task_name: str
    queue_name: str
    task_id: str = ""
    event: JobEvent | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStartedHook:
    """Payload fired when a worker picks up and begins executing a task.

    Action ``"task.started"``.

    Attributes:
        task_name: Name or type label of the task being executed.
        task_id: Unique identifier of the task instance.
        worker_id: Id of the worker running it ("" when not reported).
        queue_name: Queue the job came from ("" when not reported).
        attempt: Attempt number, 1 for the first run (0 when not reported).
        event: The job event this payload was made from (None when emitted by hand).
    """

    task_name: str
    task_id: str
    worker_id: str = ""
    queue_name: str = ""
    attempt: int = 0
    event: JobEvent | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCompletedHook:
    """Payload fired when a task finishes successfully (action ``"task.completed"``).

    Attributes:
        task_name: Name or type label of the completed task.
        task_id: Unique identifier of the task instance.
        worker_id: Id of the worker that ran it ("" when not reported).
        queue_name: Queue the job came from ("" when not reported).
        attempt: Attempt number, 1 for the first run (0 when not reported).
        duration: Seconds the attempt ran (None when not reported).
        event: The job event this payload was made from (None when emitted by hand).
    """

    task_name: str
    task_id: str
    worker_id: str = ""
    queue_name: str = ""
    attempt: int = 0
    duration: float | None = None
    event: JobEvent | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFailedHook:
    """Payload fired when a task raises an unhandled exception (action ``"task.failed"``).

    The worker fires it once per job, when the job fails for good (retries exhausted,
    or the job cannot run at all) and is dead-lettered; attempts that are retried do
    not fire it.

    Attributes:
        task_name: Name or type label of the failed task.
        task_id: Unique identifier of the task instance.
        reason: Short description or exception message.
        worker_id: Id of the worker that ran it ("" when not reported).
        queue_name: Queue the job came from ("" when not reported).
        attempt: Number of the last attempt (0 when not reported).
        duration: Seconds the last attempt ran (None when not reported).
        event: The job event this payload was made from (None when emitted by hand).
    """

    task_name: str
    task_id: str
    reason: str
    worker_id: str = ""
    queue_name: str = ""
    attempt: int = 0
    duration: float | None = None
    event: JobEvent | None = field(default=None, compare=False, repr=False)


def hook_call_for(event: JobEvent) -> tuple[str, Any] | None:
    """The hook action and payload of a job event, or None for kinds hooks do not see.

    "queued" -> ``task.queued``, "started" -> ``task.started``, "completed" ->
    ``task.completed``, "failed" (dead-lettered) -> ``task.failed``; "retrying",
    "released", "lost" and "cancelled" have no hook action.
    """
    kind = event.kind
    if kind == COMPLETED:
        return "task.completed", TaskCompletedHook(
            task_name=event.task,
            task_id=event.job_id,
            worker_id=event.worker_id,
            queue_name=event.queue,
            attempt=event.attempt,
            duration=event.duration,
            event=event,
        )
    if kind == STARTED:
        return "task.started", TaskStartedHook(
            task_name=event.task,
            task_id=event.job_id,
            worker_id=event.worker_id,
            queue_name=event.queue,
            attempt=event.attempt,
            event=event,
        )
    if kind == FAILED:
        return "task.failed", TaskFailedHook(
            task_name=event.task,
            task_id=event.job_id,
            reason=event.error or event.reason or "failed",
            worker_id=event.worker_id,
            queue_name=event.queue,
            attempt=event.attempt,
            duration=event.duration,
            event=event,
        )
    if kind == QUEUED:
        return "task.queued", TaskEnqueuedHook(
            task_name=event.task, queue_name=event.queue, task_id=event.job_id, event=event
        )
    return None
