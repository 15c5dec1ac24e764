"""Child processes for the multi-process Redis tests (run as ``python redis_proc.py <mode>``).

Modes:
    worker     a WorkerPool on a RedisTaskQueue; the handler records each start and
               finish in Redis (``<prefix>:events`` list, ``<prefix>:done`` hash)
    scheduler  a TaskScheduler restored from a RedisSchedulerStore, enqueueing into a
               RedisTaskQueue; every enqueue attempt is recorded
    locker     takes one RedisLock over and over and checks nobody else holds it

Every mode writes ``ready`` on stdout once running, and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from typing import Any

import redis.asyncio as aioredis

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.redis import (
    RedisLockManager,
    RedisRateLimiter,
    RedisSchedulerStore,
    RedisTaskQueue,
)
from lexigram.tasks.config import TaskWorkerConfig
from lexigram.tasks.execution import TaskWorkerServices, WorkerPool
from lexigram.tasks.scheduling import TaskScheduler


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    return stop


def _ready() -> None:
    sys.stdout.write("ready\n")
    sys.stdout.flush()


async def run_worker(args: argparse.Namespace) -> None:
    pid = os.getpid()
    recorder = aioredis.Redis.from_url(args.url)
    events, done = f"{args.prefix}:events", f"{args.prefix}:done"

    async def work(jid: str, sleep: float = 0.0) -> None:
        await recorder.rpush(events, f"{pid}:{jid}:s")
        if sleep:
            await asyncio.sleep(sleep)
        async with recorder.pipeline(transaction=False) as pipe:
            pipe.hincrby(done, jid, 1)
            pipe.rpush(events, f"{pid}:{jid}:d:{time.time():.6f}")
            await pipe.execute()

    queue = RedisTaskQueue(
        args.url, args.queue, key_prefix=args.prefix, visibility_timeout=args.lease
    )
    services = TaskWorkerServices()
    if args.rate:
        services.rate_limiter = RedisRateLimiter(
            queue.connector, name="global", rate=args.rate, burst=args.burst, key_prefix=args.prefix
        )
    pool = WorkerPool(
        queue,
        {"work": work},
        size=1,
        config=TaskWorkerConfig(max_concurrent_tasks=args.concurrency, poll_interval=1.0),
        services=services,
    )
    stop = _stop_event()
    await pool.start()
    _ready()
    await stop.wait()
    await pool.stop(drain=False, timeout=5)
    await queue.close()
    await recorder.aclose()


async def run_scheduler(args: argparse.Namespace) -> None:
    recorder = aioredis.Redis.from_url(args.url)
    queue = RedisTaskQueue(args.url, args.queue, key_prefix=args.prefix)
    store = RedisSchedulerStore(args.url, key_prefix=args.prefix)
    scheduler = TaskScheduler(check_interval=1.0, store=store)
    await scheduler.restore_from_store()

    async def enqueue(job: Job) -> Any:
        await recorder.rpush(f"{args.prefix}:attempts", f"{os.getpid()}:{job.idempotency_key}")
        return await queue.enqueue(job)

    stop = _stop_event()
    await scheduler.start_scheduler(enqueue)
    _ready()
    await stop.wait()
    await scheduler.stop_scheduler()
    await queue.close()
    await store.close()
    await recorder.aclose()


async def run_locker(args: argparse.Namespace) -> None:
    pid = os.getpid()
    recorder = aioredis.Redis.from_url(args.url)
    manager = RedisLockManager(args.url, key_prefix=args.prefix)
    holders, log = f"{args.prefix}:holders", f"{args.prefix}:held"
    stop = _stop_event()
    _ready()
    while not stop.is_set():
        lock = manager.acquire("shared", timeout=5)
        if not await lock.acquire_wait(timeout=2):
            continue
        started = time.time()
        # Anyone else inside at the same time would push the counter above 1.
        inside = await recorder.incr(holders)
        await asyncio.sleep(0.002)
        await recorder.decr(holders)
        await recorder.rpush(log, f"{pid}:{inside}:{started:.6f}:{time.time():.6f}")
        await lock.release()
    await manager.close()
    await recorder.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("worker", "scheduler", "locker"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--queue", default="tasks")
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--burst", type=float, default=1.0)
    args = parser.parse_args()
    runner = {"worker": run_worker, "scheduler": run_scheduler, "locker": run_locker}[args.mode]
    asyncio.run(runner(args))


if __name__ == "__main__":
    main()
