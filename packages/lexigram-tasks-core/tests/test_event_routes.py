"""Routing job events by kind: observers say what they handle, emitters build nothing else."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from typing import Any

import pytest

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.events import (
    COMPLETED,
    FAILED,
    STARTED,
    EventStream,
    JobEvent,
    TaskCompletedEvent,
    event_routes_changed,
    new_job_event,
)
from lexigram.tasks.execution import TaskWorker, TaskWorkerServices, _settle
from lexigram.tasks.hooks import HookRegistry
from lexigram.tasks.hookspecs import hookimpl


class _Recorder:
    """Records the kinds it is handed; `event_kinds` None means every kind."""

    def __init__(self, kinds: frozenset[str] | None = None, *, listening: bool = True) -> None:
        self.event_kinds = kinds
        self.seen: list[str] = []
        self._listening = listening
        self.asked = 0

    @property
    def listening(self) -> bool:
        self.asked += 1
        return self._listening

    def observe(self, event: JobEvent) -> None:
        self.seen.append(event.kind)


def _event(kind: str) -> JobEvent:
    return JobEvent(kind=kind, task="t", job_id="j", queue="q")


async def test_a_stream_hands_each_event_only_to_the_observers_of_its_kind() -> None:
    outcomes = _Recorder(frozenset({COMPLETED, FAILED}))
    everything = _Recorder()
    stream = EventStream([outcomes, everything])
    for kind in (STARTED, COMPLETED, "custom"):
        await stream.observe(_event(kind))
    assert outcomes.seen == [COMPLETED]
    assert everything.seen == [STARTED, COMPLETED, "custom"]


def test_listening_to_asks_only_the_observers_of_the_kind() -> None:
    outcomes = _Recorder(frozenset({COMPLETED}), listening=True)
    quiet = _Recorder(frozenset({STARTED, COMPLETED}), listening=False)
    stream = EventStream([quiet, outcomes])
    assert not stream.listening_to(STARTED)
    assert stream.listening_to(COMPLETED)
    assert outcomes.asked == 1  # asked for "completed" only (quiet first said no)
    assert not stream.listening_to("queued")  # nobody handles it
    assert stream.listening  # the kind-blind question still sees every observer


def test_an_observer_that_changes_its_kinds_is_routed_anew_once_it_says_so() -> None:
    recorder = _Recorder(frozenset({COMPLETED}))
    stream = EventStream([recorder])
    assert not stream.listening_to(STARTED)
    recorder.event_kinds = frozenset({STARTED, COMPLETED})
    event_routes_changed()
    assert stream.listening_to(STARTED)


async def test_a_nested_stream_is_routed_by_the_kinds_of_its_observers() -> None:
    inner = EventStream([_Recorder(frozenset({COMPLETED}))])
    outer = EventStream([inner])
    assert not outer.listening_to(STARTED)
    late = _Recorder(frozenset({STARTED}))
    inner.add(late)  # added after the outer stream made its routes
    assert outer.listening_to(STARTED)
    await outer.observe(_event(STARTED))
    assert late.seen == [STARTED]


def test_new_job_event_takes_the_fields_and_defaults_of_job_event() -> None:
    parameters = inspect.signature(new_job_event).parameters
    fields = {f.name: f.default for f in dataclasses.fields(JobEvent)}
    assert list(parameters) == list(fields)
    for name, parameter in parameters.items():
        default = fields[name]
        expected = inspect.Parameter.empty if default is dataclasses.MISSING else default
        assert parameter.default == expected, name


def test_a_hook_registry_asks_for_no_event_until_something_listens() -> None:
    hooks = HookRegistry()
    stream = EventStream([hooks])
    assert not stream.listening_to(STARTED)
    assert not stream.listening_to(COMPLETED)

    remove = hooks.add_observer("task.started", lambda payload: None)
    assert stream.listening_to(STARTED)
    remove()
    assert not stream.listening_to(STARTED)

    unsubscribe = hooks.event_bus.subscribe(TaskCompletedEvent, lambda event: None)
    assert stream.listening_to(COMPLETED)
    unsubscribe()
    assert not stream.listening_to(COMPLETED)

    class Plugin:
        @hookimpl
        def lexigram_tasks_after_execute(self, payload: Any) -> None:
            del payload

    plugin = Plugin()
    hooks.register_plugin(plugin)
    assert stream.listening_to(COMPLETED)
    hooks.unregister_plugin(plugin)
    assert not stream.listening_to(COMPLETED)


async def test_the_worker_builds_no_event_of_a_kind_nobody_handles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[str] = []

    def counting(*fields: Any) -> JobEvent:
        built.append(fields[0])  # the worker passes the fields positionally, kind first
        return new_job_event(*fields)

    monkeypatch.setattr(_settle, "new_job_event", counting)
    all_done = asyncio.Event()

    class Outcomes(_Recorder):
        def observe(self, event: JobEvent) -> None:
            super().observe(event)
            if len(self.seen) == 3:
                all_done.set()

    outcomes = Outcomes(frozenset({COMPLETED}))

    async def job() -> None:
        pass

    queue = MemoryTaskQueue(queue_name="routes")
    services = TaskWorkerServices(hooks=HookRegistry(), observers=[outcomes])
    worker = TaskWorker("w1", queue, {"job": job}, services=services)
    for _ in range(3):
        (await queue.enqueue(Job(name="job"))).unwrap()
    await worker.start()
    await asyncio.wait_for(all_done.wait(), 5)
    await worker.stop()
    assert outcomes.seen == [COMPLETED] * 3
    assert built == [COMPLETED] * 3  # no "started" event was built for anyone


async def test_an_event_kinds_that_is_no_collection_of_names_declares_nothing() -> None:
    class WithAMethod:
        def __init__(self) -> None:
            self.seen: list[str] = []

        def event_kinds(self, job_id: str) -> list[str]:  # the user's own, unrelated
            return [job_id]

        def observe(self, event: JobEvent) -> None:
            self.seen.append(event.kind)

    with_a_method = WithAMethod()
    one_string = _Recorder()
    one_string.event_kinds = COMPLETED  # type: ignore[assignment]
    stream = EventStream([with_a_method, one_string])
    await stream.observe(_event(STARTED))
    assert with_a_method.seen == [STARTED]
    assert one_string.seen == [STARTED]
