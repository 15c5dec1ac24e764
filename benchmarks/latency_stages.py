"""Where a W3 job's latency goes inside the lexigram RabbitMQ worker (``cli_latency.py --stages``).

The W3 probe imports this module inside the worker when ``CLILATENCY_STAGES`` is set. It
wraps private methods of the RabbitMQ backend and of the worker (benchmark code: it
follows the code it measures and changes nothing they do) and notes, for each job by its
send time:

- ``delivered``: the consumer's delivery callback buffered it (send to here: the
  producer's publish, the broker, the socket and the AMQP client's frame handling);
- ``taken``: the worker's consume loop took it from the buffer;
- ``handed``: the hand-out returned it (the job-state store's round trip, with
  ``stores:``);
- ``handler``: its handler started (the probe notes this one).

Beside these, the cyclic collector's pauses (`gc.callbacks`) and every event-loop callback
that ran for more than a millisecond, with the time each began.
"""

from __future__ import annotations

import asyncio.events
import gc
import json
import time
from pathlib import Path
from typing import Any

SLOW_CALLBACK = 0.001
"""Seconds an event-loop callback must run to be noted."""

MARKS: dict[float, dict[str, float]] = {}
PAUSES: list[tuple[float, float, int]] = []  # (began, seconds, generation)
SLOW: list[tuple[float, float]] = []  # (began, seconds)
_collecting = [0.0]


def mark(ts: float, stage: str, now: float | None = None) -> None:
    """Note the first time the job sent at `ts` reached `stage`."""
    MARKS.setdefault(ts, {}).setdefault(stage, time.time() if now is None else now)


def _stamp(job: Any, stage: str) -> None:
    args = job.args
    if args and isinstance(args[0], float) and args[0] > 0:  # the warm-up job is sent at 0
        mark(args[0], stage)


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _collecting[0] = time.time()
    else:
        PAUSES.append((_collecting[0], time.time() - _collecting[0], int(info["generation"])))


def _install() -> None:
    from lexigram.tasks.backends.rabbitmq import _consumer, _leases  # noqa: PLC0415

    buffer_push = _consumer.DeliveryBuffer.push
    buffer_take = _consumer.DeliveryBuffer.take
    hand_out = _leases.DeliveryLeases.hand_out

    def push(self: Any, delivery: Any) -> None:
        _stamp(delivery.job, "delivered")
        buffer_push(self, delivery)

    def take(self: Any, limit: int) -> list[Any]:
        taken = buffer_take(self, limit)
        for delivery in taken:
            _stamp(delivery.job, "taken")
        return taken

    async def handed(self: Any, deliveries: list[Any]) -> list[Any]:
        jobs = await hand_out(self, deliveries)
        for job in jobs:
            _stamp(job, "handed")
        return jobs

    _consumer.DeliveryBuffer.push = push  # type: ignore[method-assign]
    _consumer.DeliveryBuffer.take = take  # type: ignore[method-assign]
    _leases.DeliveryLeases.hand_out = handed  # type: ignore[method-assign]

    run = asyncio.events.Handle._run  # noqa: SLF001

    def timed_run(self: asyncio.events.Handle) -> None:
        began = time.time()
        run(self)
        took = time.time() - began
        if took > SLOW_CALLBACK:
            SLOW.append((began, took))

    asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]  # noqa: SLF001
    gc.callbacks.append(_on_gc)


def dump(path: str) -> None:
    """Write what was noted as JSON."""
    marks = {repr(ts): stages for ts, stages in MARKS.items()}
    with Path(path).open("w", encoding="utf-8") as out:
        json.dump({"marks": marks, "gc": PAUSES, "slow": SLOW}, out)


_install()
