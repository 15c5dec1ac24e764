"""Queue-driven workflows on the memory backend: each step a job, advanced by workers."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest
from click.testing import CliRunner

from lexigram.contracts.tasks import (
    CancelOutcome,
    Job,
    Result,
    TaskQueueError,
    WorkflowError,
    WorkflowStatus,
)
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.cli import cli
from lexigram.tasks.config import TaskWorkerConfig
from lexigram.tasks.constants import WORKFLOW_STEP_KEY
from lexigram.tasks.decorators import task
from lexigram.tasks.execution import TaskWorker
from lexigram.tasks.handles import JobHandle
from lexigram.tasks.testing import (
    RunStoreFactory,
    WorkflowRunJobsConformance,
    WorkflowRunListingConformance,
    WorkflowRunStoreConformance,
)
from lexigram.tasks.workflows import (
    InMemoryWorkflowStateStore,
    JobChain,
    JobChord,
    JobGroup,
    TaskChain,
    TaskStep,
)
from lexigram.tasks.workflows._advance import stage_jobs

calls: list[tuple[str, Any]] = []


@task
def add(x: int, y: int) -> int:
    calls.append(("add", (x, y)))
    return x + y


@task
async def collect(results: list[int]) -> list[int]:
    calls.append(("collect", list(results)))
    return sorted(results)


@task(max_retries=0)
def boom(x: int) -> int:
    msg = f"boom {x}"
    raise ValueError(msg)


@task
def never(x: int) -> int:
    calls.append(("never", x))
    return x


@task
def report(failure: dict[str, Any], note: str) -> None:
    calls.append(("report", (failure["workflow_id"], failure["step"], failure["error"], note)))


HANDLERS = {fn.name: fn for fn in (add, collect, boom, never, report)}


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    calls.clear()


async def run_workers(queue: MemoryTaskQueue, count: int = 1) -> list[TaskWorker]:
    workers = [TaskWorker(f"w{index}", queue, HANDLERS) for index in range(count)]
    for worker in workers:
        await worker.start()
    return workers


async def stop(workers: Sequence[TaskWorker]) -> None:
    for worker in workers:
        await worker.stop()


async def test_job_chain_passes_each_result_to_the_next_step() -> None:
    queue, store = MemoryTaskQueue(), InMemoryWorkflowStateStore()
    workers = await run_workers(queue, 2)
    chain = JobChain(add.s(1, 2), add.s(10), add.si(100, 1000), add.s(5))
    handle = await chain.apply_async(queue, store=store)
    assert await handle.result(timeout=5) == 1105
    await stop(workers)
    assert calls == [("add", (1, 2)), ("add", (3, 10)), ("add", (100, 1000)), ("add", (1100, 5))]
    info = await handle.info()
    assert info.status is WorkflowStatus.COMPLETED
    assert [(s.stage, s.status, s.result) for s in info.steps] == [
        (0, "succeeded", 3),
        (1, "succeeded", 13),
        (2, "succeeded", 1100),
        (3, "succeeded", 1105),
    ]
    assert all(s.started_at and s.finished_at for s in info.steps)
    assert await queue.count("tasks") == 0


class RecordingQueue(MemoryTaskQueue):
    """Keeps every job enqueued in bulk (the way workflows enqueue)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Job] = []

    async def enqueue_many(self, jobs: Sequence[Job]) -> list[Result[str, TaskQueueError]]:
        self.sent.extend(jobs)
        return await super().enqueue_many(jobs)


async def test_a_chain_of_groups_feeds_each_group_the_list_before_it() -> None:
    queue, store = RecordingQueue(), InMemoryWorkflowStateStore()
    sent = queue.sent
    workers = await run_workers(queue, 2)
    chain = JobChain(
        JobGroup(add.s(1, 1), add.s(2, 2)), JobGroup(collect.s(), collect.s()), collect.s()
    )
    handle = await chain.apply_async(queue, store=store)
    assert await handle.result(timeout=5) == [[2, 4], [2, 4]]
    await stop(workers)
    assert len(sent) == 5
    # A step's job carries its place only; the rest of the workflow stays in the store.
    assert set(sent[0].metadata[WORKFLOW_STEP_KEY]) == {
        "id",
        "stage",
        "member",
        "size",
        "group",
        "last",
    }


