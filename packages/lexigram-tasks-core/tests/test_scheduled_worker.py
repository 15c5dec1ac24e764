from __future__ import annotations

import asyncio
import logging

import pytest

from lexigram.contracts.tasks import OnErrorPolicy
from lexigram.tasks.background_task_manager import BackgroundTaskManager
from lexigram.tasks.scheduled_worker import ScheduledWorker


class ScriptedWorker(ScheduledWorker):
    """Runs a script of outcomes; records each wait instead of sleeping through it."""

    interval_seconds = 1.0

    def __init__(self, task_manager, outcomes, **kwargs) -> None:
        super().__init__(task_manager, **kwargs)
        self.outcomes = list(outcomes)
        self.waits: list[float] = []
        self.finished = asyncio.Event()
        self.calls = 0

    async def run_cycle(self) -> None:
        self.calls += 1
        if not self.outcomes:
            self.finished.set()
            await self._stop_event.wait()  # park until stopped
            return
        outcome = self.outcomes.pop(0)
        if outcome == "fail":
            msg = f"cycle {self.calls} failed"
            raise RuntimeError(msg)

    async def _wait(self, seconds: float) -> bool:
        # Record the requested pause and return at once: policies are tested on the
        # delays they ask for, not by sleeping through them.
        self.waits.append(seconds)
        await asyncio.sleep(0)
        return self._stop_event.is_set()


async def test_backoff_doubles_up_to_ten_times_the_interval_and_resets_on_success(caplog):
    manager = BackgroundTaskManager()
    script = ["fail"] * 6 + ["ok", "fail"]
    worker = ScriptedWorker(manager, script, on_error_policy=OnErrorPolicy.BACKOFF)
    with caplog.at_level(logging.ERROR):
        await worker.start()
        await worker.finished.wait()
    assert worker.waits == [2.0, 4.0, 8.0, 10.0, 10.0, 10.0, 1.0, 2.0]
    assert "policy BACKOFF" in caplog.text
    await worker.stop()
    assert not worker.is_running


async def test_log_and_continue_keeps_the_interval(caplog):
    manager = BackgroundTaskManager()
    worker = ScriptedWorker(manager, ["fail", "fail", "ok", "fail"], interval_seconds=0.5)
    with caplog.at_level(logging.ERROR):
        await worker.start()
        await worker.finished.wait()
    assert worker.effective_policy is OnErrorPolicy.LOG_AND_CONTINUE
    assert worker.waits == [0.5, 0.5, 0.5, 0.5]
    assert worker.cycles_run == 4
    assert caplog.text.count("policy LOG_AND_CONTINUE") == 3
    await worker.stop()


async def test_stop_policy_ends_the_worker_after_the_first_failure(caplog):
    manager = BackgroundTaskManager()
    worker = ScriptedWorker(manager, ["ok", "fail", "ok"], on_error_policy=OnErrorPolicy.STOP)
    with caplog.at_level(logging.ERROR):
        await worker.start()
        assert worker._task is not None
        await asyncio.wait({worker._task})
    assert worker.calls == 2
    assert worker.waits == [1.0]
    assert not worker.is_running
    assert "policy STOP" in caplog.text
    assert "cycle 2 failed" in caplog.text
    await worker.stop()  # stopping a stopped worker is fine


async def test_jitter_and_initial_delay_are_applied():
    manager = BackgroundTaskManager()
    worker = ScriptedWorker(
        manager, ["ok", "ok", "ok"], initial_delay_seconds=3.0, max_jitter_seconds=0.25
    )
    await worker.start()
    await worker.finished.wait()
    assert worker.waits[0] == 3.0
    assert len(worker.waits) == 4
    assert all(1.0 <= w <= 1.25 for w in worker.waits[1:])
    await worker.stop()


