"""Idempotency keys claimed on the broker, so processes that share no store agree.

With the default in-process state store each process would hold its own keys, so
three schedulers would enqueue every cron occurrence three times. `BrokerClaims`
holds a key in RabbitMQ itself, with two small queues per key:

- ``<queue>.idem.<digest>``, the lock: at most one message (``x-max-length`` 1,
  ``x-overflow`` reject-publish). The first confirmed publish takes the key; the broker
  refuses (nacks) every later publish until that message expires after the key's TTL.
  Nobody ever reads it, so the key never looks free while a claim is decided.
- ``<queue>.idem.<digest>.id``, the holder's job id, for the answer "the key belongs
  to job X" (read and put back; a reader never touches the lock).

Both queues delete themselves once unused (``x-expires``), and ``<queue>.idem`` lists
the claims so that `clear` can find them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Sequence
from typing import Protocol

import aiormq
from aiormq.abc import AbstractChannel
from pamqp.commands import Basic
from pamqp.common import FieldValue

from lexigram.contracts.tasks import BackendConnectionError
from lexigram.tasks.backends.rabbitmq._connection import CONNECTION_ERRORS, AMQPLink

logger = logging.getLogger(__name__)

_SLACK_MS = 10_000  # the queues outlive their message by this much
_HOLDER_WAIT = 2.0  # seconds a loser waits for the winner to record its id
_ATTEMPTS = 3


class Claims(Protocol):
    """Where a queue claims idempotency keys (its state store, or the broker)."""

    async def claim_idempotency(
        self, key: str, job_id: str, ttl: float, *, delay: float = 0.0, wait: bool = True
    ) -> str | None:
        """Take `key` for `job_id` (enqueued due in `delay` s); return the holder's id if taken.

        The key is held for `ttl` seconds, and beyond that while the job waits or runs
        where the claims can tell (a state store; not the broker, see `BrokerClaims`).
        A claim another process has not confirmed yet is waited for, or, with `wait`
        False, reported by raising `ClaimPending`.
        """
        ...

    async def confirm_idempotency(self, claims: Sequence[tuple[str, str, float, float]]) -> None:
        """Record that the broker confirmed the job of each ``(key, job id, ttl, delay)``.

        Until then a claim may belong to a producer that died before its publish; see
        `JobStates.claim_idempotency`.
        """
        ...

    async def release_idempotency(self, key: str, job_id: str) -> None:
        """Give `key` back if `job_id` holds it (its enqueue failed)."""
        ...

    async def clear(self) -> None:
        """Forget every key."""
        ...


def claim_queue_name(queue: str, key: str) -> str:
    """The lock queue of idempotency key `key` of `queue`."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"{queue}.idem.{digest}"


def index_queue_name(queue: str) -> str:
    """The queue listing the claims of `queue` (read by `clear`)."""
    return f"{queue}.idem"


