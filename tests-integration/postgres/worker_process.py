"""A worker process for the crash and restart tests (run as a script, not collected).

Usage: python worker_process.py DSN SCHEMA QUEUE CONCURRENCY LEASE_SECONDS HANDLER_SECONDS

Runs a `WorkerPool` (one worker, CONCURRENCY jobs at once) on the Postgres queue. The
handler ``record(key)`` counts its start in ``<schema>.completions`` (one row per key),
sleeps HANDLER_SECONDS (so jobs are in flight when the process is killed), then counts
its completion. SIGTERM stops it gracefully; the tests also SIGKILL it.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import asyncpg

from lexigram.tasks.backends.postgres import PostgresTaskQueue
from lexigram.tasks.config import TaskWorkerConfig
from lexigram.tasks.execution import WorkerPool


async def main(argv: list[str]) -> None:
    dsn, schema, queue_name = argv[:3]
    concurrency, lease, pause = int(argv[3]), float(argv[4]), float(argv[5])
    records = await asyncpg.create_pool(dsn, min_size=1, max_size=concurrency)
    table = f'"{schema}".completions'
    start_sql = (
        f"INSERT INTO {table} (job_key, starts, runs) VALUES ($1, 1, 0) "  # noqa: S608
        "ON CONFLICT (job_key) DO UPDATE SET starts = completions.starts + 1"
    )
    done_sql = f"UPDATE {table} SET runs = runs + 1 WHERE job_key = $1"  # noqa: S608

    async def record(key: str) -> None:
        await records.execute(start_sql, key)
        await asyncio.sleep(pause)  # the job's "work"
        await records.execute(done_sql, key)

    queue = PostgresTaskQueue(
        dsn=dsn, schema=schema, queue_name=queue_name, visibility_timeout=lease, poll_interval=1.0
    )
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
    await records.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:7]))
