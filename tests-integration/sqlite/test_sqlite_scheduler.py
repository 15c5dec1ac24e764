"""Three scheduler processes on one SQLite file fire an every-second cron once per occurrence.

Each process has its own queue and scheduler-store objects (its own connection); they
share only the file, as three deployments on one machine would. The consumer acks
each job as soon as it is delivered, so a scheduler that enqueues an occurrence after
another's copy finished must still be refused: the occurrence's identity is its
idempotency key (`fire_key`), held after the ack.

The processes start their schedulers together once all three are up (`start_together`),
and catch up missed occurrences (``misfire_policy="all"``), so a loaded machine that
starts one late or pauses all three leaves no hole in the occurrences they cover.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.sqlite import SQLiteTaskQueue
from lexigram.tasks.scheduling import fire_key

pytestmark = [pytest.mark.slow]

StartTogether = Callable[..., Awaitable[list[asyncio.subprocess.Process]]]

SCRIPT = Path(__file__).with_name("scheduler_process.py")
WINDOW = 5.0


async def test_three_scheduler_processes_fire_each_occurrence_exactly_once(
    tmp_path: Path, start_together: StartTogether
) -> None:
    path = str(tmp_path / "cron.db")
    consumer = SQLiteTaskQueue(path, queue_name="cron")
    procs = await start_together(SCRIPT, [path, "cron", str(WINDOW)], 3)
    delivered: list[Job] = []
    try:
        outputs = asyncio.gather(*(proc.communicate() for proc in procs))
        while not outputs.done():
            for job in await consumer.dequeue_batch(100, timeout=0.5):
                delivered.append(job)
                assert await consumer.ack(job.id, lease_token=job.lease_token)
        results = await outputs
        delivered.extend(await consumer.dequeue_batch(1000))
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await consumer.close()

    assert [proc.returncode for proc in procs] == [0, 0, 0]
    attempts = Counter(key for out, _ in results for key in json.loads(out))
    keys = [job.idempotency_key for job in delivered]
    fire_times = sorted(int(job.metadata["fire_time"]) for job in delivered)
    # Exactly once: no duplicate occurrence and no gap, over the whole window.
    assert len(keys) == len(set(keys))
    assert fire_times == list(range(fire_times[0], fire_times[-1] + 1))
    assert len(fire_times) >= WINDOW - 1
    # Every occurrence was attempted by several processes, and each landed once.
    assert set(attempts) == set(keys)
    assert max(attempts.values()) == 3
    for job in delivered:
        assert job.idempotency_key == fire_key("every-second", job.metadata["fire_time"])
