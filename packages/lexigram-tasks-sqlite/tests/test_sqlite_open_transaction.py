"""Acks and leases run at once in a transaction committed a turn later (`Database.run_now`)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from pathlib import Path

import pytest_asyncio

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.sqlite import Database, SQLiteOptions, SQLiteTaskQueue
from lexigram.tasks.backends.sqlite._calls import MISSED
from lexigram.tasks.backends.sqlite._open import Checkpointer


@pytest_asyncio.fixture
async def queue(tmp_path: Path) -> AsyncIterator[SQLiteTaskQueue]:
    made = SQLiteTaskQueue(str(tmp_path / "q.db"), queue_name="q")
    await made.count("q")  # opens the connection
    await idle(made.database)
    yield made
    await made.close()


async def idle(db: Database) -> None:
    """Wait until the database thread has settled its calls (the loop may then run them)."""
    for _ in range(1000):
        if not db._queued:
            return
        await asyncio.sleep(0.001)
    msg = "the database thread never settled its calls"
    raise AssertionError(msg)


def rows_seen_elsewhere(path: str) -> int:
    """What another connection (another process) sees committed."""
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT count(*) FROM lexigram_jobs").fetchone()[0])


async def test_an_ack_returns_at_once_and_commits_with_the_next_call(
    queue: SQLiteTaskQueue,
) -> None:
    await queue.enqueue_many([Job(name="t") for _ in range(3)])
    jobs = await queue.dequeue_batch(3)
    await idle(queue.database)
    assert [await queue.ack(job.id, lease_token=job.lease_token) for job in jobs] == [True] * 3
    # Not awaited on a commit: another connection still sees the rows for a moment...
    assert rows_seen_elsewhere(queue.path) == 3
    # ...until the next awaited call of this process, which commits after them.
    assert await queue.count("q") == 0
    assert rows_seen_elsewhere(queue.path) == 0


async def test_the_open_transaction_commits_within_two_loop_turns(queue: SQLiteTaskQueue) -> None:
    await queue.enqueue(Job(name="t"))
    job = await queue.dequeue()
    assert job is not None
    await idle(queue.database)
    assert await queue.ack(job.id, lease_token=job.lease_token)
    assert rows_seen_elsewhere(queue.path) == 1
    for _ in range(3):
        await asyncio.sleep(0)
    assert rows_seen_elsewhere(queue.path) == 0


async def test_a_stale_token_is_still_refused(queue: SQLiteTaskQueue) -> None:
    await queue.enqueue(Job(name="t"))
    job = await queue.dequeue()
    assert job is not None
    assert not await queue.ack(job.id, lease_token="0" * 16)
    assert await queue.ack(job.id, lease_token=job.lease_token)
    assert not await queue.ack(job.id, lease_token=job.lease_token)


async def test_with_the_lock_held_elsewhere_the_ack_waits_for_it(queue: SQLiteTaskQueue) -> None:
    await queue.enqueue(Job(name="t"))
    job = await queue.dequeue()
    assert job is not None
    await queue.count("q")  # the lease is committed
    other = sqlite3.connect(queue.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    acking = asyncio.ensure_future(queue.ack(job.id, lease_token=job.lease_token))
    await asyncio.sleep(0.05)
    assert not acking.done()  # waiting on the database thread, not failing
    other.execute("COMMIT")
    other.close()
    assert await asyncio.wait_for(acking, 10.0) is True
    assert rows_seen_elsewhere(queue.path) == 0


async def test_a_failing_call_rolls_back_and_the_earlier_ones_are_replayed(
    tmp_path: Path,
) -> None:
    db = Database(str(tmp_path / "d.db"))
    try:
        await db.call(lambda conn: conn.execute("CREATE TABLE t (v INTEGER)"))
        await idle(db)

        def add(value: int) -> Callable[[sqlite3.Connection], sqlite3.Cursor]:
            return lambda conn: conn.execute("INSERT INTO t VALUES (?)", (value,))

        def broken(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO no_such_table VALUES (1)")

        assert db.run_now(add(1)) is not MISSED
        assert db.run_now(broken) is MISSED  # the caller then awaits `call`, which raises
        assert db.run_now(add(2)) is MISSED  # the replay is queued: order is kept
        assert await db.call(add(3)) is not None

        def values(conn: sqlite3.Connection) -> list[int]:
            return [row[0] for row in conn.execute("SELECT v FROM t ORDER BY v")]

        assert await db.call(values, write=False) == [1, 3]
    finally:
        await db.close()


async def test_full_synchronous_acks_only_after_their_commit(tmp_path: Path) -> None:
    path = str(tmp_path / "full.db")
    queue = SQLiteTaskQueue(path, queue_name="q", options=SQLiteOptions(synchronous="FULL"))
    try:
        await queue.enqueue(Job(name="t"))
        job = await queue.dequeue()
        assert job is not None
        assert await queue.ack(job.id, lease_token=job.lease_token)
        assert rows_seen_elsewhere(path) == 0
    finally:
        await queue.close()


async def test_close_commits_the_open_transaction(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    queue = SQLiteTaskQueue(path, queue_name="q")
    await queue.enqueue(Job(name="t"))
    job = await queue.dequeue()
    assert job is not None
    assert await queue.ack(job.id, lease_token=job.lease_token)
    await queue.close()
    assert rows_seen_elsewhere(path) == 0


def test_a_checkpoint_lets_the_next_write_start_the_wal_over(tmp_path: Path) -> None:
    path = str(tmp_path / "w.db")
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE t (v BLOB)")
    for _ in range(50):
        writer.execute("INSERT INTO t VALUES (randomblob(3000))")
    checkpointer = Checkpointer(path, writer_lock=threading.Lock())
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        checkpointer._checkpoint(conn)
    writer.execute("INSERT INTO t VALUES (1)")
    # (busy, frames in the WAL, frames copied): the WAL holds the last write only.
    _, frames, _ = writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    writer.close()
    assert frames <= 2


def test_a_transaction_left_open_by_a_finished_loop_is_committed_by_the_next(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "loops.db")
    queue = SQLiteTaskQueue(path, queue_name="q")

    async def ack_then_stop() -> None:
        await queue.enqueue(Job(name="t"))
        await idle(queue.database)
        job = await queue.dequeue()
        assert job is not None
        await idle(queue.database)
        assert await queue.ack(job.id, lease_token=job.lease_token)
        # The loop ends here, before the commit's turn comes round.

    # Not asyncio.run: its shutdown turns the loop a few more times.
    loop = asyncio.new_event_loop()
    loop.run_until_complete(ack_then_stop())
    assert queue.database._open_loop is loop
    loop.close()

    async def count_then_close() -> int:
        try:
            return await asyncio.wait_for(queue.count("q"), 10.0)
        finally:
            await queue.close()

    assert asyncio.run(count_then_close()) == 0
    assert rows_seen_elsewhere(path) == 0
