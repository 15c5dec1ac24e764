"""How fast does this broker take persistent, confirmed messages, with no framework involved?

Publishes pre-built 455-byte messages (the size of a no-op job envelope) with the RabbitMQ
backend's bulk publisher alone, 1,000 per call, into one durable queue per variant of
the queue arguments, and prints the median rate of each. It tells the broker's own
limit apart from the client's: `rabbitmq_bench.py`'s W1 bulk cannot beat the row that
matches the backend's queue arguments (``prio10-lazy`` by default).

Usage (the RabbitMQ benchmark venv, see README.md):
    benchmarks/.venv-rabbitmq/bin/python benchmarks/rabbitmq_ceiling.py [--n 20000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

import aiormq

from lexigram.tasks.backends.rabbitmq._bulk import BulkPublisher
from lexigram.tasks.backends.rabbitmq._frames import Outgoing

BASE: dict[str, Any] = {"x-queue-version": 2, "x-dead-letter-exchange": "ceiling.dlx"}
VARIANTS: dict[str, tuple[dict[str, Any], int | None]] = {
    "prio10-lazy": ({**BASE, "x-max-priority": 10, "x-queue-mode": "lazy"}, 0),
    "prio10-default": ({**BASE, "x-max-priority": 10, "x-queue-mode": "default"}, 0),
    "noprio-lazy": ({**BASE, "x-queue-mode": "lazy"}, None),
    "noprio-default": ({**BASE, "x-queue-mode": "default"}, None),
}
BODY = b"x" * 455
PER_CALL = 1000


async def measure(channel: Any, arguments: dict[str, Any], priority: int | None, n: int) -> float:
    """Publish `n` messages into a fresh queue with `arguments`; return messages/s."""
    name = f"lexigram-ceiling-{uuid.uuid4().hex[:8]}"
    await channel.queue_declare(name, durable=True, arguments=arguments)
    try:
        publisher = BulkPublisher(channel, window=256)
        messages = [Outgoing(BODY, name, str(uuid.uuid4()), priority) for _ in range(n)]
        started = time.perf_counter()
        for first in range(0, n, PER_CALL):
            outcomes = await publisher.publish(
                messages[first : first + PER_CALL], time.monotonic() + 60
            )
            if len(set(outcomes)) != 1:
                msg = f"not every message was confirmed: {sorted({o.value for o in outcomes})}"
                raise RuntimeError(msg)
        return n / (time.perf_counter() - started)
    finally:
        await channel.queue_delete(name)


async def main() -> None:
    """Run every variant --runs times, interleaved, and print the medians."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    connection = await aiormq.connect(args.url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for run in range(args.runs):
            for name, (arguments, priority) in VARIANTS.items():
                rate = await measure(channel, arguments, priority, args.n)
                rates[name].append(rate)
                print(f"run {run + 1} {name}: {rate:,.0f} messages/s", flush=True)
    finally:
        await connection.close()
    print()
    print("| queue arguments | persistent confirmed messages/s (median) |")
    print("|---|---:|")
    for name, values in rates.items():
        print(f"| {name} | {statistics.median(values):,.0f} |")


if __name__ == "__main__":
    asyncio.run(main())
