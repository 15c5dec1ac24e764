"""A PostgreSQL restart mid-run loses no committed job.

Two worker processes consume while the test enqueues at a steady rate and restarts the
local cluster (``pg_ctlcluster ... restart``, about 2 s of downtime). Pools reconnect,
the LISTEN connection reconnects, workers resume, and every job whose enqueue returned
Ok completes. Needs the local Debian cluster and root (as on CI); the server is started
again by the test's finalizer whatever happens.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import asyncpg
import pytest

from lexigram.contracts.tasks import BackendConnectionError, Job
from lexigram.tasks.backends.postgres import PostgresTaskQueue

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ENQUEUE_SECONDS = 5.0
RATE = 40  # jobs per second


@pytest.fixture
def local_cluster(
    postgres_dsn: str, service_unavailable: Callable[[str], NoReturn]
) -> tuple[str, str, str]:
    """(DSN, version, name) of the local cluster under test; unavailable for any other server."""
    if urlsplit(postgres_dsn).hostname not in ("127.0.0.1", "localhost"):
        service_unavailable("the restart test only restarts a local server")
    versions = sorted(p.name for p in Path("/etc/postgresql").glob("*") if p.is_dir())
    if shutil.which("pg_ctlcluster") is None or not versions or os.geteuid() != 0:
        service_unavailable("restarting PostgreSQL needs the local Debian cluster and root")
    return postgres_dsn, versions[-1], "main"


async def _ctl(action: str, version: str, name: str) -> int:
    proc = await asyncio.create_subprocess_exec(
        "pg_ctlcluster",
        "--skip-systemctl-redirect",
        version,
        name,
        action,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await proc.wait()


async def _server_up(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=2.0)
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


async def _enqueue_steadily(
    queue: PostgresTaskQueue, prefix: str, restart_after: float, restart: Callable[[], Any]
) -> tuple[list[str], int, asyncio.Task[int]]:
    """Enqueue at RATE for ENQUEUE_SECONDS, starting the restart after `restart_after` s."""
    committed: list[str] = []
    failed = 0
    task: asyncio.Task[int] | None = None
    started = time.monotonic()
    index = 0
    while time.monotonic() - started < ENQUEUE_SECONDS:
        if task is None and time.monotonic() - started > restart_after:
            task = asyncio.create_task(restart())
        key = f"{prefix}{index}"
        index += 1
        try:
            result = await queue.enqueue(Job(name="record", args=(key,), max_retries=20))
        except BackendConnectionError:
            failed += 1  # the server was down longer than the retries: not committed
        else:
            assert result.is_ok()
            committed.append(key)
        await asyncio.sleep(1 / RATE)  # the steady enqueue rate
    assert task is not None
    return committed, failed, task


async def _completed(dsn: str, table: str, prefix: str, expected: set[str], queue) -> set[str]:
    """Observe the completions until `expected` are all done and the queue is empty."""
    done: set[str] = set()
    async with asyncpg.create_pool(dsn, min_size=1, max_size=1) as pool:
        for _ in range(600):  # bounded: 60 s
            rows = await pool.fetch(
                f"SELECT job_key FROM {table} WHERE job_key LIKE $1 || '%' AND runs > 0",  # noqa: S608
                prefix,
            )
            done = {r["job_key"] for r in rows}
            if done >= expected and await queue.count(queue.queue_name) == 0:
                break
            await asyncio.sleep(0.1)  # observing the workers' progress
    return done


@pytest.mark.exclusive  # restarts the shared PostgreSQL server under every other test
async def test_restart_mid_run_loses_no_committed_job(
    local_cluster, make_pg_queue, unique_name, completions, spawn_worker
):
    postgres_dsn, version, name = local_cluster
    queue: PostgresTaskQueue = make_pg_queue()
    prefix = f"{unique_name}-"
    workers = [await spawn_worker(queue.queue_name, pause=0.02) for _ in range(2)]
    for proc in workers:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 30.0) == b"started\n"
    restart: asyncio.Task[int] | None = None
    try:
        committed, _failed, restart = await _enqueue_steadily(
            queue, prefix, 1.0, lambda: _ctl("restart", version, name)
        )
        assert await restart == 0
        done = await _completed(postgres_dsn, completions, prefix, set(committed), queue)
        missing = sorted(set(committed) - done, key=lambda k: int(k.rsplit("-", 1)[1]))
        assert not missing, f"{len(missing)} committed jobs never completed: {missing[:5]}"
        assert await queue.count(queue.queue_name) == 0
        assert len(committed) > RATE  # enqueueing went on around the restart
        assert all(proc.returncode is None for proc in workers)  # the workers survived
    finally:
        if restart is not None and not restart.done():
            await restart
        if not await _server_up(postgres_dsn):
            await _ctl("start", version, name)
