"""Crash safety of the SQLite backend with real processes and SIGKILL.

- Three worker processes drain 600 jobs while one of them is SIGKILLed and replaced
  every second: every job completes, and a job runs more than once only if a killed
  process had started it (its lease ran out and it was delivered again).
- A producer that enqueues and acks as fast as it can is SIGKILLed mid-write, over and
  over: the file opens clean (``PRAGMA integrity_check``), every batch it was told was
  committed is there unless the producer leased (and so may have acked) it, and every
  job whose ack returned True before a later call's commit returned is gone (an ack
  returns before its commit, which joins the next one; an ack the kill caught
  uncommitted leaves its job to run again).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.sqlite import SQLiteTaskQueue

pytestmark = [pytest.mark.slow]

JOBS = 600
WORKERS = 3
CONCURRENCY = 10
KILLS = 5
LEASE = 2.0


def _runs(path: str) -> list[tuple[str, int, int]]:
    with closing(sqlite3.connect(path)) as conn, conn:
        return list(conn.execute("SELECT job_key, pid, completed FROM crash_runs"))


async def _wait_until_done(path: str, queue: SQLiteTaskQueue) -> set[str]:
    done: set[str] = set()
    for _ in range(600):  # bounded: 60 s
        done = {key for key, _, completed in _runs(path) if completed}
        if len(done) == JOBS and await queue.count(queue.queue_name) == 0:
            return done
        await asyncio.sleep(0.1)  # observing other processes' progress, not synchronising
    return done


async def test_sigkilled_workers_lose_no_job(tmp_path: Path, spawn: Any) -> None:
    path = str(tmp_path / "crash.db")
    queue = SQLiteTaskQueue(path, queue_name="crash", visibility_timeout=LEASE)
    await queue.count("crash")
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE crash_runs (job_key TEXT, pid INTEGER, completed INTEGER)")
    jobs = [Job(name="record", args=(f"k{i}",), max_retries=10) for i in range(JOBS)]
    assert all(result.is_ok() for result in await queue.enqueue_many(jobs))
    args = (path, "crash", str(CONCURRENCY), str(LEASE), "0.25")

    async def start_worker() -> asyncio.subprocess.Process:
        proc: asyncio.subprocess.Process = await spawn("worker_process.py", *args)
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 30.0) == b"started\n"
        return proc

    procs = [await start_worker() for _ in range(WORKERS)]
    killed: set[int] = set()
    rng = random.Random(7)
    for _ in range(KILLS):
        await asyncio.sleep(1.0)  # the kill schedule
        victim = rng.randrange(WORKERS)
        procs[victim].send_signal(signal.SIGKILL)
        await procs[victim].wait()
        killed.add(procs[victim].pid)
        procs[victim] = await start_worker()
    try:
        done = await _wait_until_done(path, queue)
        assert len(done) == JOBS, f"{JOBS - len(done)} jobs never completed"
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            await asyncio.wait_for(proc.wait(), 30.0)
    runs = _runs(path)
    interrupted = [key for key, pid, completed in runs if not completed]
    assert interrupted, "no job was in flight in a killed worker: the test proved nothing"
    assert {pid for _, pid, completed in runs if not completed} <= killed
    by_key: dict[str, list[int]] = {}
    for key, pid, _ in runs:
        by_key.setdefault(key, []).append(pid)
    for key, pids in by_key.items():
        survivors = [pid for pid in pids if pid not in killed]
        assert len(survivors) <= 1, f"{key} ran {len(survivors)} times in live workers"
    assert await queue.count("crash") == 0
    await queue.close()


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
async def test_kill_mid_write_loses_nothing_acknowledged(
    tmp_path: Path, spawn: Any, synchronous: str
) -> None:
    path = str(tmp_path / "writes.db")
    committed: set[str] = set()
    acked: set[str] = set()  # acks a later commit covered
    leased: set[str] = set()
    rng = random.Random(11)
    for run in range(6):
        proc = await spawn("writer_process.py", path, "w", synchronous, str(run))
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 30.0) == b"started\n"
        await asyncio.sleep(rng.uniform(0.2, 0.6))
        proc.send_signal(signal.SIGKILL)
        # Read to the end before waiting: wait() also waits for the pipe to close, which
        # never happens while a full read buffer has paused the pipe (a deadlock).
        output = await proc.stdout.read()
        await proc.wait()
        returned: set[str] = set()  # acks that returned True, not yet covered by a commit
        for line in output.decode().splitlines():
            kind, *rest = line.split()
            if kind == "enq":
                committed.update(f"job-{run}-{n}" for n in range(int(rest[0]), int(rest[1]) + 1))
                acked |= returned
                returned.clear()
            elif kind == "lease":
                leased.add(rest[0])
            elif kind == "ack":
                returned.add(rest[0])
    assert committed, "the writer committed nothing before it was killed"
    assert acked, "the writer acked nothing before it was killed"
    with closing(sqlite3.connect(path)) as conn, conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        present = {row[0] for row in conn.execute("SELECT id FROM lexigram_jobs")}
    # Gone = acked (perhaps just before the kill, unreported); never a job it did not lease.
    assert not committed - leased - present, "an enqueue the writer was told of is missing"
    assert not acked & present, "a job whose ack returned True is still in the queue"
    queue = SQLiteTaskQueue(path, queue_name="w")
    try:
        assert await queue.count("w") == len(present)
    finally:
        await queue.close()


SUICIDE_APP = """\
import os
import signal

from lexigram.tasks import task


@task
def suicide() -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # at once: before any later commit could land
"""


def test_a_job_that_kills_its_worker_at_once_is_dead_lettered_as_a_crash_loop(
    tmp_path: Path,
) -> None:
    # Each lease raises the job's delivery count; the lease is committed before the job
    # starts, so the count survives the kill and `max_deliveries` (5) ends the loop.
    (tmp_path / "suicide_app.py").write_text(SUICIDE_APP)
    config = tmp_path / "tasks.yaml"
    config.write_text(
        "tasks:\n"
        "  backend:\n"
        f'    url: "sqlite:///{tmp_path / "loop.db"}"\n'
        "    options: {visibility_timeout: 0.5}\n"
    )
    cli = str(Path(sys.executable).with_name("lexigram-tasks"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def command(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - our own command, fixed arguments
            [cli, *args, "--config", str(config)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    enqueued = command("enqueue", "suicide")
    assert enqueued.returncode == 0, enqueued.stderr
    codes: list[int] = []
    for _ in range(8):  # 5 deliveries die; the 6th hand-out dead-letters it
        codes.append(command("worker", "suicide_app", "--burst").returncode)
        if codes[-1] == 0:
            break
    assert codes[:-1] == [-signal.SIGKILL] * (len(codes) - 1), codes
    assert codes[-1] == 0, codes
    listed = command("dlq", "list", "--json")
    [record] = json.loads(listed.stdout)["jobs"]
    assert record["reason"] == "crash_loop"
    assert len(codes) - 1 == 5  # the deliveries that died, each one counted
