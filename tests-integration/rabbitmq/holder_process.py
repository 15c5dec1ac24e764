"""A worker that holds one job and heartbeats it until killed (run as a script).

Usage: python holder_process.py AMQP_URL REDIS_URL QUEUE KEY_PREFIX LEASE_SECONDS

Leases one job from the RabbitMQ queue with a shared Redis job-state store, prints
``held <job id>``, then renews the lease every third of it, as a worker running a
long job does, until the test SIGKILLs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue
from lexigram.tasks.backends.redis import RedisCacheBackend


async def main(argv: list[str]) -> None:
    amqp_url, redis_url, queue_name, prefix, lease = argv[0], argv[1], argv[2], argv[3], argv[4]
    store = RedisCacheBackend(redis_url, key_prefix=prefix)
    queue = RabbitMQTaskQueue(
        amqp_url, queue_name, visibility_timeout=float(lease), state_store=store
    )
    jobs: list = []
    while not jobs:
        jobs = await queue.dequeue_batch(1, timeout=5.0)
    job = jobs[0]
    sys.stdout.write(f"held {job.id}\n")
    sys.stdout.flush()
    beat = asyncio.Event()  # never set: the heartbeat runs until the process is killed
    while await queue.extend_lease(job.id, lease_token=job.lease_token):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(beat.wait(), float(lease) / 3)


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main(sys.argv[1:6]))
