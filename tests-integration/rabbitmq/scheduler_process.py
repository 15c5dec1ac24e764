"""A cron scheduler process for the exactly-once cron test (run as a script, not collected).

Usage: python scheduler_process.py AMQP_URL QUEUE SECONDS BROKER_IDEMPOTENCY

Schedules ``tick`` every second under one schedule id (as every scheduler process of
an app does), enqueues each occurrence on the RabbitMQ queue with the default options
(no shared store), prints ``ready`` once running and exits after SECONDS.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from lexigram.contracts.tasks import JobTemplate
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue
from lexigram.tasks.scheduling import TaskScheduler


async def main(argv: list[str]) -> None:
    amqp_url, queue_name, seconds, claims = argv[0], argv[1], float(argv[2]), argv[3]
    queue = RabbitMQTaskQueue(amqp_url, queue_name, broker_idempotency=claims == "1")
    await queue.connect()
    scheduler = TaskScheduler(check_interval=0.2)
    await scheduler.schedule_job(JobTemplate(name="tick"), "* * * * * *", "cli:tick")
    await scheduler.start_scheduler(queue.enqueue)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.sleep(seconds)
    await scheduler.stop_scheduler()
    await queue.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main(sys.argv[1:5]))
