"""A worker process for the crash and broker-restart tests (run as a script, not collected).

Usage: python worker_process.py AMQP_URL REDIS_URL QUEUE PREFIX CONCURRENCY HANDLER_SECONDS

Runs a `WorkerPool` (one worker, CONCURRENCY jobs at once) on the RabbitMQ queue. The
handler ``record(key)`` counts its start in the Redis hash ``PREFIX:starts``, sleeps
HANDLER_SECONDS (so jobs are in flight when the process is killed), then counts its
completion in ``PREFIX:runs``. It prints ``ready`` once consuming; SIGTERM stops it
gracefully, and the tests also SIGKILL it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import redis.asyncio as aioredis

from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue
from lexigram.tasks.config import TaskWorkerConfig
from lexigram.tasks.execution import WorkerPool


async def main(argv: list[str]) -> None:
    amqp_url, redis_url, queue_name, prefix = argv[:4]
    concurrency, pause = int(argv[4]), float(argv[5])
    recorder = aioredis.Redis.from_url(redis_url)

    async def record(key: str) -> None:
        await recorder.hincrby(f"{prefix}:starts", key, 1)
        await asyncio.sleep(pause)  # the job's "work"
        await recorder.hincrby(f"{prefix}:runs", key, 1)

    queue = RabbitMQTaskQueue(amqp_url, queue_name, visibility_timeout=2.0, reconnect_interval=0.5)
    await queue.connect()
    config = TaskWorkerConfig(max_concurrent_tasks=concurrency, poll_interval=1.0)
    pool = WorkerPool(queue, {"record": record}, size=1, config=config)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await pool.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await stop.wait()
    await pool.stop(drain=True, timeout=10.0)
    await queue.close()
    await recorder.aclose()


if __name__ == "__main__":
    # Reconnect chatter from aio-pika is expected in these tests; keep stderr readable.
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main(sys.argv[1:7]))
