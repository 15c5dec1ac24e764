"""The domain events: `DomainEvent` and the task events a `HookRegistry` publishes.

`TaskQueuedEvent`, `TaskCompletedEvent` and `TaskFailedEvent` are what the job event
stream becomes on an `EventBus` (see `lexigram.tasks.events`, which re-exports every
name here; import them from there). They are plain frozen dataclasses: `to_dict` and
`DomainEvent.from_dict` carry them as JSON.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Self, cast
from uuid import UUID, uuid4


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainEvent:
    """Base of the domain events: identity, time, and optional aggregate metadata.

    `event_type` defaults to the class name. `to_dict` gives a JSON-ready dict and
    `DomainEvent.from_dict` rebuilds the right subclass from it.

    Attributes:
        event_id: Unique id of this event.
        occurred_at: When it happened (timezone-aware, UTC).
        event_type: Type label (the class name unless given).
        aggregate_id: Id of the aggregate the event belongs to, if any.
        aggregate_type: Type of that aggregate.
        sequence_number: Position in the aggregate's event stream, if tracked.
        actor_id: Who caused it, if known.
        schema_version: Version of the event's shape.
    """

    _types: ClassVar[dict[str, type[DomainEvent]]] = {}

    event_id: UUID = field(default_factory=uuid4)
    occurred_at: datetime = field(default_factory=_now)
    event_type: str | None = None
    aggregate_id: UUID | None = None
    aggregate_type: str | None = None
    sequence_number: int | None = None
    actor_id: str | None = None
    schema_version: int = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Explicit super(): @dataclass(slots=True) rebuilds the class, which breaks the
        # zero-argument form. The rebuilt class registers last, so it is the one kept.
        super(DomainEvent, cls).__init_subclass__(**kwargs)
        DomainEvent._types[cls.__name__] = cls

    def __post_init__(self) -> None:
        if self.event_type is None:
            object.__setattr__(self, "event_type", type(self).__name__)

    def to_dict(self) -> dict[str, Any]:
        """Return the event as a JSON-ready dict (ids and times as strings)."""
        data: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, UUID):
                value = str(value)
            elif isinstance(value, datetime):
                value = value.isoformat()
            data[f.name] = value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild an event from `to_dict` output.

        Called on `DomainEvent` itself, the subclass named by ``event_type`` is built.
        Unknown keys are ignored, so newer producers do not break older consumers.

        Raises:
            ValueError: ``event_type`` names no known event, or a field has a bad value.
        """
        target: type[DomainEvent] = cls
        if cls is DomainEvent:
            name = data.get("event_type")
            found = DomainEvent._types.get(str(name)) if name is not None else None
            if found is None:
                known = sorted(DomainEvent._types)
                msg = (
                    f"Cannot rebuild a DomainEvent with event_type={name!r} (known: {known}). "
                    "Call from_dict on the event class itself, or check the stored event_type."
                )
                raise ValueError(msg)
            target = found
        names = {f.name for f in dataclasses.fields(target)}
        values = {key: value for key, value in data.items() if key in names}
        for key in ("event_id", "aggregate_id"):
            if isinstance(values.get(key), str):
                values[key] = UUID(values[key])
        if isinstance(values.get("occurred_at"), str):
            values["occurred_at"] = datetime.fromisoformat(values["occurred_at"])
        return cast("Self", target(**values))

    def for_aggregate(self, aggregate_id: UUID | str, aggregate_type: str) -> Self:
        """Return a copy of the event tied to an aggregate.

        Args:
            aggregate_id: The aggregate's id (a UUID or its string form).
            aggregate_type: The aggregate's type label.
        """
        agg = aggregate_id if isinstance(aggregate_id, UUID) else UUID(str(aggregate_id))
        return dataclasses.replace(self, aggregate_id=agg, aggregate_type=aggregate_type)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskQueuedEvent(DomainEvent):
    """Emitted when a task is accepted into a processing queue.

    Attributes:
        task_id: Unique identifier of the queued task.
        queue_name: Name of the queue that accepted the task.
        task_name: Name of the task ("" when not reported).
    """

    task_id: str
    queue_name: str
    task_name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskCompletedEvent(DomainEvent):
    """Emitted when a task finishes successfully.

    Attributes:
        task_id: Unique identifier of the completed task.
        worker_id: Identifier of the worker that executed the task.
        task_name: Name of the task ("" when not reported).
        attempt: Which attempt succeeded (1 = the first).
        duration: Seconds the attempt ran (None when not reported).
    """

    task_id: str
    worker_id: str
    task_name: str = ""
    attempt: int = 0
    duration: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFailedEvent(DomainEvent):
    """Emitted when a task fails after all retry attempts are exhausted.

    Attributes:
        task_id: Unique identifier of the failed task.
        error: Human-readable description of the failure reason.
        task_name: Name of the task ("" when not reported).
        worker_id: Identifier of the worker that ran the last attempt.
        attempt: Number of the last attempt (1 = the first).
        duration: Seconds the last attempt ran (None when not reported).
    """

    task_id: str
    error: str
    task_name: str = ""
    worker_id: str = ""
    attempt: int = 0
    duration: float | None = None


def domain_event_of(action: str, payload: Any) -> DomainEvent | None:
    """The domain event of a lifecycle hook action and its payload, or None if it has none."""
    task_id = str(getattr(payload, "task_id", "") or "")
    task_name = str(getattr(payload, "task_name", "") or "")
    if action == "task.queued":
        return TaskQueuedEvent(
            task_id=task_id, queue_name=str(payload.queue_name), task_name=task_name
        )
    worker_id = str(getattr(payload, "worker_id", "") or "")
    attempt = int(getattr(payload, "attempt", 0) or 0)
    duration = getattr(payload, "duration", None)
    if action == "task.completed":
        return TaskCompletedEvent(
            task_id=task_id,
            worker_id=worker_id,
            task_name=task_name,
            attempt=attempt,
            duration=duration,
        )
    if action == "task.failed":
        return TaskFailedEvent(
            task_id=task_id,
            error=str(getattr(payload, "reason", "")),
            task_name=task_name,
            worker_id=worker_id,
            attempt=attempt,
            duration=duration,
        )
    return None
