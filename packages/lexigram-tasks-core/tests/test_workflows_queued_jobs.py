"""A queue-driven run knows each step's job from its enqueue, not only from its end.

The ids of a stage's jobs are recorded in one store call per stage, once the queue took
them, so `WorkflowHandle.info()` (and ``workflow show``, the dashboard) names the job of a
step still waiting or running, and `with_job_states` tells which of them run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from lexigram.contracts.tasks import (
    CancelOutcome,
    Job,
    JobRecordingWorkflowRunStoreProtocol,
    Result,
    TaskQueueError,
    WorkflowError,
    WorkflowRunStoreProtocol,
)
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.constants import WORKFLOW_STEP_KEY
from lexigram.tasks.decorators import task
from lexigram.tasks.execution import TaskWorker
from lexigram.tasks.handles import JobHandle
from lexigram.tasks.workflows import (
    InMemoryWorkflowStateStore,
    JobChain,
    JobChord,
    JobGroup,
    with_job_states,
)
from lexigram.tasks.workflows._advance import ENQUEUE_BATCH
from lexigram.tasks.workflows._queued import run_info

gate = asyncio.Event()


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def total(values: list[int]) -> int:
    return sum(values)


@task
async def held(x: int) -> int:
    await gate.wait()
    return x


@task
def never(x: int) -> int:
    return x


HANDLERS = {fn.name: fn for fn in (add, total, held, never)}


class RecordingQueue(MemoryTaskQueue):
    """Keeps every job enqueued in bulk, with the id the queue took it under."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Job] = []

    async def enqueue_many(self, jobs: Sequence[Job]) -> list[Result[str, TaskQueueError]]:
        self.sent.extend(jobs)
        return await super().enqueue_many(jobs)

    def ids(self, stage: int) -> list[str]:
        """The ids of the jobs of `stage`, in member order (each step's first job)."""
        found: dict[int, str] = {}
        for job in self.sent:
            place = job.metadata.get(WORKFLOW_STEP_KEY) or {}
            if place.get("stage") == stage:
                found.setdefault(int(place["member"]), job.id)
        return [found[member] for member in sorted(found)]


class CountingStore(InMemoryWorkflowStateStore):
    """Counts the calls that record a stage's jobs."""

    def __init__(self) -> None:
        super().__init__()
        self.recorded: list[tuple[int, list[str | None]]] = []

    async def record_jobs(self, workflow_id: str, stage: int, record: Mapping[str, Any]) -> None:
        self.recorded.append((stage, list(record["job_ids"])))
        await super().record_jobs(workflow_id, stage, record)


async def _until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    msg = "the condition did not hold within 5 s"
    raise AssertionError(msg)


async def test_a_running_step_shows_its_job_which_cancels_it() -> None:
    global gate  # noqa: PLW0603 - an event binds to the loop of its first wait
    gate = asyncio.Event()
    queue, store = RecordingQueue(), InMemoryWorkflowStateStore()
    worker = TaskWorker("w", queue, HANDLERS)
    await worker.start()
    try:
        chain = JobChain(add.s(1, 1), held.s(), never.s())
        handle = await chain.apply_async(queue, store=store)
        await _until(lambda: len(queue.ids(1)) == 1)
        running_id = queue.ids(1)[0]
        await _until(lambda: running_id in {job.id for job in worker.running_jobs()})
        info = await handle.info()
        assert [(s.status, s.job_id) for s in info.steps] == [
            ("succeeded", queue.ids(0)[0]),
            ("queued", running_id),  # the store knows it is out, not that it runs
            ("waiting", None),
        ]
        assert info.queue_name == queue.queue_name
        live = await with_job_states(info, queue)
        assert [s.status for s in live.steps] == ["succeeded", "running", "waiting"]
        assert await JobHandle(queue, running_id).cancel() is CancelOutcome.STOPPING
        with pytest.raises(WorkflowError, match="held"):
            await handle.result(timeout=5)
    finally:
        await worker.stop()


async def test_a_waiting_step_shows_queued_with_its_job() -> None:
    queue, store = RecordingQueue(), InMemoryWorkflowStateStore()
    handle = await JobGroup(add.s(1, 2), add.s(3, 4)).apply_async(queue, store=store)
    info = await with_job_states(await handle.info(), queue)  # no worker: nothing runs
    assert [(s.status, s.job_id) for s in info.steps] == [
        ("queued", queue.ids(0)[0]),
        ("queued", queue.ids(0)[1]),
    ]


