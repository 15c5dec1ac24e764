"""One job event stream: hooks, domain events, the dashboard and observers see the same facts."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import pytest

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.events import (
    COMPLETED,
    FAILED,
    DomainEvent,
    EventStream,
    JobEvent,
    TaskCompletedEvent,
    TaskFailedEvent,
)
from lexigram.tasks.execution import TaskWorker, TaskWorkerServices
from lexigram.tasks.hooks import HookRegistry, TaskCompletedHook, TaskFailedHook
from lexigram.tasks.observability import TaskDashboard, TaskMetricsCollector


class Collect:
    def __init__(self) -> None:
        self.events: list[JobEvent] = []

    def observe(self, event: JobEvent) -> None:
        self.events.append(event)


async def test_hooks_bus_dashboard_and_observers_see_the_same_events() -> None:
    hooks = HookRegistry()
    payloads: list[object] = []
    hooks.add_observer("task.completed", payloads.append)
    hooks.add_observer("task.failed", payloads.append)
    domain: list[DomainEvent] = []
    hooks.event_bus.subscribe(DomainEvent, domain.append)
    dashboard = TaskDashboard()
    collect = Collect()
    done = asyncio.Event()

    class Done:
        async def observe(self, event: JobEvent) -> None:  # an async observer
            if len([e for e in collect.events if e.kind in (COMPLETED, FAILED)]) == 2:
                done.set()

    async def ok() -> str:
        await asyncio.sleep(0.02)
        return "fine"

    async def bad() -> None:
        msg = "broken"
        raise RuntimeError(msg)

    queue = MemoryTaskQueue(queue_name="mail")
    worker = TaskWorker(
        "w1",
        queue,
        {"ok": ok, "bad": bad},
        services=TaskWorkerServices(hooks=hooks, dashboard=dashboard, observers=[collect, Done()]),
    )
    good, failing = Job(name="ok"), Job(name="bad", max_retries=0)
    for job in (good, failing):
        (await queue.enqueue(job)).unwrap()
    await worker.start()
    await asyncio.wait_for(done.wait(), 5)
    await worker.stop()

    finished = {e.job_id: e for e in collect.events if e.kind in (COMPLETED, FAILED)}
    assert finished[good.id].kind == COMPLETED
    assert finished[failing.id].kind == FAILED
    ok_duration = finished[good.id].duration
    assert ok_duration is not None
    assert ok_duration >= 0.02
    assert finished[good.id].queue == "mail"
    assert finished[good.id].worker_id == "w1"
    assert finished[good.id].enqueued_at == good.created_at

    completed_hook = next(p for p in payloads if isinstance(p, TaskCompletedHook))
    failed_hook = next(p for p in payloads if isinstance(p, TaskFailedHook))
    assert completed_hook.duration == ok_duration
    assert failed_hook.duration == finished[failing.id].duration
    completed_event = next(e for e in domain if isinstance(e, TaskCompletedEvent))
    failed_event = next(e for e in domain if isinstance(e, TaskFailedEvent))
    assert (completed_event.task_id, completed_event.duration) == (good.id, ok_duration)
    assert completed_event.task_name == "ok"
    assert failed_event.task_id == failing.id
    assert "broken" in failed_event.error
    recent = {r["job_id"]: r for r in dashboard.get_recent_executions()}
    assert recent[good.id]["duration_ms"] == pytest.approx(ok_duration * 1000.0)
    assert recent[failing.id]["success"] is False
    # Each job is reported once per kind: no second door.
    assert [e.kind for e in collect.events if e.job_id == good.id] == ["started", COMPLETED]


async def test_a_failing_observer_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        def observe(self, event: JobEvent) -> None:
            msg = "observer bug"
            raise ValueError(msg)

    collect = Collect()
    stream = EventStream([Broken(), collect])
    event = JobEvent(kind=COMPLETED, task="t", job_id="j1")
    with caplog.at_level(logging.ERROR):
        await stream.observe(event)
    assert collect.events == [event]
    assert any("Event observer" in r.getMessage() for r in caplog.records)
    with pytest.raises(TypeError, match="observe"):
        stream.add(object())  # type: ignore[arg-type]


async def test_a_dashboard_with_only_record_execution_is_still_fed() -> None:
    class Legacy:
        def __init__(self) -> None:
            self.calls: list[tuple[str, bool]] = []

        def record_execution(self, task_name: str, **fields: object) -> None:
            self.calls.append((task_name, bool(fields["success"])))

    legacy = Legacy()
    done = asyncio.Event()

    async def quick() -> None:
        done.set()

    queue = MemoryTaskQueue()
    worker = TaskWorker(
        "w1", queue, {"quick": quick}, services=TaskWorkerServices(dashboard=legacy)
    )
    (await queue.enqueue(Job(name="quick"))).unwrap()
    await worker.start()
    await asyncio.wait_for(done.wait(), 5)
    await worker.stop(drain=True)
    assert legacy.calls == [("quick", True)]


async def test_the_metrics_collector_observes_the_stream() -> None:
    metrics = TaskMetricsCollector()
    stream = EventStream([metrics])
    for kind in ("queued", "started", "retrying", "started", "completed"):
        await stream.observe(JobEvent(kind=kind, task="send", job_id="j1"))
    assert metrics.snapshot()["tasks"]["send"] == {
        "queued": 1,
        "started": 2,
        "retrying": 1,
        "completed": 1,
    }


class _Switchable:
    """An observer with a listening switch (as a `HookRegistry` has)."""

    def __init__(self, listening: bool) -> None:
        self.asked = 0
        self._listening = listening

    @property
    def listening(self) -> bool:
        self.asked += 1
        return self._listening

    def observe(self, event: object) -> None:
        del event


class _AlwaysListening:
    listening = True

    def observe(self, event: object) -> None:
        del event


def _listening(stream: EventStream) -> bool:
    """What `stream.listening` says now.

    Read through a call: mypy keeps an assert's narrowing of the attribute across the calls
    that change it, and would take the opposite assert that follows for unreachable.
    """
    return stream.listening


def test_an_observer_that_always_listens_answers_without_asking_the_others() -> None:
    quiet = _Switchable(listening=False)
    stream = EventStream([quiet])
    assert not _listening(stream)
    assert quiet.asked == 1

    remove = stream.add(_AlwaysListening())
    assert _listening(stream)
    assert quiet.asked == 1  # not asked again: the always-listening one decides

    remove()
    assert not _listening(stream)
    assert quiet.asked == 2

    switched_off = _AlwaysListening()
    switched_off.listening = False  # set on the instance: it is asked like a switch
    stream.add(switched_off)
    assert not _listening(stream)


def test_new_job_event_is_a_frozen_job_event_like_one_built_directly() -> None:
    import dataclasses
    import pickle

    from lexigram.tasks.events import JobEvent, new_job_event

    fields = {"kind": "started", "task": "t", "job_id": "j1", "attempt": 1, "metadata": {"a": 1}}
    fast = new_job_event(**fields)  # type: ignore[arg-type]
    assert type(fast) is JobEvent
    assert fast == JobEvent(**fields)  # type: ignore[arg-type]
    assert repr(fast) == repr(JobEvent(**fields))  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.kind = "completed"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(fast)) == fast  # noqa: S301 - our own bytes
    assert dataclasses.replace(fast, kind="completed").kind == "completed"
    with pytest.raises(TypeError):
        new_job_event(kind="started")  # type: ignore[call-arg]


def test_new_job_event_takes_the_fields_in_order_positionally() -> None:
    from lexigram.tasks.events import JobEvent, new_job_event

    values: tuple[Any, ...] = (  # one value of each field's type
        "failed",
        "t",
        "j1",
        "q",
        2,
        "w",
        1.0,
        2.0,
        3.0,
        1.0,
        "E: x",
        "rejected",
        None,
        {},
    )
    names = [field.name for field in dataclasses.fields(JobEvent)]
    assert new_job_event(*values) == JobEvent(**dict(zip(names, values, strict=True)))


async def test_deliver_calls_plain_observers_now_and_returns_nothing_to_await() -> None:
    first, second = Collect(), Collect()
    stream = EventStream([first, second])
    event = JobEvent(kind=COMPLETED, task="t", job_id="j1")
    assert stream.deliver(event) is None
    assert first.events == second.events == [event]


async def test_deliver_hands_the_rest_on_after_an_async_observer_in_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    class Plain:
        def __init__(self, name: str) -> None:
            self.name = name

        def observe(self, event: JobEvent) -> None:
            seen.append(self.name)

    class Slow:
        async def observe(self, event: JobEvent) -> None:
            await asyncio.sleep(0)
            seen.append("slow")

    class BrokenAsync:
        async def observe(self, event: JobEvent) -> None:
            msg = "async observer bug"
            raise ValueError(msg)

    same = Plain("twice")
    stream = EventStream([Plain("a"), Slow(), same, BrokenAsync(), same, Plain("z")])
    pending = stream.deliver(JobEvent(kind=COMPLETED, task="t", job_id="j1"))
    assert seen == ["a"]  # the async observer's turn has come: the rest wait for it
    assert pending is not None
    with caplog.at_level(logging.ERROR):
        await pending
    assert seen == ["a", "slow", "twice", "twice", "z"]
    assert any("async observer bug" in str(r.exc_info) for r in caplog.records)
    # `observe` is the awaitable form of the same delivery.
    seen.clear()
    await stream.observe(JobEvent(kind=COMPLETED, task="t", job_id="j2"))
    assert seen == ["a", "slow", "twice", "twice", "z"]


async def test_a_nested_stream_delivers_through_its_parent() -> None:
    inner_seen = Collect()
    inner = EventStream([inner_seen])
    outer = EventStream([inner])
    pending = outer.deliver(JobEvent(kind=COMPLETED, task="t", job_id="j1"))
    assert pending is not None  # a stream's observe is a coroutine
    await pending
    assert [e.job_id for e in inner_seen.events] == ["j1"]
