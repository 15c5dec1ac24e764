"""Payloads of the lifecycle hook actions ("task.queued", "task.started", ...).

They are values only: a `HookRegistryProtocol.emit` call carries one of them to every
observer of the action. Frozen so that one observer cannot change what the next sees.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskEnqueuedHook:
    """Payload fired when a task is placed on the queue (action ``"task.queued"``).

    Attributes:
        task_name: Name or type label of the enqueued task.
        queue_name: Name of the queue the task was added to.
    """

    task_name: str
    queue_name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStartedHook:
    """Payload fired when a worker picks up and begins executing a task.

    Attributes:
        task_name: Name or type label of the task being executed.
        task_id: Unique identifier of the task instance.
    """

    task_name: str
    task_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCompletedHook:
    """Payload fired when a task finishes successfully (action ``"task.completed"``).

    Attributes:
        task_name: Name or type label of the completed task.
        task_id: Unique identifier of the task instance.
    """

    task_name: str
    task_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFailedHook:
    """Payload fired when a task raises an unhandled exception (action ``"task.failed"``).

    Attributes:
        task_name: Name or type label of the failed task.
        task_id: Unique identifier of the task instance.
        reason: Short description or exception message.
    """

    task_name: str
    task_id: str
    reason: str