async def test_job_group_runs_its_steps_in_parallel() -> None:
    barrier = asyncio.Barrier(3)

    @task
    async def meet(x: int) -> int:
        await asyncio.wait_for(barrier.wait(), 2)  # passes only if all three run at once
        return x * 2

    queue, store = MemoryTaskQueue(), InMemoryWorkflowStateStore()
    worker = TaskWorker("w", queue, {"meet": meet})
    await worker.start()
    handle = await JobGroup(meet.s(1), meet.s(2), meet.s(3)).apply_async(queue, store=store)
    assert await handle.result(timeout=5) == [2, 4, 6]
    await worker.stop()


class DuplicatingQueue(MemoryTaskQueue):
    """Sends every first-stage step twice, as a broker may after a lost ack."""

    async def enqueue_many(self, jobs: Sequence[Job]) -> list[Result[str, TaskQueueError]]:
        extra = [
            dataclasses.replace(job, id="", idempotency_key=None, metadata=dict(job.metadata))
            for job in jobs
            if job.metadata.get(WORKFLOW_STEP_KEY, {}).get("stage") == 0
        ]
        return (await super().enqueue_many([*jobs, *extra]))[: len(jobs)]


async def test_job_chord_callback_runs_once_with_every_result_despite_duplicates() -> None:
    queue, store = DuplicatingQueue(), InMemoryWorkflowStateStore()
    workers = await run_workers(queue, 3)
    members = JobGroup(*(add.s(index, 0) for index in range(20)))
    handle = await JobChord(members, collect.s()).apply_async(queue, store=store)
    assert await handle.result(timeout=5) == list(range(20))
    # Let the duplicates of the members finish too: none may fire the callback again.
    for _ in range(200):
        if await queue.count("tasks") == 0:
            break
        await asyncio.sleep(0.01)
    await stop(workers)
    assert len([c for c in calls if c[0] == "add"]) == 40  # every member ran twice
    assert [c for c in calls if c[0] == "collect"] == [("collect", list(range(20)))]


async def test_a_failed_step_fails_the_chain_and_runs_on_error_once() -> None:
    queue, store = MemoryTaskQueue(), InMemoryWorkflowStateStore()
    workers = await run_workers(queue)
    chain = JobChain(add.s(1, 1), boom.s(), never.s(), on_error=report.s("paged"))
    handle = await chain.apply_async(queue, store=store, workflow_id="wf-fail")
    with pytest.raises(WorkflowError, match=r"failed at step 'boom': ValueError: boom 2") as info:
        await handle.result(timeout=5)
    assert info.value.step_name == "boom"
    for _ in range(200):
        if any(c[0] == "report" for c in calls):
            break
        await asyncio.sleep(0.01)
    await stop(workers)
    assert ("never", 2) not in calls
    assert [c for c in calls if c[0] == "report"] == [
        ("report", ("wf-fail", "boom", "ValueError: boom 2", "paged"))
    ]
    steps = (await handle.info()).steps
    assert [(s.name, s.status) for s in steps] == [
        ("add", "succeeded"),
        ("boom", "failed"),
        ("never", "waiting"),
    ]


async def test_a_failed_group_member_stops_the_chord() -> None:
    queue, store = MemoryTaskQueue(), InMemoryWorkflowStateStore()
    workers = await run_workers(queue, 2)
    handle = await JobChord([add.s(1, 1), boom.s(5)], collect.s()).apply_async(queue, store=store)
    with pytest.raises(WorkflowError, match="boom 5"):
        await handle.result(timeout=5)
    await asyncio.sleep(0.05)
    await stop(workers)
    assert not [c for c in calls if c[0] == "collect"]
    assert (await handle.status()) is WorkflowStatus.FAILED


