"""`WorkflowRunStoreConformance`: what a queue-driven workflow run store must do.

A backend supplies one fixture, ``make_run_store``: an async factory returning a
`WorkflowRunStoreProtocol` object. Each call should return a new object on the same
storage, as another worker process would have (a store that lives in one process, like
the memory one, returns the same object each time); the fixture owns cleanup. Run ids
are unique per test.

A store that also implements `JobRecordingWorkflowRunStoreProtocol` (each stage's job
ids, so a step is found by its job before it ends) subclasses
`WorkflowRunJobsConformance` too, with the same fixture; one that implements
`ListingWorkflowRunStoreProtocol` (``list_runs``) subclasses
`WorkflowRunListingConformance`.
"""

# ruff: noqa: S101 - the kit is pytest tests: they assert

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from lexigram.contracts.tasks import (
    JobRecordingWorkflowRunStoreProtocol,
    ListingWorkflowRunStoreProtocol,
    WorkflowRunStoreProtocol,
    WorkflowStatus,
)

RunStoreFactory = Callable[[], Awaitable[WorkflowRunStoreProtocol]]
"""The type of the ``make_run_store`` fixture a backend supplies."""

_DEFINITION: dict[str, Any] = {"kind": "JobChord", "stages": [], "on_error": None}


def _ok(result: Any) -> dict[str, Any]:
    return {"status": "succeeded", "result": result, "job_id": f"job-{result}"}


@pytest.mark.asyncio
class WorkflowRunStoreConformance:
    """The atomic join and the failure rule of `WorkflowRunStoreProtocol`."""

    async def test_create_run_stores_a_running_run_once(
        self, make_run_store: RunStoreFactory
    ) -> None:
        first, second = await make_run_store(), await make_run_store()
        run_id = uuid.uuid4().hex
        assert await first.create_run(run_id, _DEFINITION) is True
        assert await second.create_run(run_id, {"kind": "other"}) is False
        run = await second.load_run(run_id)
        assert run is not None, "load_run found no run that create_run stored"
        assert (run["workflow_id"], run["status"], run["definition"]) == (
            run_id,
            "running",
            _DEFINITION,
        )
        assert run["steps"] == {}
        assert run["created_at"] > 0
        assert await second.load_run(uuid.uuid4().hex) is None

    async def test_join_answers_exactly_one_member_despite_concurrent_duplicates(
        self, make_run_store: RunStoreFactory
    ) -> None:
        stores = [await make_run_store(), await make_run_store()]
        run_id = uuid.uuid4().hex
        await stores[0].create_run(run_id, _DEFINITION)
        size = 12

        async def record(member: int, copy: int) -> tuple[int, Any]:
            store = stores[(member + copy) % 2]
            answer = await store.record_step(run_id, 0, member, size=size, record=_ok(member))
            return member, answer

        answers = await asyncio.gather(*(record(m, c) for m in range(size) for c in range(3)))
        winners = {member for member, answer in answers if answer is not None}
        assert len(winners) == 1, f"members {sorted(winners)} were each told they joined"
        for member, answer in answers:
            if member in winners:
                assert answer is not None, "a repeat of the joining member was not answered"
                assert [r["result"] for r in answer] == list(range(size))
        (winner,) = winners
        again = await stores[1].record_step(run_id, 0, winner, size=size, record=_ok(-1))
        assert again is not None
        assert [r["result"] for r in again] == list(range(size)), "a repeat replaced a record"

    async def test_join_waits_for_every_member(self, make_run_store: RunStoreFactory) -> None:
        store = await make_run_store()
        run_id = uuid.uuid4().hex
        await store.create_run(run_id, _DEFINITION)
        for member in (2, 0):
            assert await store.record_step(run_id, 0, member, size=3, record=_ok(member)) is None
        assert await store.record_step(run_id, 1, 0, size=1, record=_ok(9)) is not None
        last = await store.record_step(run_id, 0, 1, size=3, record=_ok(1))
        assert last is not None
        assert [r["result"] for r in last] == [0, 1, 2]

    async def test_a_failed_step_fails_the_run_once_and_stops_every_join(
        self, make_run_store: RunStoreFactory
    ) -> None:
        first, second = await make_run_store(), await make_run_store()
        run_id = uuid.uuid4().hex
        await first.create_run(run_id, _DEFINITION)
        failed = {"status": "failed", "error": "RuntimeError: no", "job_id": "j"}
        assert await first.fail_step(run_id, 0, 1, record=failed) is True
        assert await second.fail_step(run_id, 0, 1, record=failed) is True, "a repeat of it"
        assert await second.fail_step(run_id, 0, 2, record=failed) is False
        assert await first.record_step(run_id, 0, 0, size=1, record=_ok(0)) is None
        await first.finish_run(run_id, "too late")
        run = await second.load_run(run_id)
        assert run is not None
        assert (run["status"], run["error"], run["result"]) == ("failed", "RuntimeError: no", None)
        assert run["steps"]["0:1"]["status"] == "failed"
        assert run["steps"]["0:0"]["result"] == 0

    async def test_load_run_names_the_step_that_failed_the_run(
        self, make_run_store: RunStoreFactory
    ) -> None:
        # In a group two members can fail; the run's error is the first to reach
        # fail_step, and load_run's "failed_step" must name that one, not the first in
        # member order, so WorkflowError names the step on_error was given.
        first, second = await make_run_store(), await make_run_store()
        run_id = uuid.uuid4().hex
        await first.create_run(run_id, _DEFINITION)
        running = await second.load_run(run_id)
        assert running is not None
        assert running.get("failed_step") is None, "a RUNNING run named a failed step"
        later = {"status": "failed", "error": "RuntimeError: later", "job_id": "j0"}
        failed = {"status": "failed", "error": "RuntimeError: first", "job_id": "j1"}
        assert await first.fail_step(run_id, 0, 1, record=failed) is True
        assert await second.fail_step(run_id, 0, 0, record=later) is False
        run = await second.load_run(run_id)
        assert run is not None
        assert (run["error"], run.get("failed_step")) == ("RuntimeError: first", "0:1"), (
            "load_run must return failed_step, the '<stage>:<member>' fail_step answered True"
        )
        done = uuid.uuid4().hex
        await first.create_run(done, _DEFINITION)
        await first.record_step(done, 0, 0, size=1, record=_ok(0))
        await first.finish_run(done, 0)
        completed = await second.load_run(done)
        assert completed is not None
        assert completed.get("failed_step") is None, "a COMPLETED run named a failed step"

    async def test_a_cancelled_step_keeps_its_status_and_fails_the_run(
        self, make_run_store: RunStoreFactory
    ) -> None:
        # A step whose job was cancelled goes through fail_step with the status
        # "cancelled": the store keeps the record as given, and the first one only.
        first, second = await make_run_store(), await make_run_store()
        run_id = uuid.uuid4().hex
        await first.create_run(run_id, _DEFINITION)
        error = "Job j ('hold') was cancelled."
        cancelled = {"status": "cancelled", "error": error, "job_id": "j"}
        assert await first.fail_step(run_id, 0, 0, record=cancelled) is True
        failed = {"status": "failed", "error": "RuntimeError: no", "job_id": "j"}
        assert await second.fail_step(run_id, 0, 0, record=failed) is True, "a repeat of it"
        run = await second.load_run(run_id)
        assert run is not None
        assert (run["status"], run["error"]) == ("failed", error)
        assert run["steps"]["0:0"] == cancelled, "the step's first record was not kept as given"

    async def test_finish_and_delete_a_run(self, make_run_store: RunStoreFactory) -> None:
        first, second = await make_run_store(), await make_run_store()
        run_id = uuid.uuid4().hex
        await first.create_run(run_id, _DEFINITION)
        await first.record_step(run_id, 0, 0, size=1, record=_ok([1, "two"]))
        await first.finish_run(run_id, {"total": [1, "two"]})
        run = await second.load_run(run_id)
        assert run is not None
        assert (run["status"], run["result"]) == ("completed", {"total": [1, "two"]})
        assert run["steps"]["0:0"]["result"] == [1, "two"]
        assert run["updated_at"] >= run["created_at"]
        await second.delete_run(run_id)
        assert await first.load_run(run_id) is None
        await second.delete_run(run_id)  # absent: a no-op


