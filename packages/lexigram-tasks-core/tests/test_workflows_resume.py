"""A chain (or group) with a workflow id and a state store resumes after a crash."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from lexigram.contracts.tasks import Err
from lexigram.tasks.workflows import (
    InMemoryWorkflowStateStore,
    TaskChain,
    TaskGroup,
    TaskStep,
    WorkflowStatus,
)


class ProcessKilled(BaseException):
    """Stands in for the process dying: not an Exception, so no step catches it."""


class Pipeline:
    """Four steps that count their runs; step 3 can crash or fail once."""

    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()
        self.inputs: dict[str, list[Any]] = {}
        self.crash_once: BaseException | None = None

    def step(self, name: str) -> TaskStep:
        async def handler(data: Any) -> Any:
            self.runs[name] += 1
            self.inputs.setdefault(name, []).append(data)
            if name == "step3" and self.crash_once is not None:
                crash, self.crash_once = self.crash_once, None
                raise crash
            return [*data, name]

        return TaskStep(name, handler)

    def chain(self, store: InMemoryWorkflowStateStore) -> TaskChain:
        names = ["step1", "step2", "step3", "step4"]
        return TaskChain([self.step(n) for n in names], state_store=store, workflow_id="order-42")


async def test_chain_killed_after_step_two_resumes_at_step_three() -> None:
    store = InMemoryWorkflowStateStore()
    pipeline = Pipeline()
    pipeline.crash_once = ProcessKilled()

    with pytest.raises(ProcessKilled):
        await pipeline.chain(store).execute([])

    saved = await store.load_state("order-42")
    assert saved is not None
    assert saved.status is WorkflowStatus.RUNNING  # it never finished
    assert [s.step_name for s in saved.steps] == ["step1", "step2"]
    assert [s.workflow_id for s in await store.list_active()] == ["order-42"]

    # "Next process": a new chain object with the same id and store.
    result = await pipeline.chain(store).execute([])
    workflow = result.unwrap()
    assert workflow.status is WorkflowStatus.COMPLETED
    assert workflow.final_result == ["step1", "step2", "step3", "step4"]
    assert pipeline.runs == {"step1": 1, "step2": 1, "step3": 2, "step4": 1}
    # Step 3 resumed with step 2's output.
    assert pipeline.inputs["step3"] == [["step1", "step2"], ["step1", "step2"]]
    assert [s.step_name for s in workflow.steps] == ["step1", "step2", "step3", "step4"]
    assert (await store.load_state("order-42")).status is WorkflowStatus.COMPLETED  # type: ignore[union-attr]
    assert await store.list_active() == []


async def test_chain_failed_at_step_three_resumes_there_on_rerun() -> None:
    store = InMemoryWorkflowStateStore()
    pipeline = Pipeline()
    pipeline.crash_once = ValueError("db unavailable")

    first = await pipeline.chain(store).execute([])
    assert isinstance(first, Err)
    assert first.error.result.status is WorkflowStatus.FAILED
    saved = await store.load_state("order-42")
    assert saved is not None
    assert saved.status is WorkflowStatus.FAILED
    assert [(s.step_name, s.success) for s in saved.steps] == [
        ("step1", True),
        ("step2", True),
        ("step3", False),
    ]

    second = (await pipeline.chain(store).execute([])).unwrap()
    assert second.final_result == ["step1", "step2", "step3", "step4"]
    assert pipeline.runs == {"step1": 1, "step2": 1, "step3": 2, "step4": 1}


async def test_completed_chain_rerun_returns_saved_outcome_without_running() -> None:
    store = InMemoryWorkflowStateStore()
    pipeline = Pipeline()
    first = (await pipeline.chain(store).execute([])).unwrap()
    again = (await pipeline.chain(store).execute(["ignored"])).unwrap()
    assert again.final_result == first.final_result
    assert pipeline.runs == {"step1": 1, "step2": 1, "step3": 1, "step4": 1}
    await store.delete_state("order-42")
    third = (await pipeline.chain(store).execute(["fresh"])).unwrap()
    assert third.final_result == ["fresh", "step1", "step2", "step3", "step4"]


async def test_chain_saves_state_after_every_successful_step() -> None:
    saves: list[tuple[str, list[str]]] = []

    class RecordingStore(InMemoryWorkflowStateStore):
        async def save_state(self, workflow_id: str, result: Any) -> None:
            saves.append((result.status.value, [s.step_name for s in result.steps]))
            await super().save_state(workflow_id, result)

    await Pipeline().chain(RecordingStore()).execute([])
    assert saves == [
        ("running", ["step1"]),
        ("running", ["step1", "step2"]),
        ("running", ["step1", "step2", "step3"]),
        ("running", ["step1", "step2", "step3", "step4"]),
        ("completed", ["step1", "step2", "step3", "step4"]),
    ]


async def test_chain_or_keeps_resume_settings() -> None:
    store = InMemoryWorkflowStateStore()
    pipeline = Pipeline()
    pipeline.crash_once = ProcessKilled()
    base = TaskChain(
        [pipeline.step("step1"), pipeline.step("step2")], state_store=store, workflow_id="w"
    )
    extended = base | pipeline.step("step3") | pipeline.step("step4")
    with pytest.raises(ProcessKilled):
        await extended.execute([])
    result = await (base | pipeline.step("step3") | pipeline.step("step4")).execute([])
    assert result.unwrap().final_result == ["step1", "step2", "step3", "step4"]
    assert pipeline.runs["step1"] == 1


def test_chain_with_store_rejects_duplicate_step_names() -> None:
    async def same(x: Any) -> Any:
        return x

    steps = [TaskStep("dup", same), TaskStep("dup", same)]
    with pytest.raises(ValueError, match="several steps named 'dup'"):
        TaskChain(steps, state_store=InMemoryWorkflowStateStore())
    TaskChain(steps)  # without a store, repeated names are fine


def test_group_with_store_rejects_duplicate_step_names_as_a_chain_does() -> None:
    """A resumed group finds its done steps by name: two of one name would share one."""

    async def same(x: Any) -> Any:
        return x

    steps = [TaskStep("dup", same), TaskStep("dup", same)]
    with pytest.raises(ValueError, match="TaskGroup 'g' has several steps named 'dup'"):
        TaskGroup(steps, state_store=InMemoryWorkflowStateStore(), workflow_id="g")
    TaskGroup(steps)  # without a store, repeated names are fine


async def test_group_rerun_runs_only_the_steps_that_failed() -> None:
    store = InMemoryWorkflowStateStore()
    runs: Counter[str] = Counter()
    fail_b = True

    async def step_a(data: Any) -> str:
        runs["a"] += 1
        return "A"

    async def step_b(data: Any) -> str:
        runs["b"] += 1
        if fail_b:
            msg = "flaky"
            raise ValueError(msg)
        return "B"

    def group() -> TaskGroup:
        return TaskGroup(
            [TaskStep("a", step_a), TaskStep("b", step_b)], state_store=store, workflow_id="g"
        )

    first = await group().execute()
    assert isinstance(first, Err)
    assert first.error.result.status is WorkflowStatus.PARTIALLY_COMPLETED
    fail_b = False
    second = (await group().execute()).unwrap()
    assert second.final_result == ["A", "B"]
    assert runs == {"a": 1, "b": 2}
    assert (await store.load_state("g")).status is WorkflowStatus.COMPLETED  # type: ignore[union-attr]
