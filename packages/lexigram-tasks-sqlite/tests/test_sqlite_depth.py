"""What a take and a count read as a queue grows, and the schema 4 file."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from lexigram.contracts.tasks import Job, JobStatus
from lexigram.tasks.backends.sqlite import SCHEMA_VERSION, SQLiteTaskQueue
from lexigram.tasks.backends.sqlite._database import Database
from lexigram.tasks.backends.sqlite._reader import Reader
from lexigram.tasks.backends.sqlite._sql import pick


def _jobs_indexes(path: str) -> set[str]:
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'lexigram_jobs'"
        ).fetchall()
    return {row[0] for row in rows}


async def test_a_file_of_schema_3_loses_the_due_index_and_keeps_its_jobs(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    queue = SQLiteTaskQueue(path)
    for priority in (0, 5, 1):
        await queue.enqueue(Job(name=f"p{priority}", priority=priority))
    await queue.close()
    # The file as schema 3 left it: the index, and no record of migration 4.
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE INDEX lexigram_jobs_due ON lexigram_jobs (queue, available_at)")
        conn.execute("DELETE FROM lexigram_schema WHERE version > 3")
    assert "lexigram_jobs_due" in _jobs_indexes(path)

    queue = SQLiteTaskQueue(path)
    try:
        taken = await queue.dequeue_batch(10)
    finally:
        await queue.close()
    assert [job.name for job in taken] == ["p5", "p1", "p0"]
    assert "lexigram_jobs_due" not in _jobs_indexes(path)
    with closing(sqlite3.connect(path)) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM lexigram_schema")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def _take_steps(queue: SQLiteTaskQueue, limit: int) -> tuple[int, int, float | None]:
    """Rows a take finds and the SQLite VM instructions it runs (in hundreds)."""
    conn = sqlite3.connect(queue.path)
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn.set_progress_handler(count, 100)
    try:
        rows, next_due = pick(conn, queue.queue_name, time.time(), limit)
    finally:
        conn.close()
    return len(rows), steps, next_due


async def test_a_take_does_not_read_the_rows_that_are_not_due(tmp_path: Path) -> None:
    queue = SQLiteTaskQueue(str(tmp_path / "q.db"))
    later = time.time() + 3600
    try:
        await queue.enqueue_many([Job(name="ready", priority=0) for _ in range(3)])
        await queue.enqueue(Job(name="soon", priority=0, scheduled_at=later - 1800))
        steps = []
        for _ in range(2):
            # Delayed jobs of a higher priority sit before the ready ones in delivery
            # order; a take that filtered them one by one would grow with their number.
            await queue.enqueue_many(
                [Job(name="delayed", priority=9, scheduled_at=later) for _ in range(2_000)]
            )
            found, ran, _ = _take_steps(queue, 10)
            assert found == 3
            steps.append(ran)
        assert steps[1] == steps[0]

        taken = await queue.dequeue_batch(10)
        assert [job.name for job in taken] == ["ready"] * 3
        for job in taken:
            assert await queue.ack(job.id, lease_token=job.lease_token)
        assert await queue.get_task_count() == 4_001  # an awaited call: the acks committed
        # Nothing due now: the bound is the earliest row of any level (here the lower one).
        found, _, next_due = _take_steps(queue, 10)
        assert found == 0
        assert next_due is not None
        assert abs(next_due - (later - 1800)) < 1
    finally:
        await queue.close()


async def test_a_take_fills_its_batch_across_priority_levels(tmp_path: Path) -> None:
    queue = SQLiteTaskQueue(str(tmp_path / "q.db"))
    try:
        await queue.enqueue_many(
            [
                Job(name=f"p{priority}-{n}", priority=priority)
                for priority in (1, 7, 3)
                for n in range(2)
            ]
        )
        await queue.enqueue(Job(name="later", priority=7, scheduled_at=time.time() + 3600))
        taken = await queue.dequeue_batch(5)
        assert [job.name for job in taken] == ["p7-0", "p7-1", "p3-0", "p3-1", "p1-0"]
        rest = await queue.dequeue_batch(5)
        assert [job.name for job in rest] == ["p1-1"]
    finally:
        await queue.close()


async def test_each_row_of_a_take_is_leased_once_whatever_the_batch(tmp_path: Path) -> None:
    queue = SQLiteTaskQueue(str(tmp_path / "q.db"))
    try:
        await queue.enqueue_many([Job(name="j") for _ in range(253)])
        # More rows than one lease statement takes, then a short chunk (padded).
        taken = await queue.dequeue_batch(250) + await queue.dequeue_batch(3)
        assert len({job.id for job in taken}) == 253
        assert {job.delivery_count for job in taken} == {1}
        assert await queue.dequeue_batch(10) == []
        assert await queue.get_task_count() == 0  # an awaited call: the leases committed
        with closing(sqlite3.connect(queue.path)) as conn:
            counts = conn.execute(
                "SELECT delivery_count, count(*) FROM lexigram_jobs "
                "WHERE lease_token IS NOT NULL GROUP BY delivery_count"
            ).fetchall()
        assert counts == [(1, 253)]
    finally:
        await queue.close()


async def test_a_count_reads_off_the_loop_and_sees_the_ack_just_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readers: list[int] = []
    read = Reader.run

    def watched(self: Reader, fn: Callable[[sqlite3.Connection], int]) -> int:
        readers.append(threading.get_ident())
        return read(self, fn)

    monkeypatch.setattr(Reader, "run", watched)
    queue = SQLiteTaskQueue(str(tmp_path / "count.db"), queue_name="q")
    try:
        for _ in range(3):
            await queue.enqueue(Job(name="noop"))
        job = await queue.dequeue()
        assert job is not None
        # The ack runs in a transaction that commits a loop turn later; the count's
        # own connection sees it all the same.
        assert await queue.ack(job.id, lease_token=job.lease_token)
        assert await queue.count("q") == 2
        assert await queue.count("q", JobStatus.RUNNING) == 0
    finally:
        await queue.close()
    assert readers
    assert threading.get_ident() not in readers


async def test_a_long_read_apart_leaves_the_loop_running(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "long.db"))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    def slow_count(conn: sqlite3.Connection) -> int:
        time.sleep(0.3)  # a count over a million rows takes about this long
        return int(conn.execute("SELECT count(*) FROM lexigram_jobs").fetchone()[0])

    ticker = asyncio.create_task(tick())
    try:
        assert await db.read_apart(slow_count, what="count jobs") == 0
    finally:
        ticker.cancel()
        await db.close()
    assert ticks >= 10  # a blocked loop would have ticked once at most
