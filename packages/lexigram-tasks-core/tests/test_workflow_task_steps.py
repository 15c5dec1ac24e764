"""An in-process `TaskStep` whose handler is a ``@task`` function runs it as the task says."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from lexigram.tasks.decorators import task
from lexigram.tasks.execution import Reject
from lexigram.tasks.workflows import TaskChain, TaskStep
from lexigram.tasks.workflows._steps import run_step


@pytest.fixture
def threads(monkeypatch: pytest.MonkeyPatch) -> list[Callable[..., Any]]:
    """The functions the steps handed to `asyncio.to_thread`."""
    sent: list[Callable[..., Any]] = []
    to_thread = asyncio.to_thread

    async def spy(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        sent.append(func)
        return await to_thread(func, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", spy)
    return sent


async def test_an_async_task_runs_on_the_loop_and_a_sync_one_in_a_thread(
    threads: list[Callable[..., Any]],
) -> None:
    @task
    async def double(x: int) -> int:
        return x * 2

    @task
    def increment(x: int) -> int:
        return x + 1

    result = await TaskChain([TaskStep("double", double), TaskStep("inc", increment)]).execute(3)
    assert result.unwrap().final_result == 7
    assert threads == [increment]


async def test_the_tasks_timeout_bounds_a_step_that_sets_none() -> None:
    @task(timeout=0.05)
    async def slow(x: int) -> int:
        await asyncio.sleep(5)
        return x

    outcome = await run_step(TaskStep("slow", slow), 1)
    assert not outcome.success
    assert outcome.error is not None
    assert "TaskTimeoutError" in outcome.error
    assert "timeout of 0.05 s" in outcome.error
    assert "@task(timeout=...)" in outcome.error


async def test_the_steps_own_timeout_wins_over_the_tasks() -> None:
    @task(timeout=0.01)
    async def slowish(x: int) -> int:
        await asyncio.sleep(0.05)
        return x

    outcome = await run_step(TaskStep("slowish", slowish, timeout=5.0), 1)
    assert outcome.success
    assert outcome.data == 1


def flaky_task(failures: int, **options: Any) -> tuple[Any, list[int]]:
    calls: list[int] = []

    @task(**options)
    async def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) <= failures:
            msg = f"attempt {len(calls)} failed"
            raise ConnectionError(msg)
        return x

    return flaky, calls


async def test_the_tasks_max_retries_retry_a_failed_step() -> None:
    flaky, calls = flaky_task(2, max_retries=2)
    outcome = await run_step(TaskStep("flaky", flaky), 9)
    assert outcome.success
    assert outcome.data == 9
    assert calls == [9, 9, 9]


async def test_retries_used_up_fail_the_step_with_the_last_error() -> None:
    flaky, calls = flaky_task(5, max_retries=1)
    outcome = await run_step(TaskStep("flaky", flaky), 9)
    assert not outcome.success
    assert outcome.error == "ConnectionError: attempt 2 failed"
    assert len(calls) == 2


async def test_a_task_without_max_retries_runs_once_in_a_step() -> None:
    flaky, calls = flaky_task(1)
    outcome = await run_step(TaskStep("flaky", flaky), 9)
    assert not outcome.success
    assert len(calls) == 1


async def test_the_steps_own_max_retries_win_over_the_tasks() -> None:
    flaky, calls = flaky_task(1, max_retries=3)
    outcome = await run_step(TaskStep("flaky", flaky, max_retries=0), 9)
    assert not outcome.success
    assert len(calls) == 1
    flaky, calls = flaky_task(2)
    outcome = await run_step(TaskStep("flaky", flaky, max_retries=2), 9)
    assert outcome.success
    assert len(calls) == 3


async def test_the_tasks_retry_filters_and_reject_are_honoured() -> None:
    flaky, calls = flaky_task(1, max_retries=3, dont_retry_on=(ConnectionError,))
    assert not (await run_step(TaskStep("flaky", flaky), 1)).success
    assert len(calls) == 1

    rejected: list[int] = []

    @task(max_retries=3)
    async def refuse(x: int) -> int:
        rejected.append(x)
        msg = "never valid"
        raise Reject(msg)

    assert not (await run_step(TaskStep("refuse", refuse), 1)).success
    assert rejected == [1]


async def test_on_error_sees_the_failure_after_the_last_attempt() -> None:
    flaky, calls = flaky_task(5, max_retries=2)
    seen: list[str] = []

    def recover(exc: Exception) -> int:
        seen.append(str(exc))
        return -1

    outcome = await run_step(TaskStep("flaky", flaky, on_error=recover), 9)
    assert (outcome.success, outcome.data) == (True, -1)
    assert seen == ["attempt 3 failed"]
    assert len(calls) == 3


def test_a_negative_max_retries_is_refused() -> None:
    with pytest.raises(ValueError, match="max_retries -1"):
        TaskStep("x", print, max_retries=-1)


async def test_the_tasks_backoff_spaces_the_attempts() -> None:
    flaky, calls = flaky_task(2, max_retries=2, retry_backoff=0.02, retry_backoff_max=0.03)
    loop = asyncio.get_running_loop()
    started = loop.time()
    outcome = await run_step(TaskStep("flaky", flaky), 9)
    assert outcome.success
    assert len(calls) == 3
    assert loop.time() - started >= 0.02 + 0.03  # the second delay capped at the max
