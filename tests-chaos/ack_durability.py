"""Which acks of a RabbitMQ queue survive a broker kill -9: one private node, many queues.

Usage: python tests-chaos/ack_durability.py [--messages N] [--rate ACKS_PER_S] [--run-for S]

Declares one queue per variant below on a private RabbitMQ node (``brokers.py``), publishes
N persistent messages into each (confirmed), then consumes every queue at once, acking each
message with ``basic.ack`` at the given rate. After ``--run-for`` seconds the node is
SIGKILLed, restarted on its data 2 s later, and every queue is read out. A message that was
acked before the kill and is in the queue again is "acked back"; the table shows how many
per variant and how long before the kill the oldest of them was acked.

Variants: the classic queue arguments (``x-queue-version`` 1/2, ``x-queue-mode`` lazy or
not, ``x-max-priority`` or none), a quorum queue, a consumer that stops acking 3 s before the
kill (the queue goes idle), and consumers next to which a publisher sends a confirmed
persistent message to the queue every 0.5 s (what the backend's sync messages do).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import aiormq  # noqa: E402
from brokers import RabbitMQBroker  # noqa: E402
from pamqp.commands import Basic  # noqa: E402

PRIORITY = {"x-max-priority": 10}
VARIANTS: dict[str, tuple[dict[str, Any], str]] = {
    "v2 lazy prio (default)": ({"x-queue-version": 2, "x-queue-mode": "lazy", **PRIORITY}, ""),
    "v2 prio": ({"x-queue-version": 2, **PRIORITY}, ""),
    "v2 lazy": ({"x-queue-version": 2, "x-queue-mode": "lazy"}, ""),
    "v1 lazy prio": ({"x-queue-version": 1, "x-queue-mode": "lazy", **PRIORITY}, ""),
    "v1 prio": ({"x-queue-version": 1, **PRIORITY}, ""),
    "v1": ({"x-queue-version": 1}, ""),
    "quorum": ({"x-queue-type": "quorum"}, ""),
    "v2 lazy prio, idle 3 s": ({"x-queue-version": 2, "x-queue-mode": "lazy", **PRIORITY}, "idle"),
    "v2 lazy prio, sync msgs": ({"x-queue-version": 2, "x-queue-mode": "lazy", **PRIORITY}, "sync"),
    "v1, sync msgs": ({"x-queue-version": 1}, "sync"),
}
SYNC = "sync"
BODY = b"x" * 400


async def load(url: str, name: str, args: dict[str, Any], count: int) -> None:
    """Declare the queue and publish `count` persistent messages with confirms."""
    connection = await aiormq.connect(url)
    channel = await connection.channel()
    await channel.queue_declare(name, durable=True, arguments=args)
    priority = 5 if "x-max-priority" in args else None
    pending = []
    for i in range(count):
        properties = Basic.Properties(delivery_mode=2, priority=priority, message_id=str(i))
        pending.append(channel.basic_publish(BODY, routing_key=name, properties=properties))
        if len(pending) >= 200:  # noqa: PLR2004 - a window of confirms
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    await connection.close()


async def syncer(url: str, name: str) -> None:
    """Publish a confirmed persistent message to the queue every 0.5 s."""
    connection = await aiormq.connect(url)
    channel = await connection.channel()
    properties = Basic.Properties(delivery_mode=2, priority=10, message_id=SYNC)
    with contextlib.suppress(aiormq.exceptions.AMQPError, ConnectionError):
        while True:
            await asyncio.sleep(0.5)
            await channel.basic_publish(b"", routing_key=name, properties=properties)


async def consume(url: str, name: str, mode: str, rate: float, stop_at: float) -> dict[int, float]:
    """Ack messages one by one at `rate`/s until the connection dies; return id -> ack time."""
    acked: dict[int, float] = {}
    connection = await aiormq.connect(url)
    channel = await connection.channel()
    await channel.basic_qos(prefetch_count=24)
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    await channel.basic_consume(name, inbox.put_nowait)
    helper = asyncio.ensure_future(syncer(url, name)) if mode == SYNC else None
    try:
        while True:
            message = await inbox.get()
            ident = message.header.properties.message_id
            if ident != SYNC:
                await asyncio.sleep(1.0 / rate)
                if mode == "idle" and time.monotonic() > stop_at - 3.0:
                    await asyncio.sleep(3600)
            await channel.basic_ack(message.delivery.delivery_tag)
            if ident != SYNC:
                acked[int(ident)] = time.time()
    except (aiormq.exceptions.AMQPError, ConnectionError, asyncio.CancelledError):
        return acked
    finally:
        if helper is not None:
            helper.cancel()


async def read_out(url: str, name: str) -> list[int]:
    """Every message id in the queue after the restart."""
    connection = await aiormq.connect(url)
    channel = await connection.channel()
    seen: list[int] = []
    while True:
        got = await channel.basic_get(name, no_ack=True)
        if not isinstance(got.delivery, Basic.GetOk):
            break
        if got.header.properties.message_id != SYNC:
            seen.append(int(got.header.properties.message_id))
    await connection.close()
    return seen


async def main(argv: list[str]) -> None:
    """Run every variant on one private node; print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=60.0, help="acks per second per queue")
    parser.add_argument("--run-for", type=float, default=10.0, help="seconds before the kill")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lexigram-acks-") as base:
        Path(base).chmod(0o755)  # noqa: ASYNC240 - once, before the broker starts
        broker = RabbitMQBroker(Path(base))
        broker.start()
        try:
            url = broker.url
            names = {label: f"acks-{i}" for i, label in enumerate(VARIANTS)}
            await asyncio.gather(
                *(load(url, names[label], a, args.messages) for label, (a, _) in VARIANTS.items())
            )
            stop_at = time.monotonic() + args.run_for
            consumers = {
                label: asyncio.ensure_future(consume(url, names[label], mode, args.rate, stop_at))
                for label, (_, mode) in VARIANTS.items()
            }
            await asyncio.sleep(args.run_for)
            killed_at = time.time()
            broker.kill()
            for task in consumers.values():
                task.cancel()  # a consumer catches it and returns what it acked
            acked = {label: await task for label, task in consumers.items()}
            await asyncio.sleep(2.0)
            broker.start()
            print(f"{'queue':28s} {'acked':>6s} {'acked back':>10s} {'oldest ack back':>16s}")
            for label, name in names.items():
                back = [killed_at - acked[label][i] for i in await read_out(url, name)
                        if i in acked[label]]  # fmt: skip
                oldest = f"{max(back):.2f} s" if back else "-"
                print(f"{label:28s} {len(acked[label]):6d} {len(back):10d} {oldest:>16s}")
        finally:
            broker.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
