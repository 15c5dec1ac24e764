"""A producer killed between claiming an idempotency key and publishing its job (a script).

Usage: python claim_and_die.py AMQP_URL REDIS_URL QUEUE KEY_PREFIX KEY

Admits a job with idempotency key KEY on the RabbitMQ queue (its claim and its job-state
record go to the shared Redis store), prints ``claimed <job id>``, and ends the process
at once, as a SIGKILL between the claim and the publish would: nothing reaches the broker.
"""

from __future__ import annotations

import asyncio
import os
import sys

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue
from lexigram.tasks.backends.redis import RedisCacheBackend


async def main(argv: list[str]) -> None:
    amqp_url, redis_url, queue_name, prefix, key = argv
    store = RedisCacheBackend(redis_url, key_prefix=prefix)
    queue = RabbitMQTaskQueue(amqp_url, queue_name, state_store=store, publish_timeout=1.0)
    job = Job(name="step", idempotency_key=key)
    admitted = await queue._publisher._admit(job)  # the claim and record, not the publish
    assert isinstance(admitted, tuple), admitted
    sys.stdout.write(f"claimed {job.id}\n")
    sys.stdout.flush()
    os._exit(0)  # no publish, no cleanup: the process is gone


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