class Ticker(ScheduledWorker):
    interval_seconds = 3600.0  # a long interval: stop must not wait for it

    def __init__(self, task_manager, **kwargs) -> None:
        super().__init__(task_manager, **kwargs)
        self.ticks = 0
        self.ticked = asyncio.Event()

    async def run_cycle(self) -> None:
        self.ticks += 1
        self.ticked.set()


def _running(worker: ScheduledWorker) -> bool:
    """What `worker.is_running` says now.

    Read through a call: mypy keeps an assert's narrowing of the attribute across the calls
    that change it, and would take the opposite assert that follows for unreachable.
    """
    return worker.is_running


async def test_stop_wakes_the_sleep_at_once():
    manager = BackgroundTaskManager()
    worker = Ticker(manager)
    await worker.start()
    await worker.ticked.wait()
    assert _running(worker)
    async with asyncio.timeout(5):  # a safety net; stop is event-driven
        await worker.stop(grace_seconds=5.0)
    assert not _running(worker)
    assert worker.ticks == 1


async def test_stop_during_initial_delay_skips_the_first_cycle():
    manager = BackgroundTaskManager()
    worker = Ticker(manager, initial_delay_seconds=3600.0)
    await worker.start()
    await asyncio.sleep(0)
    await worker.stop()
    assert worker.ticks == 0


async def test_stop_lets_the_current_cycle_finish_within_grace():
    manager = BackgroundTaskManager()
    inside = asyncio.Event()
    release = asyncio.Event()
    finished: list[bool] = []

    class Slow(ScheduledWorker):
        async def run_cycle(self) -> None:
            inside.set()
            await release.wait()
            finished.append(True)

    worker = Slow(manager, interval_seconds=3600.0)
    await worker.start()
    await inside.wait()
    stopping = asyncio.create_task(worker.stop(grace_seconds=30.0))
    await asyncio.sleep(0)
    assert not stopping.done()
    release.set()
    await stopping
    assert finished == [True]


async def test_stop_cancels_a_cycle_that_overruns_the_grace(caplog):
    manager = BackgroundTaskManager()
    inside = asyncio.Event()
    cancelled = asyncio.Event()

    class Stuck(ScheduledWorker):
        async def run_cycle(self) -> None:
            inside.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

    worker = Stuck(manager, interval_seconds=3600.0)
    await worker.start()
    await inside.wait()
    with caplog.at_level(logging.WARNING):
        await worker.stop(grace_seconds=0.01)
    assert cancelled.is_set()
    assert "did not stop within" in caplog.text
    assert not worker.is_running


async def test_start_twice_warns_and_shutdown_of_the_manager_stops_it(caplog):
    manager = BackgroundTaskManager()
    worker = Ticker(manager)
    await worker.start()
    with caplog.at_level(logging.WARNING):
        await worker.start()
    assert "already running" in caplog.text
    await worker.ticked.wait()
    assert manager.pending_names() == ["Ticker"]
    await manager.shutdown(timeout=5.0)
    assert not worker.is_running


def test_reference_class_defaults_and_constructor_overrides():
    class MyWorker(ScheduledWorker):
        interval_seconds = 60.0
        initial_delay_seconds = 0.0
        max_jitter_seconds = 0.0
        on_error_policy = OnErrorPolicy.LOG_AND_CONTINUE

        async def run_cycle(self) -> None:
            return None

    task_manager = BackgroundTaskManager()
    worker = MyWorker(
        task_manager=task_manager,
        interval_seconds=30.0,
        on_error_policy=OnErrorPolicy.BACKOFF,
    )
    assert worker.effective_interval == 30.0
    assert worker.effective_policy is OnErrorPolicy.BACKOFF
    assert MyWorker(task_manager).effective_interval == 60.0
    with pytest.raises(ValueError, match=r"interval_seconds=0\.0"):
        MyWorker(task_manager, interval_seconds=0)
    with pytest.raises(ValueError, match="must not be negative"):
        MyWorker(task_manager, max_jitter_seconds=-1)
