"""A producer for the SQLite kill-mid-write test (run as a script, not collected).

Usage: python writer_process.py PATH QUEUE SYNCHRONOUS RUN

Enqueues batches of 50 jobs (one transaction each) and acks jobs it leases, as fast as
it can, forever. After each call returns it prints what the database acknowledged:
``enq <first> <last>`` for the job indices of a committed batch (ids
``job-RUN-<index>``), ``ack <job id>`` for an acked delivery, and ``lease <job id>``
before it acks a leased job. An ack returns before its commit, which joins the next
one: an ``enq`` line says that every ack printed before it is committed too. The test
SIGKILLs it at a random moment, mid-write.
"""

from __future__ import annotations

import asyncio
import sys

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.sqlite import SQLiteOptions, SQLiteTaskQueue


async def main(path: str, queue_name: str, synchronous: str, run: str) -> None:
    options = SQLiteOptions(synchronous=synchronous)  # type: ignore[arg-type]
    queue = SQLiteTaskQueue(path, queue_name=queue_name, options=options)
    out = sys.stdout
    index = 0
    await queue.count(queue_name)
    out.write("started\n")
    out.flush()
    while True:
        batch = [
            Job(id=f"job-{run}-{index + n}", name="noop", args=("x" * 200,)) for n in range(50)
        ]
        results = await queue.enqueue_many(batch)
        assert all(result.is_ok() for result in results)
        out.write(f"enq {index} {index + 49}\n")
        index += 50
        out.flush()
        jobs = await queue.dequeue_batch(20)
        # Said before the acks: a job may be gone because its ack committed just
        # before the kill, before "ack" could be printed.
        out.write("".join(f"lease {job.id}\n" for job in jobs))
        out.flush()
        for job in jobs:
            if await queue.ack(job.id, lease_token=job.lease_token):
                out.write(f"ack {job.id}\n")
        out.flush()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
