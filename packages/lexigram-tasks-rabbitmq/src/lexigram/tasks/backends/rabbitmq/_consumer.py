"""Deliveries: the AMQP consumer, its local buffer and (coalesced) acknowledgements.

`dequeue_batch` waits on a real ``basic.consume`` (no polling). The channel's prefetch
is kept at "jobs in flight + the worker's free slots", up to a tenth more (it is not
lowered for every job: `prefetch_target`), so the broker pushes at most a few more jobs
than the worker can start; messages delivered but not handed out yet wait here, in
priority order, and count against that prefetch. `dequeue()` uses ``basic.get`` on a
second channel so a non-blocking call sees the queue as it is now.

Acks: the consumer channel receives deliveries strictly in delivery-tag order (aiormq
starts one task per delivery, in order, and `_on_message` registers the tag before
its first await), so one ``basic.ack(multiple=True)`` can settle a run of finished
jobs when no unsettled tag lies below it (`ChannelAcks.frames`, in `_delivery`).
Anything else is acked one by one. Acks requested in the same event-loop tick are
flushed together.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

from aio_pika.abc import AbstractRobustChannel
from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp.commands import Basic

from lexigram.tasks.backends.rabbitmq._ack_sync import AckSync, is_sync_message
from lexigram.tasks.backends.rabbitmq._connection import CONNECTION_ERRORS, AMQPLink
from lexigram.tasks.backends.rabbitmq._delivery import ChannelAcks, Delivery
from lexigram.tasks.backends.rabbitmq._existing import require_queue
from lexigram.tasks.backends.rabbitmq._options import delay_bucket
from lexigram.tasks.backends.rabbitmq._topology import main_queue_arguments
from lexigram.tasks.backends.rabbitmq._whole_rpc import whole_rpc

logger = logging.getLogger(__name__)

IDLE_AFTER = 0.02
"""Seconds without a dequeue_batch call after which the consumer unsubscribes."""

PREFETCH_SLACK = 0.1
"""Share of the wanted prefetch the channel's may exceed it by before it is lowered."""


def prefetch_target(wanted: int, current: int) -> int:
    """The prefetch to ask the broker for when `wanted` deliveries may be unacked.

    Kept within ``wanted .. wanted + wanted * PREFETCH_SLACK``: a prefetch below `wanted`
    starves free slots, so it is raised at once; one a little above only lets the broker
    push a few jobs more than the worker takes next, so `current` is kept. Otherwise the
    prefetch follows the worker's free slots exactly and flips between neighbouring
    values (a job acked, another finishing) with a ``basic.qos`` round trip awaited on
    the hand-out's path each time. A new value is the middle of the band, so small moves
    either way keep it.

    Args:
        wanted: Deliveries in flight plus the free slots of the caller (at least 1).
        current: The prefetch the channel has (0: none yet).

    Returns:
        `current` when it is within the band, else the band's middle.
    """
    wanted = max(1, wanted)
    slack = int(wanted * PREFETCH_SLACK)
    if wanted <= current <= wanted + slack:
        return current
    return wanted + slack // 2


