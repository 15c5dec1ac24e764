"""A task that blocks the event loop is named in a warning, with the fix."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.execution import TaskWorker, TaskWorkerServices
from lexigram.tasks.execution._lag import LoopLagMonitor
from lexigram.tasks.testing import HookRecorder


async def test_a_blocking_async_task_is_named_in_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def blocks_the_loop() -> None:
        time.sleep(0.6)  # noqa: ASYNC251 - the mistake this test is about

    async def well_behaved() -> None:
        await asyncio.sleep(0.01)

    queue = MemoryTaskQueue()
    hooks = HookRecorder()
    worker = TaskWorker(
        "w1",
        queue,
        {"blocks_the_loop": blocks_the_loop, "well_behaved": well_behaved},
        services=TaskWorkerServices(hooks=hooks),
        loop_lag_threshold=0.3,
    )
    jobs = [Job(name="well_behaved"), Job(name="blocks_the_loop")]
    await worker.start()
    await asyncio.sleep(0.15)  # the monitor has taken a first measurement
    for job in jobs:
        (await queue.enqueue(job)).unwrap()
    with caplog.at_level(logging.WARNING):
        await hooks.wait_until(lambda: len(hooks.ids("task.completed")) == 2)
        await asyncio.sleep(0.15)  # the monitor's next tick sees the lag
    await worker.stop()
    warnings = [r.getMessage() for r in caplog.records if "was blocked for" in r.getMessage()]
    assert len(warnings) == 1
    assert "'blocks_the_loop'" in warnings[0]
    assert "asyncio.to_thread" in warnings[0]
    assert "plain `def`" in warnings[0]
    assert worker.lag_monitor is not None
    assert worker.lag_monitor.max_lag >= 0.5


async def test_a_blocking_sync_task_runs_in_a_thread_and_raises_no_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def blocking_def() -> None:
        time.sleep(0.6)

    queue = MemoryTaskQueue()
    hooks = HookRecorder()
    worker = TaskWorker(
        "w1",
        queue,
        {"blocking_def": blocking_def},
        services=TaskWorkerServices(hooks=hooks),
        loop_lag_threshold=0.3,
    )
    job = Job(name="blocking_def")
    (await queue.enqueue(job)).unwrap()
    with caplog.at_level(logging.WARNING):
        await worker.start()
        await hooks.wait_until(lambda: job.id in hooks.ids("task.completed"))
        await worker.stop()
    assert not [r for r in caplog.records if "was blocked for" in r.getMessage()]


def test_the_monitor_can_be_turned_off_and_rejects_a_bad_threshold() -> None:
    worker = TaskWorker("w1", MemoryTaskQueue(), {}, loop_lag_threshold=0)
    assert worker.lag_monitor is None
    with pytest.raises(ValueError, match="loop_lag_threshold"):
        LoopLagMonitor(-1, lambda _: (), logging.getLogger("x"), "w1")
