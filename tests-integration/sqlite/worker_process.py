"""A worker process for the SQLite crash tests (run as a script, not collected).

Usage: python worker_process.py PATH QUEUE CONCURRENCY LEASE_SECONDS HANDLER_SECONDS

Runs a `WorkerPool` (one worker, CONCURRENCY jobs at once) on the SQLite queue. The
handler ``record(key)`` writes a start row (key, pid) to the ``crash_runs`` table of
the same file, sleeps HANDLER_SECONDS (so jobs are in flight when the process is
killed), then marks that row completed. SIGTERM stops it gracefully; the tests
SIGKILL it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys

from lexigram.tasks.backends.sqlite import SQLiteTaskQueue
from lexigram.tasks.config import TaskWorkerConfig
from lexigram.tasks.execution import WorkerPool


async def main(argv: list[str]) -> None:
    path, queue_name = argv[:2]
    concurrency, lease, pause = int(argv[2]), float(argv[3]), float(argv[4])
    queue = SQLiteTaskQueue(path, queue_name=queue_name, visibility_timeout=lease)
    pid = os.getpid()

    async def record(key: str) -> None:
        def start(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO crash_runs (job_key, pid, completed) VALUES (?, ?, 0)", (key, pid)
            )
            return int(cur.lastrowid or 0)

        row = await queue.database.call(start)
        await asyncio.sleep(pause)  # the job's "work"

        def done(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE crash_runs SET completed = 1 WHERE rowid = ?", (row,))

        await queue.database.call(done)

    config = TaskWorkerConfig(max_concurrent_tasks=concurrency, poll_interval=1.0)
    pool = WorkerPool(queue, {"record": record}, size=1, config=config)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await pool.start()
    sys.stdout.write("started\n")
    sys.stdout.flush()
    await stop.wait()
    await pool.stop(drain=True, timeout=10.0)
    await queue.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:6]))