def _jobs(*job_ids: str | None) -> dict[str, Any]:
    return {"job_ids": list(job_ids), "queue": "conformance", "enqueued_at": 1.5}


async def _recording(make_run_store: RunStoreFactory) -> JobRecordingWorkflowRunStoreProtocol:
    store = await make_run_store()
    assert isinstance(store, JobRecordingWorkflowRunStoreProtocol), (
        f"{type(store).__name__} does not implement JobRecordingWorkflowRunStoreProtocol "
        "(record_jobs); leave WorkflowRunJobsConformance out of its test class"
    )
    return store


@pytest.mark.asyncio
class WorkflowRunJobsConformance:
    """`JobRecordingWorkflowRunStoreProtocol`: each stage's job ids, apart from its steps."""

    async def test_a_stage_s_jobs_are_kept_apart_from_its_step_records(
        self, make_run_store: RunStoreFactory
    ) -> None:
        first, second = await _recording(make_run_store), await _recording(make_run_store)
        run_id = uuid.uuid4().hex
        await first.create_run(run_id, _DEFINITION)
        await first.record_jobs(run_id, 0, _jobs("job-0", "job-1", "job-2"))
        run = await second.load_run(run_id)
        assert run is not None
        assert run.get("jobs") == {"0": _jobs("job-0", "job-1", "job-2")}
        assert run["steps"] == {}, "the jobs of a stage were returned as a step record"
        # The join counts step records only: the jobs record completes nothing.
        for member in (0, 1):
            assert await second.record_step(run_id, 0, member, size=3, record=_ok(member)) is None
        last = await first.record_step(run_id, 0, 2, size=3, record=_ok(2))
        assert last is not None, "the step whose record completed the stage was not answered"
        assert [r["result"] for r in last] == [0, 1, 2]
        await second.record_jobs(run_id, 1, _jobs("job-3", None))
        await second.record_jobs(run_id, 0, _jobs("job-0", "job-1", "job-9"))  # replaces
        failed = {"status": "failed", "error": "RuntimeError: no", "job_id": "job-3"}
        assert await first.fail_step(run_id, 1, 0, record=failed) is True
        run = await first.load_run(run_id)
        assert run is not None
        assert run["jobs"] == {
            "0": _jobs("job-0", "job-1", "job-9"),
            "1": _jobs("job-3", None),
        }
        assert sorted(run["steps"]) == ["0:0", "0:1", "0:2", "1:0"]
        assert run["status"] == "failed"

    async def test_jobs_of_a_missing_run_are_dropped_and_go_with_its_delete(
        self, make_run_store: RunStoreFactory
    ) -> None:
        first, second = await _recording(make_run_store), await _recording(make_run_store)
        run_id = uuid.uuid4().hex
        await first.record_jobs(run_id, 0, _jobs("job-0"))
        assert await second.load_run(run_id) is None, "record_jobs created a run"
        assert await second.create_run(run_id, _DEFINITION) is True
        assert not (await second.load_run(run_id) or {}).get("jobs"), "jobs of no run were kept"
        await second.record_jobs(run_id, 0, _jobs("job-0"))
        await first.delete_run(run_id)
        assert await second.load_run(run_id) is None
        assert await first.create_run(run_id, _DEFINITION) is True
        run = await second.load_run(run_id)
        assert run is not None
        assert not run.get("jobs"), "the jobs of a deleted run came back with a new run"
        assert run["steps"] == {}


