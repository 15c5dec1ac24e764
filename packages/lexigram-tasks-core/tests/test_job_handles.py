"""`JobHandle`: what `.delay()`/`.apply_async()` return, on the memory backend."""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from lexigram.app import Application
from lexigram.contracts.tasks import (
    Job,
    JobStatus,
    TaskConfigurationError,
    TaskExecutionError,
    TaskNotFoundError,
)
from lexigram.tasks import JobHandle, ProgressTracker, TaskProvider
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.decorators import set_default_queue, set_task_queues, task
from lexigram.tasks.execution import HandlerRegistry, TaskWorkerServices, WorkerPool
from lexigram.tasks.handles import job_stores_for, register_job_stores
from lexigram.tasks.progress import InMemoryProgressStore
from lexigram.tasks.results import InMemoryResultStore


class Gate:
    """The event `gated` waits for (a new one per test: an event binds to one loop)."""

    event = asyncio.Event()


@task(name="handles.add")
async def add(a: int, b: int) -> int:
    return a + b


@task(name="handles.shout")
def shout(word: str) -> str:  # a `def` task: runs in a thread
    return word.upper()


@task(name="handles.boom", max_retries=0)
async def boom(reason: str) -> None:
    raise ValueError(reason)


@task(name="handles.gated")
async def gated() -> str:
    await Gate.event.wait()
    return "released"


@task(name="handles.steps")
async def steps(count: int, progress: ProgressTracker) -> int:
    for i in range(1, count + 1):
        await progress.update(i, count, f"step {i}")
    return count


@pytest.fixture(autouse=True)
def no_default_queue() -> Iterator[None]:
    set_default_queue(None)
    set_task_queues({})
    Gate.event = asyncio.Event()
    yield
    set_default_queue(None)
    set_task_queues({})


class Harness:
    def __init__(self) -> None:
        self.queue = MemoryTaskQueue()
        self.results = InMemoryResultStore()
        self.progress = InMemoryProgressStore()
        handlers = HandlerRegistry()
        for fn in (add, shout, boom, gated, steps):
            handlers.register(fn.name, fn)
        self.pool = WorkerPool(
            self.queue,
            handlers,
            size=1,
            services=TaskWorkerServices(result_store=self.results, progress_store=self.progress),
        )


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = Harness()
    yield harness
    Gate.event.set()
    await harness.pool.stop(drain=True, timeout=2)


async def test_delay_returns_a_handle_that_reads_like_the_job_and_awaits_its_result(
    h: Harness,
) -> None:
    set_default_queue(h.queue, result_store=h.results, progress_store=h.progress)
    handle = await add.delay(2, 3)
    assert isinstance(handle, JobHandle)
    assert isinstance(handle.job, Job)
    # The job's attributes, as the Job that .delay() used to return had them.
    assert (handle.name, handle.args, handle.kwargs) == ("handles.add", (2, 3), {})
    assert handle.id == handle.job.id
    assert handle.queue is h.queue
    assert handle.result_store is h.results
    assert await h.queue.get_job(handle.id) is not None
    assert await handle.status() is JobStatus.PENDING
    await h.pool.start()
    assert await handle.result(timeout=5) == 5
    assert await handle.status() is JobStatus.COMPLETED


async def test_result_of_a_def_task_through_apply_async_with_an_explicit_store(
    h: Harness,
) -> None:
    await h.pool.start()
    handle = await shout.apply_async(h.queue, "hi", result_store=h.results)
    assert await handle.result(timeout=5) == "HI"


async def test_result_wakes_when_the_result_is_stored_not_on_a_poll(h: Harness) -> None:
    handle = await gated.apply_async(h.queue, result_store=h.results)
    await h.pool.start()
    waiter = asyncio.create_task(handle.result(timeout=5))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    started = time.monotonic()
    Gate.event.set()
    assert await waiter == "released"
    # The store's poll interval is 0.5 s: an answer well before it was woken, not polled.
    assert time.monotonic() - started < 0.4


async def test_a_failed_job_raises_task_execution_error_with_its_error(h: Harness) -> None:
    await h.pool.start()
    handle = await boom.apply_async(h.queue, "disk full", result_store=h.results)
    with pytest.raises(TaskExecutionError) as info:
        await handle.result(timeout=5)
    assert "disk full" in info.value.message
    assert "handles.boom" in info.value.message
    assert info.value.details["job_id"] == handle.id
    assert await handle.status() is JobStatus.FAILED
    outcome = await handle.wait(timeout=1)
    assert not outcome.success
    assert outcome.error is not None
    assert "disk full" in outcome.error


async def test_no_result_in_time_raises_timeout_error_naming_the_job(h: Harness) -> None:
    handle = await add.apply_async(h.queue, 1, 1, result_store=h.results)  # no worker runs
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=f"Job {handle.id} .*no result after 0.1 s"):
        await handle.result(timeout=0.1)
    assert time.monotonic() - started < 1.0


