"""A scheduler process for test_postgres_scheduler.py (run as a script, not collected).

Usage: python scheduler_process.py DSN SCHEMA QUEUE NAMESPACE DURATION

Schedules an every-second cron under a fixed schedule id on a Postgres scheduler
store, prints ``ready``, reads from stdin the wall-clock time at which all the processes
start (the test's `start_together`), runs for DURATION seconds enqueueing on the Postgres
queue, then prints the JSON list of the idempotency keys it attempted.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from lexigram.contracts.tasks import Job, JobTemplate, TaskBackendSpec
from lexigram.tasks.backends.postgres import PostgresTaskQueue, backend
from lexigram.tasks.scheduling import TaskScheduler

SCHEDULE_ID = "every-second"


async def main(argv: list[str]) -> None:
    dsn, schema, queue_name, namespace = argv[:4]
    duration = float(argv[4])
    spec = TaskBackendSpec(url=dsn, options={"schema": schema, "namespace": namespace})
    store = backend.create_scheduler_store(spec)
    queue = PostgresTaskQueue(dsn=dsn, schema=schema, queue_name=queue_name)
    attempted: list[str | None] = []

    async def enqueue(job: Job) -> Any:
        attempted.append(job.idempotency_key)
        return await queue.enqueue(job)

    # "all": a stall of every process at once (a loaded machine) is caught up, not coalesced.
    scheduler = TaskScheduler(check_interval=1.0, store=store, misfire_policy="all")
    await scheduler.schedule_job(JobTemplate(name="tick"), "* * * * * *", SCHEDULE_ID)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    start_at = float(await asyncio.to_thread(sys.stdin.readline))
    await asyncio.sleep(max(0.0, start_at - time.time()))  # line up with the other processes
    await scheduler.start_scheduler(enqueue)
    await asyncio.sleep(duration)  # the observation window
    await scheduler.stop_scheduler()
    await queue.close()
    await store.close()
    sys.stdout.write(json.dumps(attempted) + "\n")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:6]))
