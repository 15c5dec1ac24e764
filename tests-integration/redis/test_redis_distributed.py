"""Coordination across processes on Redis: cron fires once, locks exclude, limits hold.

Each test runs real child processes (``redis_proc.py``) that share nothing but Redis.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from lexigram.contracts.tasks import Job, JobTemplate
from lexigram.tasks.backends.redis import RedisSchedulerStore, RedisTaskQueue
from lexigram.tasks.scheduling import TaskScheduler, fire_key

pytestmark = [pytest.mark.redis, pytest.mark.slow]

Spawn = Callable[..., Awaitable[object]]


async def test_three_scheduler_processes_fire_each_second_once(
    spawn: Spawn, redis_url: str, key_prefix: str
) -> None:
    store = RedisSchedulerStore(redis_url, key_prefix=key_prefix)
    queue = RedisTaskQueue(redis_url, "cron", key_prefix=key_prefix)
    recorder = aioredis.Redis.from_url(redis_url)
    try:
        # One process defines the schedule; the three scheduler processes restore it.
        definer = TaskScheduler(check_interval=1.0, store=store)
        schedule_id = await definer.schedule_job(JobTemplate(name="tick"), "* * * * * *")
        schedulers = [await spawn("scheduler", "--queue", "cron") for _ in range(3)]
        for scheduler in schedulers:
            await scheduler.ready()  # type: ignore[attr-defined]
        started = time.time()
        await asyncio.sleep(5.0)  # the observation window
        for scheduler in schedulers:
            assert await scheduler.stop() == 0  # type: ignore[attr-defined]
        ended = time.time()

        attempts = [
            a.decode().split(":", 1) for a in await recorder.lrange(f"{key_prefix}:attempts", 0, -1)
        ]
        by_key = Counter(key for _, key in attempts)
        processes = {pid for pid, _ in attempts}
        jobs: list[Job] = await queue.dequeue_batch(1000)
        fire_times = sorted(int(job.metadata["fire_time"]) for job in jobs)

        assert len(processes) == 3, "not every scheduler process fired"
        # Each occurrence: attempted by several processes, enqueued once.
        assert len(jobs) == len(by_key), f"{len(jobs)} jobs for {len(by_key)} occurrences"
        assert len(set(fire_times)) == len(fire_times)
        assert all(times >= 1 for times in by_key.values())
        # One per second, no gap, covering the window.
        assert fire_times == list(range(fire_times[0], fire_times[-1] + 1))
        assert len(fire_times) >= int(ended - started) - 1
        assert {job.idempotency_key for job in jobs} == {
            fire_key(schedule_id, t) for t in fire_times
        }
        print(  # noqa: T201 - evidence, shown with -s
            f"\nschedulers: {len(fire_times)} occurrences in {ended - started:.1f} s, "
            f"{len(attempts)} enqueue attempts by 3 processes, {len(jobs)} jobs"
        )
    finally:
        await queue.clear()
        await queue.close()
        await store.close()
        await recorder.aclose()


async def test_two_processes_never_hold_one_lock_together(
    spawn: Spawn, redis_url: str, key_prefix: str
) -> None:
    lockers = [await spawn("locker") for _ in range(2)]
    for locker in lockers:
        await locker.ready()  # type: ignore[attr-defined]
    await asyncio.sleep(3.0)  # let them compete
    for locker in lockers:
        assert await locker.stop() == 0  # type: ignore[attr-defined]
    recorder = aioredis.Redis.from_url(redis_url)
    try:
        held = [h.decode().split(":") for h in await recorder.lrange(f"{key_prefix}:held", 0, -1)]
    finally:
        await recorder.aclose()
    intervals = sorted(
        (float(start), float(end), pid, int(inside)) for pid, inside, start, end in held
    )
    per_process = Counter(pid for _, _, pid, _ in intervals)
    assert len(per_process) == 2, f"only {per_process} took the lock"
    assert min(per_process.values()) >= 10
    assert all(inside == 1 for *_, inside in intervals), "two holders were inside together"
    for (_, end, _, _), (start, _, _, _) in itertools.pairwise(intervals):
        assert end <= start, "two lock holders' critical sections overlapped"
    print(f"\nlock: {dict(per_process)} acquisitions, no overlap")  # noqa: T201


async def test_global_rate_limit_holds_across_three_worker_processes(
    spawn: Spawn, redis_url: str, key_prefix: str
) -> None:
    rate = 50
    queue = RedisTaskQueue(redis_url, "limited", key_prefix=key_prefix)
    recorder = aioredis.Redis.from_url(redis_url)
    try:
        jobs = [Job(name="work", kwargs={"jid": f"j{index}"}) for index in range(600)]
        assert all(r.is_ok() for r in await queue.enqueue_many(jobs))
        args = ("--queue", "limited", "--rate", str(rate), "--burst", "5", "--concurrency", "20")
        workers = [await spawn("worker", *args) for _ in range(3)]
        for worker in workers:
            await worker.ready()  # type: ignore[attr-defined]
        await asyncio.sleep(7.0)  # the measurement window (plus the start)
        for worker in workers:
            await worker.stop()  # type: ignore[attr-defined]
        events = [
            e.decode().split(":") for e in await recorder.lrange(f"{key_prefix}:events", 0, -1)
        ]
        finished = sorted(float(e[3]) for e in events if e[2] == "d")
        by_process = Counter(e[0] for e in events if e[2] == "d")
        # Steady state: skip the first second (the bucket's initial burst) and measure 5 s.
        start = finished[0] + 1.0
        window = [t for t in finished if start <= t < start + 5.0]
        measured = len(window) / 5.0
        print(  # noqa: T201 - evidence, shown with -s
            f"\nrate limit: {measured:.1f} jobs/s measured over 5 s (limit {rate}/s), "
            f"per process {dict(by_process)}"
        )
        assert len(by_process) == 3, "not every worker process ran jobs"
        assert abs(measured - rate) <= rate * 0.10
    finally:
        await queue.clear()
        await queue.close()
        await recorder.aclose()