async def test_status_follows_the_job_from_waiting_to_running_to_completed(h: Harness) -> None:
    handle = await gated.apply_async(h.queue, result_store=h.results)
    assert await handle.status() is JobStatus.PENDING
    await h.pool.start()
    deadline = time.monotonic() + 5
    while await handle.status() is not JobStatus.RUNNING:
        assert time.monotonic() < deadline, "the job never showed as running"
        await asyncio.sleep(0.01)
    Gate.event.set()
    await handle.result(timeout=5)
    assert await handle.status() is JobStatus.COMPLETED


async def test_progress_reports_what_the_handler_saved(h: Harness) -> None:
    register_job_stores(h.queue, result_store=h.results, progress_store=h.progress)
    # The documented call: the worker passes `progress`, which the task's signature, and so
    # apply_async's, still lists as the caller's.
    handle = await steps.apply_async(h.queue, 4)  # type: ignore[call-overload]
    assert await handle.progress() is None  # nothing reported yet
    await h.pool.start()
    assert await handle.result(timeout=5) == 4
    info = await handle.progress()
    assert info is not None
    assert (info.current, info.total, info.percentage) == (4, 4, 100.0)


async def test_a_handle_rebuilt_from_the_id_reads_the_same_job(h: Harness) -> None:
    handle = await add.apply_async(h.queue, 20, 22, result_store=h.results)
    again = JobHandle[int](h.queue, handle.id, result_store=h.results)
    assert again.id == handle.id
    assert again.name == ""  # only the id, until fetched
    assert (await again.fetch()).name == "handles.add"
    assert again.args == (20, 22)
    await h.pool.start()
    assert await again.result(timeout=5) == 42
    assert "JobHandle" in repr(again)


async def test_without_a_result_store_result_says_how_to_get_one() -> None:
    queue = MemoryTaskQueue()
    handle = await add.apply_async(queue, 1, 2)
    assert handle.result_store is None
    assert await handle.progress() is None
    with pytest.raises(TaskConfigurationError, match="no result store is known"):
        await handle.result(timeout=1)
    assert await handle.status() is JobStatus.PENDING  # the queue alone still answers


async def test_unknown_ids_and_empty_ids_are_named() -> None:
    queue = MemoryTaskQueue()
    handle = JobHandle[int](queue, "no-such-job", result_store=InMemoryResultStore())
    with pytest.raises(TaskNotFoundError, match="no-such-job"):
        await handle.status()
    with pytest.raises(TaskNotFoundError, match="no-such-job"):
        await handle.fetch()
    with pytest.raises(TaskConfigurationError, match="needs a job id"):
        JobHandle(queue, "  ")


async def test_the_provider_registers_its_stores_so_delay_handles_await_results() -> None:
    queue = MemoryTaskQueue()
    provider = TaskProvider(queue, enable_scheduler=False)
    provider.register_handler(add.name, add)
    async with Application.boot(providers=[provider]):
        assert job_stores_for(queue).result_store is not None
        handle = await add.delay(40, 2)
        assert await handle.result(timeout=5) == 42


@pytest.mark.slow
def test_handle_result_type_and_apply_async_arguments_are_type_checked(tmp_path: Path) -> None:
    from mypy import api as mypy_api

    sample = tmp_path / "sample.py"
    sample.write_text(
        textwrap.dedent(
            """
            from lexigram.tasks import JobHandle, MemoryTaskQueue, task

            @task(name="add")
            async def add(a: int, b: int) -> int:
                return a + b

            @task(name="shout")
            def shout(word: str) -> str:
                return word

            async def main(queue: MemoryTaskQueue) -> None:
                reveal_type(await (await add.delay(1, 2)).result())
                reveal_type(await (await shout.apply_async(queue, "x")).result(timeout=1))
                reveal_type(await JobHandle[int](queue, "id").result())
                await add.apply_async(queue, 1, 2, priority=3)
                await add.apply_async(queue, "one", 2)
            """
        )
    )
    out, _, status = mypy_api.run([str(sample), "--strict", "--no-error-summary"])
    assert status == 1
    assert out.count('Revealed type is "int"') == 2
    assert 'Revealed type is "str"' in out
    assert 'No overload variant of "apply_async" of "TaskFunction" matches' in out
    assert out.count("error:") == 1


def test_job_commands_on_a_backend_without_shared_results_say_so() -> None:
    from click.testing import CliRunner

    from lexigram.tasks.cli import cli

    for command in ("status", "result", "wait"):
        result = CliRunner().invoke(cli, ["job", command, "abc", "--backend", "memory"])
        assert result.exit_code == 2, result.output
        assert "no shared result store" in result.stderr
        assert "--backend redis://" in result.stderr