class FlakyStore(InMemoryWorkflowStateStore):
    """Fails the first join, as a worker that dies between running a step and its ack."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    async def record_step(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]] | None:
        if self.failures:
            self.failures -= 1
            msg = "store unreachable"
            raise ConnectionError(msg)
        return await super().record_step(*args, **kwargs)


async def test_a_failed_advance_leaves_the_step_unacked_and_it_runs_again() -> None:
    queue, store = MemoryTaskQueue(visibility_timeout=0.2), FlakyStore()
    workers = await run_workers(queue)
    handle = await JobChain(add.s(1, 2), add.s(3)).apply_async(queue, store=store)
    assert await handle.result(timeout=5) == 6
    await stop(workers)
    assert calls == [("add", (1, 2)), ("add", (1, 2)), ("add", (3, 3))]


async def test_record_step_answers_only_the_step_that_completes_the_stage() -> None:
    store = InMemoryWorkflowStateStore()
    assert await store.create_run("r", {"kind": "JobChord", "stages": []})
    assert not await store.create_run("r", {"kind": "JobChord", "stages": []})
    record = {"status": "succeeded", "result": 1}
    assert await store.record_step("r", 0, 1, size=2, record=record) is None
    assert await store.record_step("r", 0, 1, size=2, record=record) is None  # a duplicate
    done = await store.record_step("r", 0, 0, size=2, record={"status": "succeeded", "result": 0})
    assert done is not None
    assert [r["result"] for r in done] == [0, 1]
    again = await store.record_step("r", 0, 0, size=2, record=record)  # its redelivery
    assert again == done
    assert await store.record_step("r", 0, 1, size=2, record=record) is None


async def test_reapplying_an_id_enqueues_nothing_new_and_refuses_another_workflow() -> None:
    queue, store = MemoryTaskQueue(), InMemoryWorkflowStateStore()
    chain = JobChain(add.s(1, 2), add.s(3))
    await chain.apply_async(queue, store=store, workflow_id="order-7")
    await chain.apply_async(queue, store=store, workflow_id="order-7")  # a producer's retry
    assert await queue.count("tasks") == 1
    with pytest.raises(WorkflowError, match="already used by another workflow"):
        await JobChain(add.s(5, 5)).apply_async(queue, store=store, workflow_id="order-7")


async def test_apply_async_without_a_store_names_the_fix() -> None:
    with pytest.raises(TaskQueueError, match="No workflow run store is registered"):
        await JobChain(add.s(1, 2)).apply_async(MemoryTaskQueue())


def test_builders_reject_what_they_cannot_run() -> None:
    with pytest.raises(ValueError, match="at least one step"):
        JobChain()
    with pytest.raises(TypeError, match="takes signatures"):
        JobGroup(JobGroup(add.s(1, 2)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="set on_error on the outer JobChain"):
        JobChain(add.s(1, 2), JobGroup(add.s(1), on_error=report.s("x")))


async def test_a_result_the_next_step_cannot_carry_fails_the_run() -> None:
    @task
    def opaque() -> object:
        return object()

    queue, store = MemoryTaskQueue(), InMemoryWorkflowStateStore()
    worker = TaskWorker("w", queue, {"opaque": opaque, "never": never})
    await worker.start()
    handle = await JobChain(opaque.s(), never.s()).apply_async(queue, store=store)
    with pytest.raises(WorkflowError, match=r"step 'opaque' .* is not JSON"):
        await handle.result(timeout=5)
    await worker.stop()
    assert not calls
    assert await queue.count("tasks") == 0


async def test_in_process_chain_is_unchanged() -> None:
    async def double(x: int) -> int:
        return x * 2

    result = await TaskChain([TaskStep("a", double), TaskStep("b", double)]).execute(3)
    assert result.unwrap().final_result == 12


@pytest.fixture
def make_run_store() -> RunStoreFactory:
    store = InMemoryWorkflowStateStore()  # one process: every "worker" shares it

    async def factory() -> InMemoryWorkflowStateStore:
        return store

    return factory


class TestInMemoryRunStoreConformance(
    WorkflowRunStoreConformance, WorkflowRunJobsConformance, WorkflowRunListingConformance
):
    pass


def test_workflow_show_on_a_backend_without_a_shared_run_store_says_so() -> None:
    result = CliRunner().invoke(cli, ["workflow", "show", "abc", "--backend", "memory"])
    assert result.exit_code == 2, result.output
    assert "no shared workflow run store" in result.stderr
    assert "redis://" in result.stderr


async def test_a_step_on_a_worker_without_a_run_store_is_not_lost() -> None:
    """It is not acked (another worker may have the store) until it is dead-lettered."""
    step = JobChain(add.s(1, 2), add.s(3)).stages()[0]
    (job,) = stage_jobs("orphan", step, 0, last=False, previous=())
    queue = MemoryTaskQueue(visibility_timeout=0.05)
    await queue.enqueue(job)
    config = TaskWorkerConfig(max_deliveries=2)
    worker = TaskWorker("w", queue, HANDLERS, config=config)
    await worker.start()
    for _ in range(300):
        if await queue.count("tasks") == 0:
            break
        await asyncio.sleep(0.01)
    await worker.stop()
    assert await queue.count("tasks") == 0  # dead-lettered as a crash loop, then acked
    assert calls.count(("add", (1, 2))) == 2
    assert worker.stats.jobs_dead_lettered == 1


gate = asyncio.Event()


@task
async def held(x: int) -> int:
    calls.append(("held", x))
    await gate.wait()
    return x


async def step_job_id(queue: RecordingQueue, stage: int) -> str:
    """The id of the job of `stage` (one step), once the run has enqueued it."""
    for _ in range(500):
        for job in queue.sent:
            if job.metadata[WORKFLOW_STEP_KEY]["stage"] == stage:
                return job.id
        await asyncio.sleep(0.01)
    msg = f"stage {stage} was never enqueued"
    raise AssertionError(msg)


async def test_cancelling_a_running_step_ends_the_chain() -> None:
    global gate  # noqa: PLW0603 - an event binds to the loop of its first wait
    gate = asyncio.Event()
    queue, store = RecordingQueue(), InMemoryWorkflowStateStore()
    worker = TaskWorker("w", queue, {**HANDLERS, "held": held})
    await worker.start()
    chain = JobChain(add.s(1, 1), held.s(), never.s(), on_error=report.s("cancelled"))
    handle = await chain.apply_async(queue, store=store, workflow_id="wf-cancel-running")
    job_id = await step_job_id(queue, 1)
    for _ in range(500):
        if ("held", 2) in calls:
            break
        await asyncio.sleep(0.01)
    outcome = await JobHandle(queue, job_id).cancel()
    assert outcome is CancelOutcome.STOPPING
    with pytest.raises(WorkflowError, match="held"):
        await handle.result(timeout=5)
    for _ in range(200):
        if any(c[0] == "report" for c in calls):
            break
        await asyncio.sleep(0.01)
    await worker.stop()
    assert ("never", 2) not in calls
    assert [c[1][1] for c in calls if c[0] == "report"] == ["held"]
    assert [(s.name, s.status) for s in (await handle.info()).steps] == [
        ("add", "succeeded"),
        ("held", "cancelled"),
        ("never", "waiting"),
    ]


async def test_cancelling_a_waiting_step_ends_the_chain() -> None:
    queue, store = RecordingQueue(), InMemoryWorkflowStateStore()
    chain = JobChain(add.s(1, 1), never.s())
    handle = await chain.apply_async(queue, store=store, workflow_id="wf-cancel-waiting")
    job_id = await step_job_id(queue, 0)
    assert await JobHandle(queue, job_id).cancel() is CancelOutcome.REMOVED
    assert await handle.status() is WorkflowStatus.FAILED
    steps = (await handle.info()).steps
    assert (steps[0].status, steps[0].error) == ("cancelled", "cancelled before it ran")
    worker = TaskWorker("w", queue, HANDLERS)
    await worker.start()
    await asyncio.sleep(0.1)
    await worker.stop()
    assert calls == []
