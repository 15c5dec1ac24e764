"""What one queue is on the broker: the arguments of its queues, and walks over them.

Every process that declares a queue must declare it with the same arguments, or the
broker refuses it as inequivalent; the functions here are the one place they are made.
`each_queue` and `delete_all` count, purge or delete a list of queues on one channel,
reopening it where a missing queue closed it.
"""

from __future__ import annotations

from typing import Any

import aiormq
from aiormq.abc import AbstractChannel

from lexigram.tasks.backends.rabbitmq._options import RabbitMQOptions, dead_letter_name


def main_queue_arguments(queue: str, options: RabbitMQOptions) -> dict[str, Any]:
    """Arguments of the main queue (must match on every process that declares it)."""
    args: dict[str, Any] = {"x-dead-letter-exchange": dead_letter_name(queue)}
    if options.queue_type == "quorum":
        args["x-queue-type"] = "quorum"
        return args
    if options.max_priority > 0:
        args["x-max-priority"] = options.max_priority
    return _classic(args, options)


def _classic(args: dict[str, Any], options: RabbitMQOptions) -> dict[str, Any]:
    """Add the storage arguments of a classic queue (a quorum queue takes neither)."""
    if options.queue_type != "classic":
        return args
    version, mode = options.queue_version_argument, options.queue_mode_argument
    if version is not None:
        args["x-queue-version"] = version
    if mode is not None:
        args["x-queue-mode"] = mode
    return args


def bucket_arguments(queue: str, exp: int, options: RabbitMQOptions) -> dict[str, Any]:
    """Arguments of a delay bucket: a fixed TTL, then dead-lettered back to `queue`."""
    args: dict[str, Any] = {
        "x-message-ttl": 1 << exp,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue,
    }
    if options.queue_type == "quorum":
        # At-least-once dead-lettering needs reject-publish; without it a quorum queue
        # dead-letters at most once and could drop a delayed job on a leader change.
        args.update(
            {
                "x-queue-type": "quorum",
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        )
    return _classic(args, options)


def dead_letter_arguments(options: RabbitMQOptions) -> dict[str, Any]:
    """Arguments of the broker-side dead-letter queue."""
    args: dict[str, Any] = {}
    if options.queue_type == "quorum":
        args["x-queue-type"] = "quorum"
    ttl_ms = options.dead_letter_ttl_ms
    if ttl_ms is not None:
        args["x-message-ttl"] = ttl_ms
    return _classic(args, options)


async def each_queue(channel: AbstractChannel, names: list[str], *, purge: bool) -> list[int]:
    """Passive-declare (and purge) each queue; "not found" closes the channel, so reopen."""
    depths: list[int] = []
    for name in names:
        if channel.is_closed:
            channel = await channel.connection.channel()
        try:
            ok = await channel.queue_declare(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            depths.append(0)
            continue
        depths.append(int(ok.message_count or 0))
        if purge:
            await channel.queue_purge(name)
    if not channel.is_closed:
        await channel.close()
    return depths


async def delete_all(channel: AbstractChannel, queues: list[str], exchanges: list[str]) -> None:
    """Delete each queue and exchange that exists; an error closes the channel, so reopen."""
    for kind, names in (("queue", queues), ("exchange", exchanges)):
        for name in names:
            if channel.is_closed:
                channel = await channel.connection.channel()
            try:
                if kind == "queue":
                    await channel.queue_delete(name)
                else:
                    await channel.exchange_delete(name)
            except aiormq.exceptions.ChannelNotFoundEntity:
                continue
    if not channel.is_closed:
        await channel.close()
