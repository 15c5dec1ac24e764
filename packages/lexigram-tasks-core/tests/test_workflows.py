from __future__ import annotations

import asyncio
import re
import threading
from typing import Any

import pytest

from lexigram.contracts.tasks import Err, Ok
from lexigram.tasks.workflows import (
    BranchStep,
    InMemoryWorkflowStateStore,
    StepResult,
    TaskChain,
    TaskChord,
    TaskGroup,
    TaskStep,
    Workflow,
    WorkflowError,
    WorkflowResult,
    WorkflowStatus,
    chain,
)


async def add_one(x: int) -> int:
    return x + 1


async def double(x: int) -> int:
    return x * 2


def sync_square(x: int) -> int:
    return x * x


def test_task_step_validates_its_fields() -> None:
    with pytest.raises(ValueError, match="non-empty name"):
        TaskStep("", add_one)
    with pytest.raises(TypeError, match="TaskStep 'x' has a handler that is not callable"):
        TaskStep("x", 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="TaskStep 'x' has timeout 0"):
        TaskStep("x", add_one, timeout=0)


async def test_chain_threads_each_output_into_the_next_step() -> None:
    result = await TaskChain(
        [TaskStep("add", add_one), TaskStep("double", double), TaskStep("square", sync_square)]
    ).execute(2)
    assert isinstance(result, Ok)
    workflow = result.value
    assert workflow.status is WorkflowStatus.COMPLETED
    assert workflow.final_result == 36
    assert [(s.step_name, s.success, s.data, s.error) for s in workflow.steps] == [
        ("add", True, 3, None),
        ("double", True, 6, None),
        ("square", True, 36, None),
    ]
    assert workflow.error is None
    assert workflow.total_duration_ms >= sum(s.duration_ms for s in workflow.steps) > 0


async def test_chain_without_input_passes_none_to_the_first_step() -> None:
    seen: list[Any] = []

    async def first(data: Any) -> str:
        seen.append(data)
        return "x"

    result = await TaskChain([TaskStep("first", first)]).execute()
    assert seen == [None]
    assert result.unwrap().final_result == "x"


async def test_empty_chain_returns_its_input() -> None:
    result = await TaskChain([]).execute("same")
    assert result.unwrap().final_result == "same"
    assert result.unwrap().status is WorkflowStatus.COMPLETED


async def test_chain_default_workflow_id_is_eight_hex_characters() -> None:
    one, two = TaskChain([]), TaskChain([])
    assert re.fullmatch(r"[0-9a-f]{8}", one.workflow_id)
    assert one.workflow_id != two.workflow_id
    assert (await one.execute()).unwrap().workflow_id == one.workflow_id
    assert TaskChain([], workflow_id="mine").workflow_id == "mine"


async def test_sync_handler_runs_in_a_worker_thread() -> None:
    threads: list[int] = []

    def record(data: int) -> int:
        threads.append(threading.get_ident())
        return data

    await TaskChain([TaskStep("record", record)]).execute(1)
    assert threads[0] != threading.get_ident()


async def test_sync_callable_returning_a_coroutine_is_awaited() -> None:
    def wrapped(x: int) -> Any:
        return add_one(x)  # a plain function handing back a coroutine

    result = await TaskChain([TaskStep("wrapped", wrapped)]).execute(1)
    assert result.unwrap().final_result == 2


async def test_chain_or_operator_keeps_the_chain_settings() -> None:
    store = InMemoryWorkflowStateStore()
    base = TaskChain(
        [TaskStep("add", add_one)], stop_on_error=False, state_store=store, workflow_id="w1"
    )
    longer = base | TaskStep("double", double)
    assert [s.name for s in longer.steps] == ["add", "double"]
    assert longer.stop_on_error is False
    assert longer.state_store is store
    assert longer.workflow_id == "w1"
    assert [s.name for s in base.steps] == ["add"]  # the original is unchanged
    joined = longer | TaskChain([TaskStep("square", sync_square)])
    assert [s.name for s in joined.steps] == ["add", "double", "square"]
    assert (await joined.execute(1)).unwrap().final_result == 16


async def test_task_step_or_builds_a_chain() -> None:
    pipeline = TaskStep("add", add_one) | TaskStep("double", double) | TaskStep("sq", sync_square)
    assert isinstance(pipeline, TaskChain)
    assert (await pipeline.execute(0)).unwrap().final_result == 4


async def test_chain_function_builds_a_task_chain() -> None:
    store = InMemoryWorkflowStateStore()
    built = chain(
        TaskStep("add", add_one),
        TaskStep("double", double),
        stop_on_error=False,
        state_store=store,
        workflow_id="c1",
    )
    assert isinstance(built, TaskChain)
    assert (built.stop_on_error, built.state_store, built.workflow_id) == (False, store, "c1")
    assert (await chain(TaskStep("add", add_one)).execute(1)).unwrap().final_result == 2
    assert chain(TaskStep("a", add_one)).stop_on_error is True


async def test_group_runs_steps_concurrently() -> None:
    # Each step waits for the other: this finishes only if both run at the same time.
    a_started, b_started = asyncio.Event(), asyncio.Event()

    async def step_a(data: str) -> str:
        a_started.set()
        await b_started.wait()
        return f"a:{data}"

    async def step_b(data: str) -> str:
        b_started.set()
        await a_started.wait()
        return f"b:{data}"

    group = TaskGroup([TaskStep("a", step_a), TaskStep("b", step_b)])
    result = await asyncio.wait_for(group.execute("in"), timeout=5.0)
    assert result.unwrap().final_result == ["a:in", "b:in"]
    assert [s.step_name for s in result.unwrap().steps] == ["a", "b"]