async def test_each_stage_records_its_jobs_in_one_call_however_many_batches() -> None:
    queue, store = RecordingQueue(), CountingStore()
    size = ENQUEUE_BATCH + 50  # two enqueue batches, one record
    members = JobGroup(*(add.s(n, 0) for n in range(size)))
    handle = await JobChord(members, total.s()).apply_async(queue, store=store)
    workers = [TaskWorker(f"w{n}", queue, HANDLERS) for n in range(2)]
    for worker in workers:
        await worker.start()
    try:
        assert await handle.result(timeout=10) == sum(range(size))
    finally:
        for worker in workers:
            await worker.stop()
    assert store.recorded == [(0, queue.ids(0)), (1, queue.ids(1))]
    info = await handle.info()
    assert [s.job_id for s in info.steps] == [*queue.ids(0), *queue.ids(1)]


async def test_applying_again_records_the_same_jobs() -> None:
    queue, store = RecordingQueue(), CountingStore()
    chain = JobChain(add.s(1, 2), add.s(3))
    await chain.apply_async(queue, store=store, workflow_id="wf-again")
    await chain.apply_async(queue, store=store, workflow_id="wf-again")
    first = queue.ids(0)
    assert store.recorded == [(0, first), (0, first)]  # the queue's first job, both times
    assert await queue.count(queue.queue_name) == 1


class PlainStore:
    """A run store with the required methods only (no `record_jobs`), as a third party's."""

    def __init__(self) -> None:
        self.inner = InMemoryWorkflowStateStore()
        self.create_run = self.inner.create_run
        self.record_step = self.inner.record_step
        self.fail_step = self.inner.fail_step
        self.finish_run = self.inner.finish_run
        self.load_run = self.inner.load_run
        self.delete_run = self.inner.delete_run


async def test_a_store_without_record_jobs_runs_workflows_as_before() -> None:
    queue, store = RecordingQueue(), PlainStore()
    assert isinstance(store, WorkflowRunStoreProtocol)
    assert not isinstance(store, JobRecordingWorkflowRunStoreProtocol)
    handle = await JobChain(add.s(1, 2), add.s(3)).apply_async(queue, store=store)
    info = await handle.info()
    assert [(s.status, s.job_id) for s in info.steps] == [("queued", None), ("waiting", None)]
    worker = TaskWorker("w", queue, HANDLERS)
    await worker.start()
    try:
        assert await handle.result(timeout=5) == 6
    finally:
        await worker.stop()


class FailingStore(InMemoryWorkflowStateStore):
    async def record_jobs(self, workflow_id: str, stage: int, record: Mapping[str, Any]) -> None:
        msg = "store unreachable"
        raise ConnectionError(msg)


async def test_a_failure_to_record_jobs_is_logged_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue, store = RecordingQueue(), FailingStore()
    worker = TaskWorker("w", queue, HANDLERS)
    await worker.start()
    try:
        with caplog.at_level(logging.WARNING, logger="lexigram.tasks.workflows._advance"):
            handle = await JobChain(add.s(1, 2), add.s(3)).apply_async(queue, store=store)
            assert await handle.result(timeout=5) == 6
    finally:
        await worker.stop()
    assert len(queue.sent) == 2, "a step ran again after the record of its next job failed"
    recorded = [r for r in caplog.records if "Recording the job ids" in r.getMessage()]
    assert [r.args[0] for r in recorded if isinstance(r.args, tuple)] == [0, 1]


def test_a_member_whose_job_never_went_out_is_waiting() -> None:
    stage = {"group": True, "steps": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}
    run = {
        "workflow_id": "wf",
        "definition": {"kind": "JobGroup", "stages": [stage]},
        "status": "failed",
        "steps": {"0:1": {"status": "failed", "error": "refused", "job_id": None}},
        "jobs": {"0": {"job_ids": ["job-a", None, None], "queue": "q"}},
    }
    info = run_info(run)
    assert [(s.status, s.job_id) for s in info.steps] == [
        ("queued", "job-a"),
        ("failed", None),
        ("waiting", None),
    ]
    assert info.queue_name == "q"
