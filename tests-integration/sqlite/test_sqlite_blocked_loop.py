"""A loop blocked right after an ack does not keep the SQLite write lock.

An ack runs at once in a write transaction that commits two loop turns later. A handler
that blocks the loop (sync code that never yields) would hold the file's write lock all
that time, shutting out producers in other processes and the lease keeper's connection:
a watchdog thread commits such a transaction after a moment.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.sqlite import SQLiteTaskQueue

BLOCK = 1.0  # seconds the loop is blocked, far longer than the watchdog's bound


async def test_a_blocked_loop_lets_another_connection_write(tmp_path: Path) -> None:
    path = str(tmp_path / "blocked.db")
    queue = SQLiteTaskQueue(path, queue_name="b")
    try:
        await queue.enqueue_many([Job(name="t"), Job(name="t")])
        jobs = await queue.dequeue_batch(2)
        await queue.count("b")  # the lease is committed; the thread is idle again
        seen: dict[str, float] = {}

        def writer() -> None:
            with closing(sqlite3.connect(path, timeout=BLOCK * 5)) as conn:
                conn.execute("BEGIN IMMEDIATE")
                seen["rows"] = conn.execute("SELECT count(*) FROM lexigram_jobs").fetchone()[0]
                conn.execute("INSERT INTO lexigram_kv VALUES ('n', 'k', 'v', NULL)")
                conn.execute("COMMIT")
                seen["at"] = time.monotonic()

        assert await queue.ack(jobs[0].id, lease_token=jobs[0].lease_token)
        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(BLOCK)  # noqa: ASYNC251 - the point: a handler that blocks the loop
        unblocked = time.monotonic()
        thread.join(BLOCK * 5)
        assert "at" in seen, "the other connection never got the write lock"
        assert seen["at"] < unblocked, "the write lock was held while the loop was blocked"
        assert seen["rows"] == 1  # the ack made before the block was committed for it
        assert await queue.ack(jobs[1].id, lease_token=jobs[1].lease_token)
        assert await queue.count("b") == 0
    finally:
        await queue.close()