class BrokerClaims:
    """Idempotency keys held on the broker (see the module docstring).

    Args:
        link: The queue's connection (claims use their own confirm channel on it).
    """

    def __init__(self, link: AMQPLink) -> None:
        self._link = link
        self._queue = link.queue_name
        self._channel: AbstractChannel | None = None
        self._lock = asyncio.Lock()
        self._index_ready = False

    async def _open(self) -> AbstractChannel:
        channel = self._channel
        if channel is not None and not channel.is_closed:
            return channel
        connection = await self._link.ready()
        transport = connection.transport
        if transport is None:
            msg = f"RabbitMQ connection to {self._link.masked_url} is being re-established."
            raise BackendConnectionError(msg)
        channel = await transport.connection.channel(publisher_confirms=True)
        self._channel = channel
        return channel

    async def _declare(self, name: str, ttl_ms: int, *, limit: bool) -> None:
        arguments: dict[str, FieldValue] = {"x-expires": ttl_ms + _SLACK_MS}
        if limit:
            arguments.update({"x-max-length": 1, "x-overflow": "reject-publish"})
        channel = await self._open()
        try:
            await channel.queue_declare(
                name, durable=self._link.options.durable, arguments=arguments
            )
        except aiormq.exceptions.ChannelPreconditionFailed:
            # It exists with another TTL (a claim of the same key with another delay):
            # the queue is there, which is all a claim needs.
            self._channel = None

    async def _declare_index(self) -> None:
        if self._index_ready:
            return
        channel = await self._open()
        await channel.queue_declare(
            index_queue_name(self._queue), durable=self._link.options.durable
        )
        self._index_ready = True

    async def _publish(self, name: str, body: str, ttl_ms: int) -> bool:
        """Publish with a confirm; True if the broker took it, False if it refused it."""
        channel = await self._open()
        properties = Basic.Properties(
            expiration=str(ttl_ms), delivery_mode=2 if self._link.options.durable else 1
        )
        try:
            answer = await channel.basic_publish(
                body.encode(), routing_key=name, properties=properties, mandatory=True
            )
        except aiormq.exceptions.PublishError:
            return False  # returned: the queue expired between declare and publish
        except aiormq.exceptions.DeliveryError:
            return False
        return not isinstance(answer, Basic.Nack | Basic.Reject)

    async def _peek(self, name: str) -> str | None:
        """The message of a holder queue, put back at once (None: empty or missing)."""
        channel = await self._open()
        try:
            message = await channel.basic_get(name, no_ack=False)
        except aiormq.exceptions.ChannelNotFoundEntity:
            self._channel = None
            return None
        if message.delivery_tag is None or not isinstance(message.delivery, Basic.GetOk):
            return None
        await channel.basic_reject(message.delivery_tag, requeue=True)
        return message.body.decode()

    async def claim_idempotency(
        self, key: str, job_id: str, ttl: float, *, delay: float = 0.0, wait: bool = True
    ) -> str | None:
        """Take `key` for `job_id`; return the holder's id if another job holds it.

        The key is held for `ttl` seconds only (`delay` changes nothing here): the
        broker cannot tell whether the holder's message still waits in the queue. No
        claim is ever pending here, so `wait` changes nothing either.

        Raises:
            BackendConnectionError: The broker cannot be reached.
        """
        lock = claim_queue_name(self._queue, key)
        holder_queue = f"{lock}.id"
        ttl_ms = max(1, int(ttl * 1000))
        within = self._link.options.publish_timeout
        try:
            async with asyncio.timeout(within), self._lock:
                for _ in range(_ATTEMPTS):
                    await self._declare(lock, ttl_ms, limit=True)
                    if await self._publish(lock, job_id, ttl_ms):
                        await self._declare(holder_queue, ttl_ms, limit=False)
                        await self._declare_index()
                        await asyncio.gather(
                            self._publish(holder_queue, job_id, ttl_ms),
                            self._publish(index_queue_name(self._queue), lock, ttl_ms),
                        )
                        return None
                    holder = await self._holder(holder_queue)
                    if holder is not None:
                        return holder
        except CONNECTION_ERRORS as exc:
            self._channel = None
            if isinstance(exc, BackendConnectionError):
                raise
            action = "claim an idempotency key"
            raise self._link.connection_error(action, exc, within) from exc
        # The key stays taken but its holder never said who it is (it died between
        # the two publishes): this job is the duplicate; name the key's holder as unknown.
        logger.warning("Idempotency key %r is held by a job that left no id; skipped.", key)
        return f"unknown-holder-of-{key}"

    async def _holder(self, holder_queue: str) -> str | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _HOLDER_WAIT
        delay = 0.005
        while True:
            holder = await self._peek(holder_queue)
            if holder is not None or loop.time() >= deadline:
                return holder
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)

    async def confirm_idempotency(self, claims: Sequence[tuple[str, str, float, float]]) -> None:
        """Nothing to record: a lock message cannot be made pending, then confirmed.

        So a producer killed between a claim and its job's publish leaves the key held,
        by a job that never reached the queue, until the key's TTL ends. A queue with a
        shared state store (``stores:``) claims keys there instead, without that gap.
        """

    async def release_idempotency(self, key: str, job_id: str) -> None:
        """Give `key` back if `job_id` holds it (its enqueue failed)."""
        lock = claim_queue_name(self._queue, key)
        with contextlib.suppress(*CONNECTION_ERRORS):
            async with self._lock:
                if await self._peek(f"{lock}.id") == job_id:
                    await self._delete([lock, f"{lock}.id"])

    async def _delete(self, names: list[str]) -> None:
        for name in names:
            channel = await self._open()
            try:
                await channel.queue_delete(name)
            except aiormq.exceptions.ChannelNotFoundEntity:
                self._channel = None

    async def clear(self) -> None:
        """Forget every key of this queue: delete the claims the index lists."""
        index = index_queue_name(self._queue)
        names: list[str] = []
        async with self._lock:
            channel = await self._open()
            while True:
                try:
                    message = await channel.basic_get(index, no_ack=True)
                except aiormq.exceptions.ChannelNotFoundEntity:
                    self._channel = None
                    break
                if not isinstance(message.delivery, Basic.GetOk):
                    break
                names.append(message.body.decode())
            for lock in dict.fromkeys(names):
                await self._delete([lock, f"{lock}.id"])

    async def delete(self) -> None:
        """Delete every claim and the index (when the queue's broker objects go)."""
        await self.clear()
        async with self._lock:
            await self._delete([index_queue_name(self._queue)])
