"""The shipped workflow run-store kit against `RedisWorkflowStateStore` (real Redis).

`list_runs` reads a page of the run index (a ZSET per namespace and per status, written
by the scripts that create, fail, finish and delete runs). Before it, each call SCANned
the whole database for run hashes: its cost grew with every key of the database, the
queue's jobs and other applications' keys included. The cost test runs on a server of
its own, so that INFO commandstats counts only its commands (tests sharing a server
SCAN too, to clean up).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from lexigram.contracts.tasks import WorkflowStatus
from lexigram.tasks.backends.redis import RedisConnector, RedisWorkflowStateStore
from lexigram.tasks.testing import (
    RunStoreFactory,
    WorkflowRunJobsConformance,
    WorkflowRunListingConformance,
    WorkflowRunStoreConformance,
)

pytestmark = pytest.mark.redis

REDIS_SERVER = shutil.which("redis-server")
UNRELATED_KEYS = 20_000


@pytest_asyncio.fixture
async def make_run_store(
    redis_url: str, key_prefix: str, connector: RedisConnector
) -> AsyncIterator[RunStoreFactory]:
    """Stores with connections of their own, as worker processes have.

    The `connector` fixture deletes the test's keys afterwards.
    """
    made: list[RedisWorkflowStateStore] = []

    async def factory() -> Any:
        store = RedisWorkflowStateStore(redis_url, key_prefix=key_prefix)
        made.append(store)
        return store

    yield factory
    for store in made:
        await store.close()


class TestRedisRunStoreConformance(
    WorkflowRunStoreConformance, WorkflowRunJobsConformance, WorkflowRunListingConformance
):
    pass


# -- the run index ------------------------------------------------------------------------


@pytest_asyncio.fixture
async def own_redis_url(
    tmp_path: Path, service_unavailable: Callable[[str], NoReturn], free_port: Callable[[], int]
) -> AsyncIterator[str]:
    """A redis-server of this test's own (no persistence), stopped afterwards."""
    if REDIS_SERVER is None:
        service_unavailable("redis-server is not on PATH; the listing cost test starts its own.")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        REDIS_SERVER,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(tmp_path),
        "--save", "",
        "--appendonly", "no",
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = aioredis.Redis.from_url(url)
    try:
        for _ in range(200):
            try:
                await client.ping()
                break
            except aioredis.ConnectionError:
                await asyncio.sleep(0.05)  # another process starting: nothing to wait on
        else:
            pytest.fail("the test's redis-server did not answer within 10 s")
        yield url
    finally:
        await client.aclose()
        proc.kill()
        await proc.wait()


async def _calls(client: aioredis.Redis) -> dict[str, int]:
    """Calls per command since the last CONFIG RESETSTAT (``INFO commandstats``)."""
    stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}


async def _old_run(client: aioredis.Redis, store: RedisWorkflowStateStore, run_id: str) -> None:
    """A RUNNING run as the version before the index wrote it: its hash, no index entry."""
    created = "1000.5"
    await client.hset(
        store.namespace.key("run", run_id),
        mapping={"def": '{"stages": []}', "status": "running", "created": created,
                 "updated": created},
    )  # fmt: skip


async def test_list_runs_costs_its_page_not_the_database(own_redis_url: str) -> None:
    client = aioredis.Redis.from_url(own_redis_url)
    store = RedisWorkflowStateStore(own_redis_url, key_prefix="cost")
    try:
        await _old_run(client, store, "from-before")
        for n in range(5):
            assert await store.create_run(f"run-{n}", {"n": n})
        await store.fail_step("run-1", 0, 0, record={"status": "failed", "error": "boom"})
        # The first listing indexes the run written before the index (one SCAN, once).
        first = await store.list_runs()
        assert [run["workflow_id"] for run in first] == [
            "run-4", "run-3", "run-2", "run-1", "run-0", "from-before"
        ]  # fmt: skip
        for start in range(0, UNRELATED_KEYS, 1000):
            await client.mset({f"other:{n}": "x" for n in range(start, start + 1000)})
        await client.config_resetstat()

        page = await store.list_runs(limit=3)
        failed = await store.list_runs(status=WorkflowStatus.FAILED, limit=3)

        calls = await _calls(client)
    finally:
        await store.close()
        await client.aclose()
    assert [run["workflow_id"] for run in page] == ["run-4", "run-3", "run-2"]
    assert [run["workflow_id"] for run in failed] == ["run-1"]
    assert "scan" not in calls, calls
    # Per call: the marker check and one index read, then the hashes of its page.
    assert calls.get("zrevrangebyscore") == 2, calls
    assert calls.get("hgetall") == 4, calls
    assert sum(calls.values()) <= 10, calls