async def test_group_max_concurrency_limits_running_steps() -> None:
    running = 0
    peak = 0

    async def step(data: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)  # let any other admitted step start
        running -= 1
        return data

    steps = [TaskStep(f"s{i}", step) for i in range(6)]
    result = await TaskGroup(steps, max_concurrency=2).execute(7)
    assert result.unwrap().final_result == [7] * 6
    assert peak == 2
    with pytest.raises(ValueError, match="max_concurrency must be None or >= 1"):
        TaskGroup(steps, max_concurrency=0)


async def test_empty_group_completes_with_an_empty_list() -> None:
    assert (await TaskGroup([]).execute()).unwrap().final_result == []


async def test_chord_callback_gets_all_results_in_step_order() -> None:
    received: list[Any] = []

    async def merge(results: list[Any]) -> int:
        received.append(results)
        return sum(results)

    chord = TaskChord(
        steps=[TaskStep("a", add_one), TaskStep("b", double), TaskStep("c", sync_square)],
        callback=TaskStep("merge", merge),
    )
    result = await chord.execute(3)
    assert received == [[4, 6, 9]]
    workflow = result.unwrap()
    assert workflow.final_result == 19
    assert [s.step_name for s in workflow.steps] == ["a", "b", "c", "merge"]
    assert isinstance(chord.group, TaskGroup)
    assert chord.callback.name == "merge"


async def test_branch_runs_the_chosen_step_only() -> None:
    calls: list[str] = []

    async def review(data: dict[str, int]) -> str:
        calls.append("review")
        return "manual"

    async def approve(data: dict[str, int]) -> str:
        calls.append("approve")
        return "auto"

    branch = BranchStep(
        condition=lambda data: data["amount"] > 1000,
        if_true=TaskStep("review", review),
        if_false=TaskStep("approve", approve),
    )
    big = await branch.execute({"amount": 5000})
    small = await branch.execute({"amount": 10})
    assert big.unwrap().final_result == "manual"
    assert small.unwrap().final_result == "auto"
    assert [s.step_name for s in big.unwrap().steps] == ["review"]
    assert calls == ["review", "approve"]


async def test_branch_accepts_an_async_condition() -> None:
    async def is_even(x: int) -> bool:
        return x % 2 == 0

    branch = BranchStep(is_even, TaskStep("even", add_one), TaskStep("odd", double))
    assert (await branch.execute(2)).unwrap().final_result == 3
    assert (await branch.execute(3)).unwrap().final_result == 6


async def test_workflow_as_step_nests_workflows() -> None:
    inner = TaskGroup([TaskStep("a", add_one), TaskStep("b", double)])
    outer = chain(TaskStep("start", add_one), inner.as_step("fan-out"), TaskStep("sum", sum))
    result = await outer.execute(1)
    assert result.unwrap().final_result == 3 + 4
    assert [s.step_name for s in result.unwrap().steps] == ["start", "fan-out", "sum"]


async def test_nested_workflow_failure_fails_the_outer_step() -> None:
    async def boom(_: Any) -> None:
        msg = "inner boom"
        raise ValueError(msg)

    inner = TaskChain([TaskStep("bad", boom)], workflow_id="inner")
    result = await chain(inner.as_step()).execute()
    assert isinstance(result, Err)
    step = result.error.result.steps[0]
    assert step.step_name == "TaskChain:inner"
    assert step.error is not None
    assert step.error.startswith("WorkflowError: Chain 'inner' stopped at step 'bad'")


def test_workflow_is_the_common_base() -> None:
    assert all(issubclass(cls, Workflow) for cls in (TaskChain, TaskGroup, TaskChord, BranchStep))


async def test_state_store_saves_copies_and_lists_active_workflows() -> None:
    store = InMemoryWorkflowStateStore()
    running = WorkflowResult("w1", WorkflowStatus.RUNNING, [StepResult("a", success=True)])
    await store.save_state("w1", running)
    await store.save_state("w2", WorkflowResult("w2", WorkflowStatus.COMPLETED))
    running.steps.append(StepResult("b", success=True))  # the saved copy is unaffected
    loaded = await store.load_state("w1")
    assert loaded is not None
    assert [s.step_name for s in loaded.steps] == ["a"]
    loaded.steps[0].data = "changed"
    assert (await store.load_state("w1")).steps[0].data is None  # type: ignore[union-attr]
    active = await store.list_active()
    assert [(s.workflow_id, s.status, s.completed_steps) for s in active] == [
        ("w1", WorkflowStatus.RUNNING, ["a"])
    ]
    first_created = active[0].created_at
    await store.save_state("w1", WorkflowResult("w1", WorkflowStatus.RUNNING))
    again = (await store.list_active())[0]
    assert again.created_at == first_created
    assert again.last_updated >= first_created
    await store.delete_state("w1")
    await store.delete_state("missing")
    assert await store.load_state("w1") is None
    assert await store.list_active() == []


async def test_workflow_error_carries_the_partial_result() -> None:
    async def boom(_: Any) -> None:
        msg = "nope"
        raise RuntimeError(msg)

    result = await TaskChain([TaskStep("ok", add_one), TaskStep("bad", boom)]).execute(1)
    assert isinstance(result, Err)
    error = result.error
    assert isinstance(error, WorkflowError)
    assert error.step_name == "bad"
    assert isinstance(error.result, WorkflowResult)
    assert error.result.error == str(error)
    assert str(error).endswith(".")
    with pytest.raises(WorkflowError):
        result.unwrap()