class DeliveryBuffer:
    """The consumer of one queue plus the get channel and the local buffer."""

    def __init__(
        self,
        link: AMQPLink,
        send_back: Callable[[Delivery], None],
        holding: Callable[[], bool],
    ) -> None:
        self._link = link
        # Re-publishes a delivery (counted as settled when confirmed) and acks it:
        # for delay hops, classic redeliveries and jobs an idle consumer hands back.
        self._send_back = send_back
        self._holding = holding  # True while the queue has jobs in flight
        self._queue = link.queue_name
        self._quorum = link.options.queue_type == "quorum"
        self._channel: AbstractRobustChannel | None = None
        self._getter: AbstractRobustChannel | None = None
        self._getter_acks: ChannelAcks | None = None
        self._acks: ChannelAcks | None = None
        self._tag: str | None = None
        self._consuming = False
        self._calls = 0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._prefetch = 0
        self._ready: list[tuple[int, int, Delivery]] = []
        self._held: list[tuple[float, int, Delivery]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._start_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.sync = AckSync(link, self._make_room)
        self._room_made = False  # a slot above the prefetch asked for, until the next resize
        self.closed = False
        # Ready messages the broker counted behind the last basic.get's (Basic.GetOk).
        self.ready_behind = 0

    def __len__(self) -> int:
        return len(self._ready) + len(self._held)

    # -- consumer --------------------------------------------------------------------

    @property
    def consuming(self) -> bool:
        """True while the consumer is subscribed (a dequeue_batch ran recently)."""
        return self._consuming

    def enter(self) -> None:
        """A dequeue_batch call starts: keep the consumer subscribed."""
        self._calls += 1
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def leave(self) -> None:
        """A dequeue_batch call ended: the consumer may be idle now (see `settled`)."""
        self._calls -= 1
        self.settled()

    def settled(self) -> None:
        """Unsubscribe within IDLE_AFTER unless a call or a held job keeps us busy.

        A worker with every slot taken makes no call until a job finishes, and then
        calls at once: while it holds jobs the consumer stays subscribed, so what
        the broker pushes into freed slots is what that next call takes. The queue
        calls this when its last in-flight job is settled.
        """
        if self._calls or not self._consuming or self.closed or self._holding():
            return
        if self._idle_timer is None:
            loop = asyncio.get_running_loop()
            self._idle_timer = loop.call_later(IDLE_AFTER, self._on_idle)

    def _on_idle(self) -> None:
        self._idle_timer = None
        self._spawn(self._go_idle())

    async def _go_idle(self, *, force: bool = False) -> None:
        """Nobody is taking jobs: stop the broker pushing more, return what was pushed.

        A worker that stops calling dequeue_batch (stopping, or a caller that took
        what it needed) would otherwise sit on prefetched jobs other consumers could
        run. Each acked job frees a prefetch slot, so without this the broker keeps
        refilling an idle consumer's buffer.
        """
        async with self._start_lock:
            if self._calls or self.closed or (self._holding() and not force):
                return
            if self._consuming and self._acks is not None:
                await self.sync.settle()
                if self._called_meanwhile():
                    return  # a call came in while the sync message came back
                self._consuming = False
                tag, self._tag = self._tag, None
                if tag is not None and self._acks.alive:
                    try:
                        # After cancel-ok no delivery of this consumer is in transit.
                        await whole_rpc(self._acks.channel.basic_cancel(tag))
                    except CONNECTION_ERRORS as exc:
                        logger.debug("Cancelling the consumer of %r failed: %s", self._queue, exc)
                await asyncio.sleep(0)  # let the delivery tasks queued before cancel-ok run
            for delivery in self.drain():
                # Re-published rather than rejected: a reject would mark the job
                # "redelivered" and raise its delivery count for a run that never was.
                self._send_back(delivery)

    def _called_meanwhile(self) -> bool:
        return bool(self._calls) or self.closed

    async def _make_room(self) -> None:
        """One more prefetch slot, so the broker can push a sync message to a full consumer.

        Jobs pushed with it are handed back with the rest of the buffer; the next
        subscribe sets the prefetch again.
        """
        acks = self._acks
        if self._quorum or self._room_made:
            return  # quorum queues need no sync; one slot more is enough
        if acks is not None and acks.alive:
            with contextlib.suppress(*CONNECTION_ERRORS):
                self._room_made = True
                prefetch = self._prefetch + 1
                await whole_rpc(acks.channel.basic_qos(prefetch_count=prefetch, global_=True))
                # Recorded: a call that comes in meanwhile keeps the consumer, and the
                # next resize compares against what the broker has.
                self._prefetch = prefetch

    async def quiesce(self) -> None:
        """Before counting: give idle buffered jobs back and wait until the broker has them.

        Rejects travel on the consumer and get channels; one synchronous call on each
        (a passive declare) afterwards orders them before the count that follows.
        """
        await self._go_idle(force=True)
        for acks in (self._acks, self._getter_acks):
            if acks is not None and acks.dirty and acks.alive:
                try:
                    await acks.channel.queue_declare(self._queue, passive=True)
                except CONNECTION_ERRORS as exc:
                    logger.debug("Syncing a channel of %r failed: %s", self._queue, exc)
                acks.dirty = False

    async def ensure_consuming(self, prefetch: int) -> None:
        """Subscribe the consumer, or bring its prefetch near `prefetch` (`prefetch_target`).

        While the connection is down this only records the prefetch: the channel's
        reopen callback subscribes again once the robust connection is back.
        """
        prefetch = prefetch_target(prefetch, self._prefetch if self._consuming else 0)
        if self._consuming and prefetch == self._prefetch:
            return
        if self._consuming and (self._acks is None or not self._acks.alive):
            self._prefetch = prefetch
            return
        try:
            await self._subscribe(prefetch)
        except CONNECTION_ERRORS as exc:
            if not self._link.reconnecting():
                raise
            logger.debug("Consumer of %r waits for the reconnect (%s).", self._queue, exc)

    async def _subscribe(self, prefetch: int) -> None:
        async with self._start_lock:
            if self._channel is None:
                must_exist = self._link.options.must_exist
                if must_exist:  # creates nothing: a missing queue is refused in one line
                    await require_queue(self._link)
                connection = await self._link.ready()
                channel = connection.channel(publisher_confirms=False)
                await channel.initialize()
                if not must_exist:
                    # Declared here too so a robust reopen re-declares it before we consume.
                    await channel.declare_queue(
                        self._queue,
                        durable=self._link.options.durable,
                        arguments=main_queue_arguments(self._queue, self._link.options),
                    )
                channel.reopen_callbacks.add(self._on_reopen)
                self._channel = channel
            if not self._consuming:
                self._prefetch = prefetch
                await self._consume()
            elif prefetch != self._prefetch:
                await self._resize(prefetch)

    async def _consume(self) -> None:
        assert self._channel is not None  # noqa: S101 - opened by ensure_consuming
        underlay = await self._channel.get_underlay_channel()
        if self._acks is None or self._acks.channel is not underlay:
            self._acks = ChannelAcks(underlay, in_order=True)
            underlay.on_consumer_cancel_callbacks.add(self._on_cancelled)
        # Classic queues take a channel-wide (global) prefetch, which basic.qos can
        # change while consuming; quorum queues refuse global QoS, so their per-consumer
        # limit is fixed at basic.consume and a resize re-consumes (see _resize).
        await whole_rpc(underlay.basic_qos(prefetch_count=self._prefetch, global_=not self._quorum))
        self._room_made = False
        self._consuming = True
        try:
            await whole_rpc(self._basic_consume(underlay))
        except asyncio.CancelledError:
            raise  # the consume goes on and records its tag
        except BaseException:
            self._consuming = False
            raise

    async def _basic_consume(self, underlay: AbstractChannel) -> None:
        ok = await underlay.basic_consume(self._queue, self._on_message)
        self._tag = ok.consumer_tag

    async def _resize(self, prefetch: int) -> None:
        assert self._acks is not None  # noqa: S101 - consuming
        underlay = self._acks.channel
        self._prefetch = prefetch
        if not self._quorum:
            await whole_rpc(underlay.basic_qos(prefetch_count=prefetch, global_=True))
            self._room_made = False
            return
        old = self._tag
        await whole_rpc(underlay.basic_qos(prefetch_count=prefetch, global_=False))
        await whole_rpc(self._swap_consumer(underlay, old))

    async def _swap_consumer(self, underlay: AbstractChannel, old: str | None) -> None:
        """Consume with the new prefetch, then cancel the consumer with the old one."""
        await self._basic_consume(underlay)
        if old is not None:
            await underlay.basic_cancel(old)

    async def _on_reopen(self, _channel: Any) -> None:
        """After a reconnect: forget stale deliveries and consume again."""
        try:
            self._drop_stale()
            if self._consuming and not self.closed:
                async with self._start_lock:
                    await self._consume()
                logger.info("Consumer of RabbitMQ queue %r resumed after a reconnect.", self._queue)
        except CONNECTION_ERRORS:
            logger.warning(
                "Could not resume consuming %r; it resumes on the next reconnect.",
                self._queue,
                exc_info=True,
            )

    def _on_cancelled(self, frame: Basic.Cancel) -> None:
        if frame.consumer_tag != self._tag or self.closed:
            return
        # The broker cancelled us (queue deleted, quorum leader moved): consume again.
        logger.warning("RabbitMQ cancelled the consumer of %r; re-subscribing.", self._queue)
        self._tag = None
        self._spawn(self._resubscribe())

    def _unsubscribed(self) -> bool:
        return not self.closed and self._consuming and self._tag is None

    async def _resubscribe(self) -> None:
        delay = 0.2
        while self._unsubscribed():
            try:
                # Declared on a channel of its own first: a basic.consume of a deleted
                # queue would close the consumer channel, and with it the acks of the jobs
                # still running (they would end with their records saying "waiting").
                await self._link.with_channel("declare the queue", self._declare_queue)
                async with self._start_lock:
                    if self._unsubscribed():
                        await self._consume()
            except CONNECTION_ERRORS as exc:
                logger.debug("Re-subscribing to %r failed: %s", self._queue, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _declare_queue(self, channel: AbstractChannel) -> None:
        """Declare the queue (again, after it was deleted: the jobs it had are gone)."""
        options = self._link.options
        if options.must_exist:  # creates nothing: waits for a worker to declare it again
            await channel.queue_declare(self._queue, passive=True)
            return
        arguments = main_queue_arguments(self._queue, options)
        await channel.queue_declare(self._queue, durable=options.durable, arguments=arguments)

    async def _on_message(self, message: DeliveredMessage) -> None:
        # No await in here: tags must be registered in delivery order (module docstring).
        acks = self._acks
        if acks is None or message.channel is not acks.channel:
            return  # a late delivery from a channel we already replaced
        acks.unsettled.add(message.delivery_tag or 0)
        if is_sync_message(message):
            acks.pending.add(message.delivery_tag or 0)
            self.sync.taken(message)
            self._spawn(self._send_pending(acks))
            return
        self.push(Delivery(message, acks, self._queue))
        if not self._consuming and self._calls == 0 and self._idle_timer is None:
            # Pushed just before our basic.cancel took effect: give it back soon.
            self._idle_timer = asyncio.get_running_loop().call_later(IDLE_AFTER, self._on_idle)

    # -- the buffer ------------------------------------------------------------------

    def push(self, delivery: Delivery) -> None:
        """Buffer a delivery: ready now, held briefly, or sent back to a delay bucket.

        A delivery whose channel is closing or closed is dropped: the broker has it back
        (or will, when it reads the close), so it must neither run nor be re-published.
        """
        if delivery.stale:
            return
        if delivery.restamp:
            self._send_back(delivery)
            return
        scheduled = delivery.job.scheduled_at
        remaining = 0.0 if scheduled is None else scheduled - time.time()
        if remaining > 0:
            if delay_bucket(remaining) is not None:
                self._send_back(delivery)
                return
            # Under the smallest bucket: hold it here (it counts against prefetch).
            delivery.due = time.monotonic() + remaining
            heapq.heappush(self._held, (delivery.due, next(self._seq), delivery))
            self._arm_timer()
            return
        heapq.heappush(self._ready, (-delivery.job.priority, next(self._seq), delivery))
        self._wake.set()

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        due = self._held[0][0]
        self._timer = loop.call_at(loop.time() + max(0.0, due - time.monotonic()), self._release)

    def _release(self) -> None:
        self._timer = None
        now = time.monotonic()
        while self._held and self._held[0][0] <= now:
            _, seq, delivery = heapq.heappop(self._held)
            heapq.heappush(self._ready, (-delivery.job.priority, seq, delivery))
            self._wake.set()
        if self._held:
            self._arm_timer()

    def take(self, limit: int) -> list[Delivery]:
        """Pop up to `limit` ready deliveries, highest priority first, FIFO within one."""
        out: list[Delivery] = []
        while self._ready and len(out) < limit:
            delivery = heapq.heappop(self._ready)[2]
            if not delivery.stale and not delivery.settled:
                out.append(delivery)
        return out

    def drain(self) -> list[Delivery]:
        """Remove and return every buffered delivery, ready or held."""
        out = [item[2] for item in self._ready] + [item[2] for item in self._held]
        self._ready.clear()
        self._held.clear()
        return out

    def best_priority(self) -> int | None:
        """Priority of the next ready delivery, or None."""
        return -self._ready[0][0] if self._ready else None

    async def wait(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for a ready delivery."""
        await self.wait_ready(1, timeout)

    async def wait_ready(self, count: int, timeout: float) -> None:
        """Wait up to `timeout` seconds until `count` deliveries are ready here."""
        deadline = time.monotonic() + timeout
        while len(self._ready) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wake.wait()
            except TimeoutError:
                return

    def _drop_stale(self) -> None:
        self._ready = [item for item in self._ready if not item[2].stale]
        heapq.heapify(self._ready)
        self._held = [item for item in self._held if not item[2].stale]
        heapq.heapify(self._held)

    # -- basic.get -------------------------------------------------------------------

    async def get(self) -> Delivery | None:
        """Fetch one message with basic.get (None when none is ready or while reconnecting)."""
        if self._link.reconnecting():
            return None
        within = self._link.options.publish_timeout
        try:
            async with asyncio.timeout(within):
                acks = await self._getter_channel()
                message = await acks.channel.basic_get(self._queue, no_ack=False)
                while is_sync_message(message) and message.delivery_tag is not None:
                    await acks.channel.basic_ack(message.delivery_tag)
                    message = await acks.channel.basic_get(self._queue, no_ack=False)
        except CONNECTION_ERRORS as exc:
            self._getter_acks = None
            if self._link.reconnecting():
                return None
            error = self._link.connection_error("fetch a job", exc, within)
            raise error from exc
        if not isinstance(message.delivery, Basic.GetOk) or message.delivery_tag is None:
            self.ready_behind = 0
            return None
        self.ready_behind = message.delivery.message_count or 0
        acks.unsettled.add(message.delivery_tag)
        return Delivery(message, acks, self._queue)

    async def _getter_channel(self) -> ChannelAcks:
        acks = self._getter_acks
        if acks is not None and acks.alive:
            return acks
        if self._getter is None:
            if self._link.options.must_exist:  # creates nothing: a missing queue is refused
                await require_queue(self._link)
            connection = await self._link.ready()
            channel = connection.channel(publisher_confirms=False)
            await channel.initialize()
            self._getter = channel
        underlay = await self._getter.get_underlay_channel()
        self._getter_acks = ChannelAcks(underlay, in_order=False)
        return self._getter_acks

    # -- settling --------------------------------------------------------------------

    async def ack(self, delivery: Delivery) -> bool:
        """Acknowledge a delivery; False if its channel is gone (it was requeued)."""
        if delivery.settled:
            return True
        delivery.settled = True
        acks = delivery.acks
        if not acks.alive:
            return False
        acks.pending.add(delivery.tag)
        if acks.flushing:
            return True
        acks.flushing = True
        try:
            await asyncio.sleep(0)  # acks finishing in this tick join one flush
        finally:
            acks.flushing = False
        await self._send(acks, acks.frames())
        if self._consuming:  # a sync message is taken back only by a subscribed consumer
            self.sync.acked()
        return True

    async def reject(self, delivery: Delivery, *, requeue: bool) -> bool:
        """Reject a delivery (requeue, or dead-letter); False if its channel is gone."""
        if delivery.settled:
            return True
        delivery.settled = True
        acks = delivery.acks
        acks.unsettled.discard(delivery.tag)
        if not acks.alive:
            return False
        acks.dirty = True
        try:
            await acks.channel.basic_reject(delivery.tag, requeue=requeue, wait=False)
        except CONNECTION_ERRORS as exc:
            logger.debug("Reject of tag %s failed (%s); the broker requeues it.", delivery.tag, exc)
            return False
        return True

    async def flush(self) -> None:
        """Send every pending ack now."""
        for acks in (self._acks, self._getter_acks):
            if acks is not None and acks.pending and acks.alive:
                await self._send(acks, acks.frames())
                if self._consuming:
                    self.sync.acked()

    async def _send_pending(self, acks: ChannelAcks) -> None:
        """Ack what is pending on `acks` (a sync message), unless a flush is under way."""
        if acks.pending and acks.alive and not acks.flushing:
            await self._send(acks, acks.frames())

    @staticmethod
    async def _send(acks: ChannelAcks, frames: list[tuple[int, bool]]) -> None:
        try:
            for tag, multiple in frames:
                await acks.channel.basic_ack(tag, multiple=multiple, wait=False)
        except CONNECTION_ERRORS as exc:
            # The channel died: its unacked deliveries go back to the queue anyway.
            logger.debug("Ack on a closed channel dropped (%s).", exc)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- shutdown --------------------------------------------------------------------

    async def close(self) -> None:
        """Flush acks, stop consuming; unacked messages return to the queue."""
        if self.closed:
            return
        self.closed = True
        self.sync.close()
        for timer in (self._timer, self._idle_timer):
            if timer is not None:
                timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self.flush()
        self._ready.clear()
        self._held.clear()
        for channel in (self._channel, self._getter):
            if channel is not None and not channel.is_closed:
                try:
                    await channel.close()
                except CONNECTION_ERRORS as exc:
                    logger.debug("Closing a consumer channel failed: %s", exc)