async def _index_entries(client: aioredis.Redis, store: RedisWorkflowStateStore) -> set[str]:
    """Every (index, run id) entry of the store's run index, as ``"<index>/<id>"``."""
    found: set[str] = set()
    for name in ("", "running", "completed", "failed"):
        key = store.namespace.key("runs", name) if name else store.namespace.key("runs")
        found |= {
            f"{name or 'all'}/{member.decode()}" for member in await client.zrange(key, 0, -1)
        }
    return found


async def test_a_run_whose_hash_expired_is_not_listed_and_leaves_the_index(
    redis_url: str, key_prefix: str, connector: RedisConnector
) -> None:
    """Runs do not expire by themselves, but a hash can go behind the store's back (an
    expiry someone set, a DEL by hand, an earlier version's `delete_run`)."""
    client = aioredis.Redis.from_url(redis_url)
    store = RedisWorkflowStateStore(redis_url, key_prefix=key_prefix)
    try:
        for n in range(5):
            assert await store.create_run(f"run-{n}", {"n": n})
        await store.finish_run("run-0", 0)
        for gone in ("run-3", "run-2"):
            await client.pexpire(store.namespace.key("run", gone), 1)
        gone_keys = [store.namespace.key("run", gone) for gone in ("run-3", "run-2")]
        for _ in range(500):
            if not await client.exists(*gone_keys):
                break
            await asyncio.sleep(0.01)  # the server's clock: no event to wait on
        else:
            pytest.fail("the runs' hashes did not expire within 5 s")

        # The page reads on past the two entries whose run is gone.
        listed = await store.list_runs(limit=2)
        running = await store.list_runs(status=WorkflowStatus.RUNNING, limit=2)
        entries = await _index_entries(client, store)
    finally:
        await store.close()
        await client.aclose()
    assert [run["workflow_id"] for run in listed] == ["run-4", "run-1"]
    assert [run["workflow_id"] for run in running] == ["run-4", "run-1"]
    assert entries == {
        "all/run-4", "all/run-1", "all/run-0",
        "running/run-4", "running/run-1", "completed/run-0",
    }  # fmt: skip


async def test_runs_of_one_instant_page_past_gone_ones_without_repeats(
    redis_url: str, key_prefix: str, connector: RedisConnector
) -> None:
    """Equal creation times (earlier runs all written at one instant here): the id
    orders them, highest first, and reading on after a repair repeats and skips none."""
    client = aioredis.Redis.from_url(redis_url)
    store = RedisWorkflowStateStore(redis_url, key_prefix=key_prefix)
    try:
        for run_id in "abcde":
            await _old_run(client, store, run_id)
        assert [run["workflow_id"] for run in await store.list_runs(limit=1)] == ["e"]
        await client.delete(store.namespace.key("run", "d"))
        listed = await store.list_runs(limit=3)
        rest = await store.list_runs(limit=10)
    finally:
        await store.close()
        await client.aclose()
    assert [run["workflow_id"] for run in listed] == ["e", "c", "b"]
    assert [run["workflow_id"] for run in rest] == ["e", "c", "b", "a"]


async def test_a_run_whose_status_changed_behind_the_index_is_filed_again(
    redis_url: str, key_prefix: str, connector: RedisConnector
) -> None:
    """An earlier version's `finish_run` changes the hash alone (during a rolling
    upgrade): the listing by status drops the run and files it under its status."""
    client = aioredis.Redis.from_url(redis_url)
    store = RedisWorkflowStateStore(redis_url, key_prefix=key_prefix)
    try:
        assert await store.create_run("run", {})
        await client.hset(store.namespace.key("run", "run"), "status", "completed")
        running = await store.list_runs(status=WorkflowStatus.RUNNING)
        completed = await store.list_runs(status=WorkflowStatus.COMPLETED)
        entries = await _index_entries(client, store)
        await store.delete_run("run")
        left = await _index_entries(client, store)
    finally:
        await store.close()
        await client.aclose()
    assert running == []
    assert [run["workflow_id"] for run in completed] == ["run"]
    assert entries == {"all/run", "completed/run"}
    assert left == set()
