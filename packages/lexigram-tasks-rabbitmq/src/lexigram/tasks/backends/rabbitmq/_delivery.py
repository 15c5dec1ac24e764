"""One delivery and the acknowledgements of the channel it came on.

`Delivery` is a message as the consumer or ``basic.get`` received it: the job decoded
from it (a poison job when it does not decode), its delivery count, and the lease the
queue gives it when it is handed out. `ChannelAcks` keeps a channel's unsettled delivery
tags and the acks waiting to be sent, and turns them into as few ``basic.ack`` frames as
the channel's delivery order allows (see `_consumer` for why a consumer channel's tags
arrive in order).
"""

from __future__ import annotations

import asyncio

from aiormq.abc import AbstractChannel, DeliveredMessage

from lexigram.contracts.tasks import (
    POISON_JOB_NAME,
    Job,
    decode_or_poison,
    encode_job,
    printable_job_id,
)

COPY_HEADER = "x-lexigram-copy"
"""Header of a re-published job: how many times it was published anew (none: 0).

A job that waits again is published as a copy and its delivery acked after the copy's
confirm (`_requeue`); a holder killed between the two leaves both messages. Each copy
counts one more than the message it replaces, so of two messages of one job the one with
the lower count is the older, and once the newer is confirmed the older is stale
(`JobStates.superseded`).
"""

# aiormq's flag for a close it began itself: an RPC on the channel timed out or was
# cancelled, so it sent Channel.Close and refuses acks from then on.
_CLOSE_BEGUN = "_Channel__close_event"


def closing_started(channel: AbstractChannel) -> bool:
    """True once aiormq began closing `channel` and waits for the broker's CloseOk.

    Until the CloseOk comes, ``is_closed`` stays False, yet the channel refuses acks and
    the broker requeues its unacked messages as soon as it reads the Close. A broker that
    was paused reads it late and first sends the deliveries queued before it: run, such a
    delivery runs its job a second time (its ack cannot be sent, and the requeued copy
    runs elsewhere); sent back, it leaves two copies in the queue.
    """
    began = getattr(channel, _CLOSE_BEGUN, None)
    return isinstance(began, asyncio.Event) and began.is_set()


class ChannelAcks:
    """Unsettled delivery tags of one channel, and the acks waiting to be sent."""

    __slots__ = ("channel", "dirty", "flushing", "in_order", "pending", "unsettled")

    def __init__(self, channel: AbstractChannel, *, in_order: bool) -> None:
        self.channel = channel
        self.in_order = in_order
        self.unsettled: set[int] = set()
        self.pending: set[int] = set()
        self.flushing = False
        self.dirty = False  # rejects sent that the broker may not have applied yet

    @property
    def alive(self) -> bool:
        """False once the channel closed or began to close (its deliveries go back)."""
        return not self.channel.is_closed and not closing_started(self.channel)

    def frames(self) -> list[tuple[int, bool]]:
        """Turn the pending acks into (tag, multiple) frames and mark them settled."""
        pending, self.pending = self.pending, set()
        self.unsettled -= pending
        if not pending:
            return []
        if not self.in_order:
            return [(tag, False) for tag in sorted(pending)]
        floor = min(self.unsettled, default=None)
        run = [tag for tag in pending if floor is None or tag < floor]
        rest = sorted(tag for tag in pending if floor is not None and tag > floor)
        out = [(max(run), len(run) > 1)] if run else []
        return out + [(tag, False) for tag in rest]


class Delivery:
    """One delivered message, the job decoded from it, and its lease.

    The lease token names this one delivery: it is bound to the channel and delivery
    tag the broker gave it, so it dies with that channel, and a redelivery of the same
    job (to this process or another) gets a new one.
    """

    __slots__ = (
        "acks",
        "copy",
        "deadline",
        "due",
        "envelope",
        "grace",
        "job",
        "parked",
        "redelivered",
        "restamp",
        "settled",
        "tag",
        "timer",
        "token",
    )

    def __init__(self, message: DeliveredMessage, acks: ChannelAcks, queue_name: str) -> None:
        self.acks = acks
        self.tag: int = message.delivery_tag or 0
        self.redelivered = bool(message.redelivered)
        self.settled = False
        self.due = 0.0
        self.token = ""
        self.deadline = 0.0  # loop time the lease runs out (set when handed out)
        self.timer: asyncio.TimerHandle | None = None
        self.grace = False
        # Deliveries of this job's newer copies that came while this one ran here: given
        # back when it ends (see `DeliveryLeases.hand_out`).
        self.parked: list[Delivery] | None = None
        body = message.body
        headers = message.header.properties.headers or {}
        copy = headers.get(COPY_HEADER)
        self.copy: int = copy if isinstance(copy, int) and copy > 0 else 0
        # Never raises for a bad body (one in another encoding than UTF-8 too), so a poison
        # message is dead-lettered, never left unacked by a failed consumer callback.
        ident = message.header.properties.message_id or f"undecodable-{self.tag}"
        job = decode_or_poison(str(ident), body, queue_name=queue_name)
        # A body that decoded is UTF-8 (`decode_job` reads nothing else): kept as text to
        # record and re-publish. A poison job's record is its own encoding (`record`).
        self.envelope: str | None = None
        if job.name != POISON_JOB_NAME:
            self.envelope = body.decode("utf-8-sig")
        elif not job.id.isascii():
            job.id = _printable(job.id)
        # Quorum queues count deliveries (x-delivery-count); a classic queue only says
        # "redelivered", so such a delivery is re-published with its count raised
        # (`restamp`) and the count stays exact however often a job comes back.
        extra = headers.get("x-delivery-count")
        again = int(extra) if isinstance(extra, int) else int(self.redelivered)
        self.restamp = self.redelivered and not isinstance(extra, int) and self.envelope is not None
        job.delivery_count += 1 + again
        self.job: Job = job

    @property
    def stale(self) -> bool:
        """True when the channel it came on is gone (the broker requeued it)."""
        return not self.acks.alive

    def record(self) -> str:
        """The envelope to record while it runs (a poison job's own, valid, encoding)."""
        return self.envelope if self.envelope is not None else encode_job(self.job).decode()

    def stop_timer(self) -> None:
        """Cancel the lease timer."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def _printable(message_id: str) -> str:
    """`message_id`, or its printable form if it came with bytes that are not UTF-8.

    Such an id (read with ``surrogateescape``: `_short_strings`) could be neither logged
    nor stored as the stand-in's id.
    """
    try:
        message_id.encode()
    except UnicodeEncodeError:
        return printable_job_id(message_id.encode("utf-8", "surrogateescape"))
    return message_id
