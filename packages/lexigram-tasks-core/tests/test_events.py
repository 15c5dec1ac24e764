from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from lexigram.tasks.events import (
    DomainEvent,
    EventBus,
    TaskCompletedEvent,
    TaskFailedEvent,
    TaskQueuedEvent,
)


def test_events_have_base_fields_and_default_event_type():
    event = TaskQueuedEvent(task_id="j1", queue_name="emails")
    assert isinstance(event.event_id, UUID)
    assert event.occurred_at.tzinfo is UTC
    assert event.event_type == "TaskQueuedEvent"
    assert event.aggregate_id is None
    assert event.schema_version == 1
    assert TaskCompletedEvent(task_id="j", worker_id="worker-1").worker_id == "worker-1"
    assert TaskFailedEvent(task_id="j", error="boom").error == "boom"
    with pytest.raises(TypeError):
        TaskQueuedEvent("j1", "emails")  # type: ignore[call-arg, arg-type]  # keyword-only


def test_events_are_frozen():
    event = TaskFailedEvent(task_id="j", error="e")
    with pytest.raises(AttributeError):
        event.error = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    "event",
    [
        TaskQueuedEvent(task_id="j1", queue_name="emails", actor_id="u1"),
        TaskCompletedEvent(task_id="j2", worker_id="worker-3", sequence_number=4),
        TaskFailedEvent(task_id="j3", error="ValueError: bad"),
    ],
)
def test_to_dict_is_json_ready_and_round_trips(event: DomainEvent):
    data = json.loads(json.dumps(event.to_dict()))
    assert data["event_type"] == type(event).__name__
    assert type(event).from_dict(data) == event
    rebuilt = DomainEvent.from_dict(data)  # the base class picks the subclass
    assert type(rebuilt) is type(event)
    assert rebuilt == event


def test_from_dict_ignores_unknown_keys_and_rejects_unknown_types():
    data = TaskQueuedEvent(task_id="j", queue_name="q").to_dict() | {"added_later": 1}
    assert TaskQueuedEvent.from_dict(data).task_id == "j"
    with pytest.raises(ValueError, match="event_type='Nope'"):
        DomainEvent.from_dict({"event_type": "Nope"})


def test_for_aggregate_returns_a_tied_copy():
    event = TaskCompletedEvent(task_id="j", worker_id="w")
    agg = uuid4()
    tied = event.for_aggregate(agg, "Order")
    assert (tied.aggregate_id, tied.aggregate_type) == (agg, "Order")
    assert tied.event_id == event.event_id
    assert event.aggregate_id is None
    assert event.for_aggregate(str(agg), "Order").aggregate_id == agg


def test_occurred_at_round_trips_timezone():
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    event = TaskFailedEvent(task_id="j", error="e", occurred_at=when)
    assert TaskFailedEvent.from_dict(event.to_dict()).occurred_at == when


async def test_bus_delivers_by_type_including_subclasses_in_order():
    bus = EventBus()
    seen: list[str] = []

    async def on_any(event: DomainEvent) -> None:
        seen.append(f"any:{event.event_type}")

    def on_completed(event: TaskCompletedEvent) -> None:
        seen.append(f"completed:{event.task_id}")

    bus.subscribe(DomainEvent, on_any)
    bus.subscribe(TaskCompletedEvent, on_completed)
    await bus.publish(TaskQueuedEvent(task_id="1", queue_name="q"))
    await bus.publish(TaskCompletedEvent(task_id="1", worker_id="w"))
    assert seen == ["any:TaskQueuedEvent", "any:TaskCompletedEvent", "completed:1"]


async def test_bus_unsubscribe_both_ways():
    bus = EventBus()
    seen: list[DomainEvent] = []
    remove = bus.subscribe(TaskFailedEvent, seen.append)
    remove()
    remove()  # twice is harmless
    bus.subscribe(TaskFailedEvent, seen.append)
    assert bus.unsubscribe(TaskFailedEvent, seen.append)
    assert not bus.unsubscribe(TaskFailedEvent, seen.append)
    await bus.publish(TaskFailedEvent(task_id="x", error="e"))
    assert seen == []


async def test_bus_logs_a_failing_subscriber_and_keeps_going(caplog):
    bus = EventBus()
    seen: list[str] = []

    def broken(event: DomainEvent) -> None:
        msg = "subscriber bug"
        raise RuntimeError(msg)

    bus.subscribe(TaskFailedEvent, broken)
    bus.subscribe(TaskFailedEvent, lambda e: seen.append(e.task_id))
    with caplog.at_level(logging.ERROR, logger="lexigram.tasks.events"):
        await bus.publish(TaskFailedEvent(task_id="j", error="e"))
    assert seen == ["j"]
    assert "subscriber bug" in caplog.text


async def test_bus_wait_for_matches_a_predicate():
    bus = EventBus()
    waiter = asyncio.create_task(bus.wait_for(TaskCompletedEvent, lambda e: e.task_id == "wanted"))
    await asyncio.sleep(0)
    await bus.publish(TaskCompletedEvent(task_id="other", worker_id="w"))
    assert not waiter.done()
    await bus.publish(TaskCompletedEvent(task_id="wanted", worker_id="w"))
    event = await waiter
    assert event.task_id == "wanted"
    assert repr(bus) == "EventBus(subscribers=0)"
