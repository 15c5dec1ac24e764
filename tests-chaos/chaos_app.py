"""The tiny application the chaos workers and schedulers run (``lexigram-tasks worker chaos_app``).

Every run of a job appends lines to the file ``$CHAOS_RESULTS`` (one ``O_APPEND`` write per
line, so lines of concurrent processes never interleave, and a line written before a SIGKILL
stays: the file is the side channel that outlives every fault, never the broker under test):

``start KEY PID TIME`` when the handler begins, ``done KEY PID TIME`` when it returns.
``tick`` (an every-second ``@scheduled`` task) writes ``tick FIRE_TIME PID TIME``: its
occurrence, so a twice-enqueued occurrence shows as two lines with one FIRE_TIME.

``$CHAOS_PAUSE`` is how long ``record`` "works" (seconds), so a SIGKILL meets jobs in flight.
"""

from __future__ import annotations

import asyncio
import os
import time

from lexigram.contracts.tasks import Job
from lexigram.tasks import INJECTED, scheduled, task

RESULTS = os.environ.get("CHAOS_RESULTS", "chaos-results.log")
PAUSE = float(os.environ.get("CHAOS_PAUSE", "0.05"))


def _append(line: str) -> None:
    fd = os.open(RESULTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@task(max_retries=50)
async def record(key: str) -> None:
    """Record the start and the end of this run of job `key`."""
    pid = os.getpid()
    _append(f"start {key} {pid} {time.time():.6f}\n")
    await asyncio.sleep(PAUSE)
    _append(f"done {key} {pid} {time.time():.6f}\n")


@scheduled("* * * * * *")
async def tick(job: Job = INJECTED) -> None:
    """Record which occurrence of the every-second schedule this run is.

    The worker injects the job being run; its metadata names the occurrence.
    """
    fire = job.metadata.get("fire_time")
    _append(f"tick {fire} {os.getpid()} {time.time():.6f}\n")
