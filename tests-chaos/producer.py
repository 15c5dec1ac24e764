"""A producer process for the ``producer-kill`` scenario (started and SIGKILLed by run.py).

Usage: python producer.py KIND URL QUEUE PREFIX RESULTS COUNT

Enqueues COUNT ``record`` jobs keyed ``PREFIX-00000``, ``PREFIX-00001``, ... in batches of
10 spread over about 2 s (so that the SIGKILL meets it mid-write), and after each batch
appends ``acked KEY`` for every job whose enqueue returned Ok (one ``O_APPEND`` write per
batch). A job of a batch that was being written when the SIGKILL came may be stored without
its ``acked`` line: it is not counted as acknowledged.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import open_queue

from lexigram.contracts.tasks import Job

BATCH = 10
SPREAD = 2.0  # seconds the COUNT jobs are spread over


async def main(argv: list[str]) -> None:
    """Enqueue COUNT jobs in batches (unless killed first); arguments as in the docstring."""
    kind, url, queue_name, prefix, results, count = argv[:6]
    total = int(count)
    pause = SPREAD * BATCH / max(total, 1)
    queue = open_queue(kind, url, queue_name)
    fd = os.open(results, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    n = 0
    while n < total:
        jobs = [
            Job(name="record", args=(f"{prefix}-{n + i:05d}",), max_retries=50)
            for i in range(BATCH)
        ]
        n += BATCH
        outcomes = await queue.enqueue_many(jobs)
        acked = [str(job.args[0]) for job, r in zip(jobs, outcomes, strict=True) if r.is_ok()]
        os.write(fd, "".join(f"acked {key}\n" for key in acked).encode())
        await asyncio.sleep(pause)
    await queue.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
