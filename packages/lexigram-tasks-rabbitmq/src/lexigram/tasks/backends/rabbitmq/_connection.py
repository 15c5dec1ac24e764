"""The AMQP connection of one queue: robust reconnects, topology and confirmed publishes.

The arguments the queues are declared with are `_topology`'s; moving to the next node of
a cluster after a failure is `_failover`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar, cast

import aiormq
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection, ExchangeType
from aiormq.abc import AbstractChannel
from pamqp.commands import Basic

from lexigram.contracts.tasks import BackendConnectionError, TaskConfigurationError, mask_url
from lexigram.tasks.backends.rabbitmq._bulk import BulkPublisher, Published, supports_bulk
from lexigram.tasks.backends.rabbitmq._errors import ConnectAttempt, TCPProbe, connect_failure
from lexigram.tasks.backends.rabbitmq._failover import FailoverConnection
from lexigram.tasks.backends.rabbitmq._frames import Outgoing
from lexigram.tasks.backends.rabbitmq._options import (
    BUCKET_MAX_EXP,
    BUCKET_MIN_EXP,
    RabbitMQOptions,
    bucket_queue_name,
    cancel_exchange_name,
    dead_letter_name,
    delayed_exchange_name,
    owned_queues,
    parse_amqp_url,
    split_amqp_url,
)
from lexigram.tasks.backends.rabbitmq._topology import (
    bucket_arguments,
    dead_letter_arguments,
    delete_all,
    each_queue,
    main_queue_arguments,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

# What a lost or refused connection raises somewhere in aiormq/aio-pika/asyncio.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    aiormq.exceptions.AMQPError,
    ConnectionError,
    OSError,
    TimeoutError,
    RuntimeError,  # aio-pika: "connection closed" / "channel not opened" during recovery
)
_CONNECT_ERRORS: tuple[type[Exception], ...] = (*CONNECTION_ERRORS, EOFError)


class AMQPLink:
    """A robust connection with a confirm channel (publishing, declares).

    Nothing connects until first use. aio-pika's robust connection reconnects every
    `reconnect_interval` seconds after a loss and re-declares what was declared on its
    channels; publishes wait for that (bounded by `publish_timeout`) and are retried.
    """

    def __init__(self, url: str, queue_name: str, options: RabbitMQOptions) -> None:
        self.url = url
        self.target = parse_amqp_url(url)
        self.nodes = split_amqp_url(url)
        self.masked_url = mask_url(url)
        self.queue_name = queue_name
        # Which process holds the connection: on the broker, `rabbitmqctl
        # list_connections name client_properties` tells the workers of one queue apart.
        self._connection_name = (
            f"lexigram-tasks:{queue_name} ({socket.gethostname()}:{os.getpid()})"
        )
        self.options = options
        self.connection: AbstractRobustConnection | None = None
        self._publisher: AbstractRobustChannel | None = None
        self._underlay: AbstractChannel | None = None
        self._underlay_opening = asyncio.Lock()
        self._bulk: BulkPublisher | None = None
        self._together: list[tuple[Outgoing, asyncio.Future[Published]]] = []
        self._flushes: set[asyncio.Future[None]] = set()
        self._lock = asyncio.Lock()
        self._buckets: dict[int, asyncio.Future[None]] = {}
        self.use_plugin = False
        self.closed = False

    # -- connecting ------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True once the first connect succeeded and the topology is declared."""
        return self.connection is not None and self._publisher is not None

    def reconnecting(self) -> bool:
        """True while a connection that was up is down and being re-established."""
        connection = self.connection
        return connection is not None and not connection.connected.is_set()

    async def ready(self) -> AbstractRobustConnection:
        """Connect (once) and declare the topology; return the robust connection."""
        if self.connection is not None and self._publisher is not None:
            return self.connection
        async with self._lock:
            if self.closed:
                msg = f"RabbitMQ queue {self.queue_name!r} is closed. Create a new queue object."
                raise BackendConnectionError(msg)
            if self.connection is None:
                self.connection = await self._connect()
            if self._publisher is None:
                channel = self.connection.channel(publisher_confirms=True)
                within = self.options.connect_timeout
                try:
                    async with asyncio.timeout(within):
                        await self._guard("open a channel", channel.initialize())
                        await self._declare_topology(channel)
                except TimeoutError as exc:
                    action = "declare the queues"
                    raise self.connection_error(action, exc, within) from exc
                self._publisher = channel
            return self.connection

    async def _connect(self) -> AbstractRobustConnection:
        """Open the robust connection once, within `connect_timeout` (TCP, TLS, AMQP).

        With a cluster URL the nodes are tried in order, each within `connect_timeout`,
        until one answers. A failure of every node is final and says what is wrong with
        the first (see `connect_failure`); later losses are the robust connection's
        business (it reconnects every `reconnect_interval`, moving along the nodes).
        """
        first_failure: BackendConnectionError | None = None
        for index in range(len(self.nodes)):
            try:
                return await self._connect_node(index)
            except BackendConnectionError as exc:
                if len(self.nodes) == 1:
                    raise
                first_failure = first_failure or exc
                logger.warning(
                    "RabbitMQ node %s of %s did not accept the connection (%s); trying the next.",
                    index + 1,
                    self.masked_url,
                    exc,
                )
        assert first_failure is not None  # noqa: S101 - at least one node was tried
        cluster = self.masked_url
        msg = f"No node of the RabbitMQ cluster {cluster} accepted a connection. {first_failure}"
        raise BackendConnectionError(msg, details=first_failure.details) from first_failure

    async def _connect_node(self, index: int) -> AbstractRobustConnection:
        url = self.nodes[index]
        target = parse_amqp_url(url)
        timeout = self.options.connect_timeout
        connection = FailoverConnection(
            self.nodes,
            index,
            reconnect_interval=self.options.reconnect_interval,
            client_properties={"connection_name": self._connection_name},
        )
        probe = TCPProbe(target.host, target.port, timeout)
        try:
            async with asyncio.timeout(timeout):
                await connection.connect(timeout=timeout)
        except _CONNECT_ERRORS as exc:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await connection.close()
            tcp_open = await probe.result() if isinstance(exc, TimeoutError) else None
            attempt = ConnectAttempt.of(url, target.host, target.port, target.vhost, timeout)
            raise connect_failure(exc, attempt, tcp_open=tcp_open) from exc
        except BaseException:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await connection.close()
            raise
        finally:
            probe.cancel()
        return connection

    def connection_error(
        self, action: str, exc: BaseException, within: float | None = None
    ) -> BackendConnectionError:
        """Build the error raised when `action` failed on the broker (after connecting).

        Args:
            action: What was tried ("publish a job").
            exc: What the client raised.
            within: The deadline that ran out, for a timeout.
        """
        if isinstance(exc, TimeoutError):
            deadline = f" within {within:g} s" if within is not None else " in time"
            msg = (
                f"RabbitMQ at {self.masked_url} did not answer{deadline} when asked to "
                f"{action} for queue {self.queue_name!r}: the broker is paused, overloaded "
                "or blocking publishers (memory or disk alarm), or the network is down. "
                "Check the broker (rabbitmq-diagnostics status, alarms) and retry."
            )
            return BackendConnectionError(
                msg, details={"backend": "rabbitmq", "reason": "no_answer"}
            )
        detail = mask_url(f"{type(exc).__name__}: {exc}")
        msg = (
            f"Could not {action} on RabbitMQ at {self.masked_url} for queue "
            f"{self.queue_name!r} ({detail}). Check that the broker is running and the URL, "
            "credentials and virtual host are right."
        )
        return BackendConnectionError(msg)

    async def _guard(self, action: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            msg = (
                f"RabbitMQ refused to {action} for queue {self.queue_name!r}: {exc}. A queue "
                "or exchange of that name exists with other arguments (durable, queue_type, "
                "max_priority, queue_version, queue_mode, dead_letter_ttl); use the options it was "
                "created with, or delete it (rabbitmqctl delete_queue <name>) and let it be "
                "re-created."
            )
            raise TaskConfigurationError(msg) from exc
        except CONNECTION_ERRORS as exc:
            raise self.connection_error(action, exc) from exc

    async def _declare_topology(self, channel: AbstractRobustChannel) -> None:
        options, queue = self.options, self.queue_name
        dlx = dead_letter_name(queue)
        exchange = await self._guard(
            "declare the dead-letter exchange",
            channel.declare_exchange(dlx, ExchangeType.FANOUT, durable=options.durable),
        )
        dead = await self._guard(
            "declare the dead-letter queue",
            channel.declare_queue(
                dlx, durable=options.durable, arguments=dead_letter_arguments(options)
            ),
        )
        await self._guard("bind the dead-letter queue", dead.bind(exchange, routing_key=queue))
        main = await self._guard(
            "declare the queue",
            channel.declare_queue(
                queue, durable=options.durable, arguments=main_queue_arguments(queue, options)
            ),
        )
        if options.delay_mode != "ttl":
            self.use_plugin = await self._plugin_available()
            if options.delay_mode == "plugin" and not self.use_plugin:
                msg = (
                    f"delay_mode='plugin' was asked for queue {queue!r}, but the broker at "
                    f"{self.masked_url} has no rabbitmq_delayed_message_exchange plugin. "
                    "Enable it (rabbitmq-plugins enable rabbitmq_delayed_message_exchange) "
                    "or use delay_mode='ttl'."
                )
                raise TaskConfigurationError(msg)
        if self.use_plugin:
            delayed = await self._guard(
                "declare the delayed-message exchange",
                channel.declare_exchange(
                    delayed_exchange_name(queue),
                    ExchangeType.X_DELAYED_MESSAGE,
                    durable=options.durable,
                    arguments={"x-delayed-type": "direct"},
                ),
            )
            await self._guard("bind the delayed exchange", main.bind(delayed, routing_key=queue))

    async def _plugin_available(self) -> bool:
        """Probe for the delayed-message plugin on a throwaway channel.

        Declaring an exchange of an unknown type closes the channel it was declared on,
        so the probe uses a plain (non-robust) channel of the same connection.
        """
        assert self.connection is not None  # noqa: S101 - called after connecting
        transport = self.connection.transport
        if transport is None:
            return False
        probe = await transport.connection.channel()
        name = f"{delayed_exchange_name(self.queue_name)}.probe"
        try:
            await probe.exchange_declare(
                name,
                exchange_type="x-delayed-message",
                auto_delete=True,
                arguments={"x-delayed-type": "direct"},
            )
            await probe.exchange_delete(name)
        except aiormq.exceptions.AMQPError:
            return False
        finally:
            if not probe.is_closed:
                await probe.close()
        return True

    async def ensure_bucket(self, exp: int) -> str:
        """Declare the delay bucket 2**exp ms once per process; return its name."""
        exp = max(BUCKET_MIN_EXP, min(exp, BUCKET_MAX_EXP))
        name = bucket_queue_name(self.queue_name, exp)
        pending = self._buckets.get(exp)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._buckets[exp] = pending
            try:
                await self.ready()
                assert self._publisher is not None  # noqa: S101 - set by ready()
                await self._guard(
                    "declare a delay bucket",
                    self._publisher.declare_queue(
                        name,
                        durable=self.options.durable,
                        arguments=bucket_arguments(self.queue_name, exp, self.options),
                    ),
                )
            except BaseException as exc:
                del self._buckets[exp]
                pending.set_exception(exc)
                pending.exception()  # retrieved here; waiters re-raise their own copy
                raise
            pending.set_result(None)
        else:
            await asyncio.shield(pending)
        return name

    # -- publishing ------------------------------------------------------------------

    async def _publish_channel(self) -> AbstractChannel:
        """The confirm channel jobs are published on; a new one after a loss or a drop."""
        underlay = self._underlay
        if underlay is not None and not underlay.is_closed:
            return underlay
        # One opening at a time: concurrent publishers (the slices of `enqueue_many`)
        # share the channel instead of each opening one and leaking all but the last.
        async with self._underlay_opening:
            underlay = self._underlay
            if underlay is not None and not underlay.is_closed:
                return underlay
            connection = await self.ready()
            transport = connection.transport
            if transport is None or transport.connection.is_closed:
                reason = "the connection is being re-established"
                raise ConnectionError(reason)  # `publish` retries it until its deadline
            # A returned (unroutable) message must come back as the answer, not raise.
            underlay = await transport.connection.channel(
                publisher_confirms=True, on_return_raises=False
            )
            self._underlay = underlay
            return underlay

    async def _drop_publish_channel(self) -> None:
        """Close the publishing channel; the next publish opens a new one.

        A RabbitMQ 3.10 channel that published to a quorum queue while it was electing
        a leader keeps nacking every later publish to it, even after the election; a
        new channel is served by the new leader at once.
        """
        underlay, self._underlay = self._underlay, None
        if underlay is not None and not underlay.is_closed:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await underlay.close()

    async def publish(
        self,
        body: bytes,
        *,
        routing_key: str,
        properties: Basic.Properties,
        exchange: str = "",
        mandatory: bool = True,
    ) -> Published:
        """Publish with a confirm, retrying across reconnects until `publish_timeout`.

        On a quorum queue a nack is retried too, until the same deadline: a quorum
        queue refuses publishes while it elects a new leader (its leader's node went
        down), and takes them again a moment later. A nack that lasts to the deadline
        is returned as NACK.

        Raises:
            BackendConnectionError: No confirm within `publish_timeout` (the broker is
                down or unreachable); the job may or may not have reached the broker.
        """
        deadline = time.monotonic() + self.options.publish_timeout
        delay = 0.05
        while True:
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.01)):
                    # aiormq's concrete channel takes `wait`; its abstract type does not.
                    channel = cast("aiormq.Channel", await self._publish_channel())
                    confirm = await channel.basic_publish(
                        body,
                        exchange=exchange,
                        routing_key=routing_key,
                        properties=properties,
                        mandatory=mandatory,
                        # Waiting for the confirm is enough; also waiting for each
                        # frame's socket drain costs a round of the loop per message.
                        wait=False,
                    )
            except aiormq.exceptions.DeliveryError:
                outcome = Published.NACK
            except (BackendConnectionError, TaskConfigurationError):
                raise
            except CONNECTION_ERRORS as exc:
                if time.monotonic() + delay >= deadline or self.closed:
                    error = self.connection_error(
                        "publish a job", exc, self.options.publish_timeout
                    )
                    raise error from exc
                logger.debug("Publish to %s failed (%s); retrying.", self.masked_url, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            else:
                outcome = _outcome(confirm)
            retry = outcome is Published.NACK and self.retries_nacks and not self.closed
            if retry and time.monotonic() + delay < deadline:
                logger.debug("%s nacked a publish; retrying.", self.masked_url)
                await self._drop_publish_channel()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            return outcome

    @property
    def retries_nacks(self) -> bool:
        """True when a nacked publish is worth retrying (quorum queues, see `publish`)."""
        return self.options.queue_type == "quorum"

    async def publish_together(self, message: Outgoing) -> Published:
        """Publish one message; those of concurrent callers share a socket write.

        Callers in the same event-loop tick (e.g. ``gather`` of many `enqueue` calls)
        join one `publish_many` batch, which runs on the next tick. A lone caller pays
        that one tick.

        Returns:
            As `publish_many` for this message (UNKNOWN: publish it again with `publish`).
        """
        future: asyncio.Future[Published] = asyncio.get_running_loop().create_future()
        self._together.append((message, future))
        if len(self._together) == 1:
            flush = asyncio.ensure_future(self._flush_together())
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)
        return await future

    async def _flush_together(self) -> None:
        batch, self._together = self._together, []
        try:
            outcomes = await self.publish_many([message for message, _ in batch])
        except BaseException:
            outcomes = [Published.UNKNOWN] * len(batch)
            raise
        finally:
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if not future.done():  # a caller that was cancelled stopped waiting
                    future.set_result(outcome)

    async def publish_many(self, messages: Sequence[Outgoing]) -> list[Published]:
        """Publish through the default exchange, many messages per socket write.

        Confirms are pipelined (up to `publish_window` in flight) and awaited, so an ACK
        means the broker has the message, as for `publish`. Nothing is retried here:

        Returns:
            One outcome per message, in order; UNKNOWN where no answer came (the
            connection is down or was lost, or this aiormq cannot be driven in bulk).
            The caller publishes those again with `publish`, which waits for reconnects.
        """
        if not messages:
            return []
        deadline = time.monotonic() + self.options.publish_timeout
        try:
            # A broker that blocks publishers (memory or disk alarm) stops reading the
            # socket, so even a channel's opening may never be answered.
            async with asyncio.timeout(self.options.publish_timeout):
                channel = await self._publish_channel()
        except TimeoutError:
            return [Published.UNCONFIRMED] * len(messages)
        except CONNECTION_ERRORS:  # BackendConnectionError is a ConnectionError too
            return [Published.UNKNOWN] * len(messages)
        if not supports_bulk(channel):
            return [Published.UNKNOWN] * len(messages)
        bulk = self._bulk
        if bulk is None or bulk.channel is not channel:
            bulk = BulkPublisher(
                channel,
                window=self.options.publish_window,
                delivery_mode=2 if self.options.durable else 1,
            )
            self._bulk = bulk
        return await bulk.publish(messages, deadline)

    async def with_channel(self, action: str, call: Callable[[AbstractChannel], Awaitable[T]]) -> T:
        """Run `call` on a short-lived plain channel (passive declares, purges, deletes).

        Errors such as "queue not found" close the channel they happen on; a throwaway
        channel keeps them away from the publish and consume channels. While the robust
        connection is being re-established this waits for it, up to `connect_timeout`;
        the whole call has `publish_timeout` (a paused broker fails it, never hangs it).
        """
        within = self.options.publish_timeout
        try:
            async with asyncio.timeout(within):
                channel = await self._plain_channel(action)
                try:
                    return await call(channel)
                finally:
                    if not channel.is_closed:
                        await channel.close()
        except TimeoutError as exc:
            raise self.connection_error(action, exc, within) from exc

    async def open_channel(self, action: str) -> AbstractChannel:
        """Open a plain channel of the caller's own (it closes it), waiting for a reconnect.

        Raises:
            BackendConnectionError: No connection within `connect_timeout`.
        """
        return await self._plain_channel(action)

    async def _plain_channel(self, action: str) -> AbstractChannel:
        deadline = time.monotonic() + self.options.connect_timeout
        while True:
            connection = await self.ready()
            transport = connection.transport
            try:
                if transport is None or transport.connection.is_closed:
                    reason = "the connection is being re-established"
                    raise ConnectionError(reason)
                return await transport.connection.channel()
            except CONNECTION_ERRORS as exc:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closed:
                    raise self.connection_error(action, exc) from exc
                # Lost a moment ago: the robust connection reconnects every
                # reconnect_interval; wait for that (its "connected" flag may lag the loss).
                await asyncio.sleep(min(0.05, remaining))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(deadline - time.monotonic(), 0.01)):
                        await connection.connected.wait()

    async def depths(self, names: list[str], *, action: str = "count jobs") -> list[int]:
        """Ready messages in each queue (passive declares); a missing queue counts 0.

        `action` is what a timeout's error says the broker was asked to do.
        """
        return await self.with_channel(action, lambda ch: each_queue(ch, names, purge=False))

    async def purge(self, names: list[str]) -> None:
        """Purge each queue that exists."""
        await self.with_channel("purge the queue", lambda ch: each_queue(ch, names, purge=True))

    async def delete_topology(self) -> None:
        """Delete the queue, its delay buckets, its dead-letter queue and its exchanges."""
        queue = self.queue_name
        exchanges = [
            dead_letter_name(queue),
            delayed_exchange_name(queue),
            cancel_exchange_name(queue),
        ]
        await self.with_channel(
            "delete the queues",
            lambda channel: delete_all(channel, owned_queues(queue), exchanges),
        )
        self._buckets.clear()

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        self.closed = True
        flushes = list(self._flushes)
        for flush in flushes:
            flush.cancel()  # its callers get UNKNOWN and fail on the closed link
        await asyncio.gather(*flushes, return_exceptions=True)
        connection, self.connection = self.connection, None
        self._publisher = None
        self._underlay = None
        self._bulk = None
        if connection is not None and not connection.is_closed:
            try:
                await connection.close()
            except CONNECTION_ERRORS as exc:
                logger.debug("Closing the connection to %s failed: %s", self.masked_url, exc)


def _outcome(confirm: object) -> Published:
    """What the broker's answer to a confirmed publish means."""
    if isinstance(confirm, Basic.Ack) or confirm is None:
        return Published.ACK
    if isinstance(confirm, Basic.Nack | Basic.Reject):
        return Published.NACK
    return Published.RETURNED  # a returned (unroutable) message arrives as the answer
