"""Payloads of the lifecycle hook actions ("task.queued", "task.started", ...).

They are values only: a `HookRegistryProtocol.emit` call carries one of them to every
observer of the action. Frozen so that one observer cannot change what the next sees.

The seed defines the first fields of each payload; the trailing ones with defaults
(`task_id` on `TaskEnqueuedHook`, `worker_id` on the others) are additions that let
`HookRegistry` build the domain events (`TaskQueuedEvent` needs the job id,
`TaskCompletedEvent` the worker id). Emitters that do not know them leave them empty.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskEnqueuedHook:
    """Payload fired when a task is placed on the queue (action ``"task.queued"``).

    Attributes:
        task_name: Name or type label of the enqueued task.
        queue_name: Name of the queue the task was added to.
        task_id: Id of the new job ("" when the emitter does not report it).
    """

    task_name: str
    queue_name: str
    task_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStartedHook:
    """Payload fired when a worker picks up and begins executing a task.

    Action ``"task.started"``.

    Attributes:
        task_name: Name or type label of the task being executed.
        task_id: Unique identifier of the task instance.
        worker_id: Id of the worker running it ("" when not reported).
    """

    task_name: str
    task_id: str
    worker_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCompletedHook:
    """Payload fired when a task finishes successfully (action ``"task.completed"``).

    Attributes:
        task_name: Name or type label of the completed task.
        task_id: Unique identifier of the task instance.
        worker_id: Id of the worker that ran it ("" when not reported).
    """

    task_name: str
    task_id: str
    worker_id: str = ""


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
    """

    task_name: str
    task_id: str
    reason: str
    worker_id: str = ""
