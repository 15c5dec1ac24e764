"""A worker process for the fault-injection runs (started by run_chaos.py, not collected).

Usage: python chaos_worker.py KIND URL QUEUE LEASE_SECONDS RESULTS_FILE [HANDLER_SECONDS]

KIND is ``redis``, ``postgres`` (URL is a DSN; the schema is named by the queue) or
``sqlite`` (URL is a file path). Runs a `WorkerPool` (one worker, four jobs at once). The
handler ``record(jid)`` sleeps HANDLER_SECONDS, then appends ``done <jid> <pid> <time>`` to
RESULTS_FILE (one O_APPEND write, so lines from several processes never interleave). Every
job the worker dead-letters appends ``dlq <jid> <pid> <time>``. Writes ``started`` on stdout
once running; SIGTERM stops it gracefully; the runner also SIGKILLs it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import Any

from lexigram.contracts.tasks import Job, TaskQueueProtocol
from lexigram.tasks.config import TaskWorkerConfig
from lexigram.tasks.dlq import DeadLetterQueue
from lexigram.tasks.execution import TaskWorkerServices, WorkerPool


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


class RecordingDLQ(DeadLetterQueue):
    """The in-process DLQ, plus one line in the results file per dead-lettered job."""

    def __init__(self, results: str) -> None:
        super().__init__()
        self.results = results

    def add(self, job: Job, error: str, traceback: str | None = None, **metadata: Any) -> None:
        """Record the job id, then keep it as the plain DLQ does."""
        reason = " ".join(error.split())[:120]
        _append(self.results, f"dlq {job.id} {os.getpid()} {time.time():.6f} {reason}\n")
        super().add(job, error, traceback, **metadata)


def open_queue(kind: str, url: str, queue_name: str, lease: float) -> TaskQueueProtocol:
    """A queue handle of backend `kind` (the runner uses the same one as a producer)."""
    if kind == "redis":
        from lexigram.tasks.backends.redis import RedisTaskQueue

        return RedisTaskQueue(url, queue_name, key_prefix=queue_name, visibility_timeout=lease)
    if kind == "postgres":
        from lexigram.tasks.backends.postgres import PostgresTaskQueue

        return PostgresTaskQueue(
            dsn=url,
            schema=queue_name,
            queue_name=queue_name,
            visibility_timeout=lease,
            poll_interval=0.5,
        )
    if kind == "sqlite":
        from lexigram.tasks.backends.sqlite import SQLiteTaskQueue

        return SQLiteTaskQueue(url, queue_name=queue_name, visibility_timeout=lease)
    msg = f"unknown backend kind {kind!r}: use redis, postgres or sqlite"
    raise SystemExit(msg)


async def main(argv: list[str]) -> None:
    """Run one worker until SIGTERM (arguments as in the module docstring)."""
    kind, url, queue_name, lease_text, results, *rest = argv
    pause = float(rest[0]) if rest else 0.05
    queue = open_queue(kind, url, queue_name, float(lease_text))
    pid = os.getpid()

    async def record(jid: str) -> None:
        await asyncio.sleep(pause)  # the job's "work"
        _append(results, f"done {jid} {pid} {time.time():.6f}\n")

    services = TaskWorkerServices()
    services.dead_letter_queue = RecordingDLQ(results)
    config = TaskWorkerConfig(max_concurrent_tasks=4, poll_interval=0.5)
    pool = WorkerPool(queue, {"record": record}, size=1, config=config, services=services)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await pool.start()
    sys.stdout.write("started\n")
    sys.stdout.flush()
    await stop.wait()
    await pool.stop(drain=True, timeout=10.0)
    await queue.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
