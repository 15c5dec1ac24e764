"""The floor under W3 on RabbitMQ: enqueue-to-start latency with no framework involved.

`cli_latency.py rabbitmq` compares lexigram's CLI worker (with ``stores: redis://``) with
Dramatiq's. This script takes the frameworks away and times the bare path on this broker
and machine with aiormq alone, so a framework's figure can be read against what the
broker, the client and the extra round trips cost by themselves:

- a producer (this process) publishes persistent messages one at a time, ``--rate`` per
  second, each carrying its send time, with a publisher confirm awaited after each (as
  lexigram's ``enqueue`` does);
- a consumer in a second process (prefetch 100, manual acks) notes ``start - send time``
  when it is about to run the message's "job", then acks it.

Each variant adds one of the costs lexigram's RabbitMQ path has, never any of its code:

- ``queue``: ``plain`` is a durable classic queue declared without arguments (Dramatiq's
  has no version, mode or priorities either, only a dead-letter target; on RabbitMQ
  3.10-3.12 that is the v1 storage), ``backend`` has the
  RabbitMQ backend's default arguments (``x-queue-version: 2``, lazy, ``x-max-priority:
  10``, a dead-letter exchange);
- ``record``: the producer writes a ~400-byte record to Redis (``SET NX EX``) before each
  publish, as the job-state store's ``admit`` does with ``stores:``;
- ``hand-out``: the consumer makes one Redis round trip (a small Lua script) before the
  job starts, as the job-state store's hand-out does with ``stores:``.

It prints p50 and p99 per variant (medians over ``--runs`` interleaved runs). Nothing is
asserted. Usage (the RabbitMQ benchmark venv, see README.md)::

    benchmarks/.venv-rabbitmq/bin/python benchmarks/rabbitmq_latency_floor.py

Options: ``--amqp URL``, ``--redis URL``, ``--jobs`` (2,000), ``--rate`` (500), ``--runs`` (3).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import uuid
from importlib.metadata import version
from typing import Any

import aiormq
import redis.asyncio as aioredis

QUEUE_ARGUMENTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "backend": {
        "x-queue-version": 2,
        "x-queue-mode": "lazy",
        "x-max-priority": 10,
        "x-dead-letter-exchange": "lexigram-floor.dlx",
    },
}
VARIANTS: tuple[tuple[str, bool, bool], ...] = (
    ("plain", False, False),
    ("backend", False, False),
    ("backend", True, False),
    ("backend", True, True),
)
RECORD = "x" * 400
# Reads the job's record and marks it running: one round trip, as the hand-out is.
HAND_OUT = """
local record = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1] .. ':state', 'running', 'EX', 60)
return record
"""


async def consume(amqp: str, redis_url: str, queue: str, jobs: int, hand_out: bool) -> None:
    """The consumer process: print the latencies (ms, JSON) once `jobs` have started."""
    connection = await aiormq.connect(amqp)
    store = aioredis.Redis.from_url(redis_url) if hand_out else None
    script = None if store is None else store.register_script(HAND_OUT)
    channel = await connection.channel()
    await channel.basic_qos(prefetch_count=100)
    latencies: list[float] = []
    done = asyncio.Event()

    async def on_message(message: Any) -> None:
        if script is not None:
            await script(keys=[f"lexigram-floor:{message.header.properties.message_id}"])
        latencies.append((time.time() - float(message.body)) * 1000)
        await channel.basic_ack(message.delivery_tag)
        if len(latencies) >= jobs:
            done.set()

    await channel.basic_consume(queue, on_message)
    print("ready", flush=True)
    await done.wait()
    print(json.dumps(latencies), flush=True)
    await connection.close()
    if store is not None:
        await store.aclose()


async def produce(args: argparse.Namespace, queue: str, record: bool) -> None:
    """Publish `args.jobs` messages one at a time, `args.rate` per second, confirmed."""
    connection = await aiormq.connect(args.amqp)
    store = aioredis.Redis.from_url(args.redis) if record else None
    try:
        channel = await connection.channel(publisher_confirms=True)
        interval = 1.0 / args.rate
        for _ in range(args.jobs):
            job_id = str(uuid.uuid4())
            sent = time.time()
            if store is not None:
                await store.set(f"lexigram-floor:{job_id}", RECORD, nx=True, ex=60)
            properties = aiormq.spec.Basic.Properties(delivery_mode=2, message_id=job_id)
            await channel.basic_publish(
                repr(sent).encode(), routing_key=queue, properties=properties
            )
            await asyncio.sleep(max(0.0, interval - (time.time() - sent)))
    finally:
        await connection.close()
        if store is not None:
            await store.aclose()


async def one_run(args: argparse.Namespace, kind: str, record: bool, hand_out: bool) -> list[float]:
    """One variant on a fresh queue: the consumer's latencies, in ms."""
    queue = f"lexigram-floor-{uuid.uuid4().hex[:8]}"
    connection = await aiormq.connect(args.amqp)
    channel = await connection.channel()
    await channel.queue_declare(queue, durable=True, arguments=QUEUE_ARGUMENTS[kind])
    consumer = subprocess.Popen(  # noqa: ASYNC220, S603 - this script again, waited for below
        [sys.executable, __file__, "--consumer", queue, str(int(hand_out)), *sys.argv[1:]],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        output = consumer.stdout
        if output is None:
            msg = "the consumer's output is not a pipe"
            raise RuntimeError(msg)
        ready = await asyncio.to_thread(output.readline)
        if ready.strip() != "ready":
            msg = f"the consumer did not start: {ready!r}"
            raise RuntimeError(msg)
        await produce(args, queue, record)
        line = await asyncio.to_thread(output.readline)
        return list(json.loads(line))
    finally:
        consumer.wait(timeout=30)
        await channel.queue_delete(queue)
        await connection.close()


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def _label(kind: str, record: bool, hand_out: bool) -> str:
    extras = [name for name, on in (("record", record), ("hand-out", hand_out)) if on]
    return " + ".join([f"{kind} queue", *extras])


async def main(args: argparse.Namespace) -> None:
    """Run every variant `args.runs` times, interleaved; print the medians."""
    connection = await aiormq.connect(args.amqp)
    broker = connection.server_properties.get("version", "?")
    await connection.close()
    figures: dict[str, list[tuple[float, float]]] = {}
    for run in range(args.runs):
        for kind, record, hand_out in VARIANTS:
            label = _label(kind, record, hand_out)
            latencies = await one_run(args, kind, record, hand_out)
            p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
            figures.setdefault(label, []).append((p50, p99))
            print(f"run {run + 1} {label}: p50 {p50:.2f} ms, p99 {p99:.2f} ms", flush=True)
    print(f"\n### publish to start, {args.jobs} jobs at {args.rate}/s, median of {args.runs}")
    print("| variant | p50 ms | p99 ms | p99 per run |")
    print("|---|---:|---:|---|")
    for label, runs in figures.items():
        p50 = statistics.median(p for p, _ in runs)
        p99 = statistics.median(p for _, p in runs)
        per_run = " / ".join(f"{p:.2f}" for _, p in runs)
        print(f"| {label} | {p50:.2f} | {p99:.2f} | {per_run} |")
    print(f"aiormq {version('aiormq')}, RabbitMQ {broker!s}; Python {sys.version.split()[0]}")


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    return parser.parse_args(argv)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--consumer"]:
        queue_name, hand_out_flag = sys.argv[2], sys.argv[3] == "1"
        options = _arguments(sys.argv[4:])
        asyncio.run(consume(options.amqp, options.redis, queue_name, options.jobs, hand_out_flag))
    else:
        asyncio.run(main(_arguments(sys.argv[1:])))
