"""Cancellation announcements of a queue: one pub/sub channel per queue.

The queue's ``cancel`` script publishes the id of a job it removed from flight on
``{<prefix>:<queue>}:cancel`` in the same atomic step, so every worker subscribed at
that moment hears of it; a worker that was not subscribed still loses the job at its
next heartbeat (the lease is gone).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from lexigram.contracts.tasks import BackendConnectionError
from lexigram.tasks.backends.redis._connection import RedisConnector
from redis import exceptions as rexc

logger = logging.getLogger(__name__)


async def follow_cancellations(connector: RedisConnector, channel: str) -> AsyncIterator[str]:
    """Yield every job id published on `channel`, until cancelled.

    Raises:
        BackendConnectionError: The subscription's connection failed (the worker
            subscribes again).
    """
    client, node_client = await _subscriber(connector.client())
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        try:
            await pubsub.subscribe(channel)
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                if message is not None and message.get("type") == "message":
                    try:
                        job_id = bytes(message["data"]).decode()
                    except UnicodeDecodeError:
                        # Another program's message: no job has such an id (a dequeue
                        # renames one), and raising would drop the subscription.
                        logger.debug("Ignored a cancellation naming %r.", message["data"])
                        continue
                    yield job_id
        except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
            msg = (
                f"The subscription to job cancellations at {connector.masked_url} lost its "
                f"connection ({type(exc).__name__}: {exc}). Check that Redis is running; "
                "workers subscribe again by themselves."
            )
            raise BackendConnectionError(msg, url=connector.masked_url) from exc
    finally:
        try:
            await pubsub.aclose()
            if node_client:
                await client.aclose()
        except (rexc.RedisError, OSError):  # the connection is already gone
            logger.debug("Closing the cancellation subscription failed; ignored.", exc_info=True)


async def _subscriber(client: Any) -> tuple[Any, bool]:
    """A client that can SUBSCRIBE, and whether it was made here (to close it after).

    redis-py's asyncio ``RedisCluster`` has no pub/sub, but a Redis Cluster delivers a
    PUBLISH to the subscribers of every node: a plain client on one node will do.
    """
    if hasattr(client, "pubsub"):
        return client, False
    await client.initialize()
    node = client.get_default_node()
    pool = aioredis.ConnectionPool(connection_class=node.connection_class, **node.connection_kwargs)
    return aioredis.Redis(connection_pool=pool), True