async def _listing(make_run_store: RunStoreFactory) -> ListingWorkflowRunStoreProtocol:
    store = await make_run_store()
    assert isinstance(store, ListingWorkflowRunStoreProtocol), (
        f"{type(store).__name__} does not implement ListingWorkflowRunStoreProtocol "
        "(list_runs); leave WorkflowRunListingConformance out of its test class"
    )
    return store


@pytest.mark.asyncio
class WorkflowRunListingConformance:
    """`ListingWorkflowRunStoreProtocol`: the runs, newest first, by status, bounded.

    These tests read every run of the fixture's storage, so they expect it to hold no
    runs another test or process writes meanwhile (a namespace, schema or file per
    test, as the other kit tests' fixtures give).
    """

    async def test_list_runs_returns_runs_newest_first_as_load_run_does(
        self, make_run_store: RunStoreFactory
    ) -> None:
        first, second = await _listing(make_run_store), await _listing(make_run_store)
        ids = [uuid.uuid4().hex for _ in range(3)]
        for run_id in ids:
            assert await first.create_run(run_id, _DEFINITION) is True
            # Distinct creation times, however coarse the storage's clock.
            await asyncio.sleep(0.02)
        failed = {"status": "failed", "error": "RuntimeError: no", "job_id": "j"}
        assert await first.fail_step(ids[1], 0, 0, record=failed) is True
        await first.record_step(ids[2], 0, 0, size=1, record=_ok(7))
        await first.finish_run(ids[2], 7)
        listed = await second.list_runs(limit=1000)
        mine = [run["workflow_id"] for run in listed if run["workflow_id"] in ids]
        assert mine == ids[::-1], "list_runs did not list the runs newest first"
        created = [run["created_at"] for run in listed]
        assert created == sorted(created, reverse=True), "list_runs is not newest first"
        for run in listed:
            if run["workflow_id"] in ids:
                assert run == await first.load_run(run["workflow_id"]), (
                    "a run from list_runs differs from load_run's"
                )
        top = await second.list_runs(limit=2)
        assert [run["workflow_id"] for run in top] == [ids[2], ids[1]], (
            "list_runs(limit=2) did not return the two newest runs"
        )

    async def test_list_runs_filters_by_status_and_forgets_deleted_runs(
        self, make_run_store: RunStoreFactory
    ) -> None:
        first, second = await _listing(make_run_store), await _listing(make_run_store)
        running, failed_run, done = (uuid.uuid4().hex for _ in range(3))
        for run_id in (running, failed_run, done):
            await first.create_run(run_id, _DEFINITION)
        failed = {"status": "failed", "error": "RuntimeError: no", "job_id": "j"}
        await first.fail_step(failed_run, 0, 0, record=failed)
        await first.finish_run(done, None)
        mine = {running, failed_run, done}
        expected = {
            WorkflowStatus.RUNNING: running,
            WorkflowStatus.FAILED: failed_run,
            WorkflowStatus.COMPLETED: done,
        }
        for status, run_id in expected.items():
            found = {run["workflow_id"] for run in await second.list_runs(status=status)}
            assert found & mine == {run_id}, f"list_runs(status={status.value!r}) listed {found}"
        (listed,) = [
            run
            for run in await second.list_runs(status=WorkflowStatus.FAILED)
            if run["workflow_id"] == failed_run
        ]
        assert (listed["status"], listed.get("failed_step")) == ("failed", "0:0")
        await second.delete_run(running)
        assert running not in {run["workflow_id"] for run in await first.list_runs()}
        assert await first.list_runs(limit=0) == []
