"""Queue-driven workflow runs on SQLite: the stage join, through two stores on one file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from lexigram.contracts.tasks import TaskBackendSpec, WorkflowRunStoreProtocol
from lexigram.tasks.backends.sqlite import SQLiteBackend


@pytest_asyncio.fixture
async def stores(tmp_path: Path) -> AsyncIterator[list[Any]]:
    """Two workflow stores on one database file, as two worker processes would have."""
    spec = TaskBackendSpec(name="default", type="sqlite", url=f"sqlite:///{tmp_path}/wf.db")
    made = [SQLiteBackend().create_workflow_state_store(spec) for _ in range(2)]
    yield made
    for store in made:
        await store.close()


async def test_the_stage_join_answers_one_member_however_often_each_is_recorded(
    stores: list[Any],
) -> None:
    first, second = stores
    assert isinstance(first, WorkflowRunStoreProtocol)
    assert await first.create_run("run", {"kind": "JobChord", "stages": []})
    assert not await second.create_run("run", {"kind": "JobChord", "stages": []})

    async def record(store: Any, member: int) -> tuple[int, Any]:
        record = {"status": "succeeded", "result": member * 10}
        return member, await store.record_step("run", 0, member, size=20, record=record)

    calls = [record(stores[(m + twice) % 2], m) for m in range(20) for twice in range(2)]
    answers = await asyncio.gather(*calls)
    winners = [(member, answer) for member, answer in answers if answer is not None]
    assert len({member for member, _ in winners}) == 1
    for _, answer in winners:
        assert [step["result"] for step in answer] == [m * 10 for m in range(20)]
    await second.finish_run("run", 42)
    run = await first.load_run("run")
    assert run is not None
    assert (run["status"], run["result"], len(run["steps"])) == ("completed", 42, 20)


async def test_a_failed_step_fails_the_run_once_and_stops_its_joins(stores: list[Any]) -> None:
    first, second = stores
    await first.create_run("run", {"kind": "JobChord", "stages": []})
    failed = {"status": "failed", "error": "ValueError: no"}
    assert await first.fail_step("run", 0, 1, record=failed)
    assert await second.fail_step("run", 0, 1, record=failed)  # a repeat of that step
    assert not await second.fail_step("run", 0, 2, record=failed)
    ok = {"status": "succeeded", "result": 1}
    assert await first.record_step("run", 0, 0, size=1, record=ok) is None
    run = await second.load_run("run")
    assert run is not None
    assert (run["status"], run["error"]) == ("failed", "ValueError: no")
    await first.delete_run("run")
    assert await second.load_run("run") is None
