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
    CompletionCounter,
    EventStream,
    JobEvent,
    TaskCompletedEvent,
    event_routes_changed,
    new_job_event,
)
from lexigram.tasks.execution import TaskWorker, TaskWorkerServices
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
    built_event_kinds: list[str],
) -> None:
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
    assert built_event_kinds == [COMPLETED] * 3  # no "started" event was built for anyone


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


class _Counter(_Recorder):
    """Counts completed jobs from their figures; takes every other kind it names as events."""

    def __init__(self, kinds: frozenset[str] | None = frozenset({FAILED})) -> None:
        super().__init__(kinds)
        self.counted: list[tuple[Any, ...]] = []

    def count_completed(self, *figures: Any) -> None:
        self.counted.append(figures)


def test_completed_jobs_go_to_counters_as_figures_and_to_readers_as_events() -> None:
    counter = _Counter()
    wants_the_event = _Counter(frozenset({COMPLETED}))  # has the method, asks for events
    stream = EventStream([counter, wants_the_event])
    # Counted by one, read as an event by the other.
    assert stream.completion_listeners() == ((counter.count_completed,), True)
    stream.remove(wants_the_event)
    # No event is built for the counter alone.
    assert stream.completion_listeners() == ((counter.count_completed,), False)
    assert not stream.listening_to(COMPLETED)
    stream.count_completed("t", "q", 1, 100.0, 100.5, 0.25)
    assert counter.counted == [("t", "q", 1, 100.0, 100.5, 0.25)]
    assert wants_the_event.counted == []


def test_a_nested_stream_hands_on_what_its_counters_count() -> None:
    counter = _Counter()
    reader = _Recorder(frozenset({COMPLETED}))
    inner = EventStream([counter, reader])
    outer = EventStream([inner])
    counters, read = outer.completion_listeners()
    # Typed as what it is compared with: mypy narrows `counters` by the comparison, and the
    # bound method's own type would leave nothing of it.
    expected: tuple[CompletionCounter, ...] = (inner.count_completed,)
    assert counters == expected
    assert read  # the inner stream's reader listens
    for count in counters:
        count("t", "q", 2, None, 100.5, 0.5)
    assert counter.counted == [("t", "q", 2, None, 100.5, 0.5)]
    assert reader.seen == []  # figures only: no event was delivered


def test_a_counter_that_raises_is_logged_and_the_others_still_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(_Counter):
        def count_completed(self, *figures: Any) -> None:
            msg = "broken counter"
            raise RuntimeError(msg)

    counter = _Counter()
    stream = EventStream([Broken(), counter])
    stream.count_completed("t", "q", 1, None, None, 0.1)
    assert counter.counted == [("t", "q", 1, None, None, 0.1)]
    assert "Completion counter" in caplog.text
    assert "broken counter" in caplog.text


async def test_the_worker_counts_completed_jobs_without_building_their_events(
    built_event_kinds: list[str], caplog: pytest.LogCaptureFixture
) -> None:

    class Broken(_Counter):
        def count_completed(self, *figures: Any) -> None:
            msg = "broken counter"
            raise RuntimeError(msg)

    all_counted = asyncio.Event()

    class Counter(_Counter):
        def count_completed(self, *figures: Any) -> None:
            super().count_completed(*figures)
            if len(self.counted) == 3:
                all_counted.set()

    counter = Counter()

    async def job(n: int) -> int:
        return n

    queue = MemoryTaskQueue(queue_name="counted")
    services = TaskWorkerServices(observers=[Broken(), counter])
    worker = TaskWorker("w1", queue, {"job": job}, services=services)
    for n in range(3):
        (await queue.enqueue(Job(name="job", args=(n,)))).unwrap()
    await worker.start()
    await asyncio.wait_for(all_counted.wait(), 5)
    await worker.stop()
    assert built_event_kinds == []  # no event of any kind: nobody reads one
    assert worker.stats.jobs_succeeded == 3  # the broken counter failed no job
    for task, queue_name, attempt, enqueued_at, started_at, duration in counter.counted:
        assert (task, queue_name, attempt) == ("job", "counted", 1)
        assert 0 < enqueued_at <= started_at
        assert duration >= 0
    assert caplog.text.count("broken counter") == 3
