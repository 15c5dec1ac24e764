"""``must_exist``: a queue object that creates nothing on the broker.

The command line's read-only commands (``inspect``, ``job``, ``dlq``, ``schedule``,
``workflow show``, ``dashboard``) set the option, so that a mistyped ``--queue`` leaves
no durable queue, dead-letter queue or exchange behind. With it:

- `ExistingOnlyLink` connects without declaring anything, so the connection check asks
  only that the broker answers (``schedule``, ``dlq`` and ``workflow show`` need no
  queue: they read the ``stores`` backend), and it looks delay buckets up instead of
  declaring them;
- a count of a missing queue is 0, which the passive declares of `AMQPLink.depths`
  already give (an honest answer for a reader: no job waits there);
- an enqueue (`ExistingOnlyPublisher`) or a consume (the consumer calls `require_queue`
  before its first fetch or subscription) of a missing queue fails with one line
  naming it (`QueueMissingError`).

A queue object without the option never runs any of this: its link and publisher are
the plain ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import aiormq
from aio_pika.abc import AbstractRobustChannel
from aiormq.abc import AbstractChannel

from lexigram.contracts.tasks import BackendError, Err, Job, TaskQueueError
from lexigram.tasks.backends.rabbitmq._connection import AMQPLink
from lexigram.tasks.backends.rabbitmq._options import (
    BUCKET_MAX_EXP,
    BUCKET_MIN_EXP,
    RabbitMQOptions,
    bucket_queue_name,
    delayed_exchange_name,
)
from lexigram.tasks.backends.rabbitmq._publisher import JobPublisher, JobResult

Kind = Literal["queue", "exchange"]


class QueueMissingError(BackendError):
    """A queue the operation needs does not exist, and ``must_exist`` forbids creating it.

    Not a `BackendConnectionError`: the broker answered, so nothing retries it as a
    lost connection.
    """


async def exists(channel: AbstractChannel, kind: Kind, name: str) -> bool:
    """Whether queue or exchange `name` exists (a passive declare; "not found" closes `channel`)."""
    try:
        if kind == "queue":
            await channel.queue_declare(name, passive=True)
        else:
            await channel.exchange_declare(name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return False
    return True


def missing(link: AMQPLink, name: str) -> QueueMissingError:
    """The one-line error for queue `name` (`link`'s own, or one of its delay buckets)."""
    queue = link.queue_name
    if name == queue:
        what = f"RabbitMQ queue {queue!r}"
        fix = "Check --queue and the config's queue_name, or start a worker, which declares it."
    else:
        what = f"RabbitMQ queue {name!r} (a delay bucket of queue {queue!r})"
        fix = "An enqueue without must_exist (a worker's or the application's) declares it."
    msg = (
        f"{what} does not exist on {link.masked_url} (must_exist is set: this command "
        f"creates nothing). {fix}"
    )
    return QueueMissingError(msg, details={"backend": "rabbitmq", "queue": name})


async def require_queue(link: AMQPLink, name: str | None = None) -> None:
    """Refuse queue `name` (`link`'s own by default) when it does not exist.

    Raises:
        QueueMissingError: It does not exist.
        BackendConnectionError: The broker cannot be reached.
    """
    wanted = link.queue_name if name is None else name
    found = await link.with_channel(
        "look up the queue", lambda channel: exists(channel, "queue", wanted)
    )
    if not found:
        raise missing(link, wanted)


class ExistingOnlyLink(AMQPLink):
    """An `AMQPLink` that declares nothing: what it uses is looked up (passive declares)."""

    def __init__(self, url: str, queue_name: str, options: RabbitMQOptions) -> None:
        super().__init__(url, queue_name, options)
        self._found_buckets: set[int] = set()

    async def _declare_topology(self, channel: AbstractRobustChannel) -> None:
        # Nothing is declared and nothing required: opening the channel proves the broker
        # answers, which is all a command that needs no queue (schedule, dlq) asks.
        if self.options.delay_mode != "ttl":
            # The queue's workers delay through the plugin when its exchange exists.
            self.use_plugin = await self._guard(
                "look up the delayed-message exchange", self._delayed_exchange_exists()
            )

    async def _delayed_exchange_exists(self) -> bool:
        # A throwaway channel: "not found" closes the channel it happens on, and `ready`
        # (which calls this under its lock) cannot lend one through `with_channel`.
        assert self.connection is not None  # noqa: S101 - called after connecting
        transport = self.connection.transport
        if transport is None:
            return False
        probe = await transport.connection.channel()
        try:
            return await exists(probe, "exchange", delayed_exchange_name(self.queue_name))
        finally:
            if not probe.is_closed:
                await probe.close()

    async def ensure_bucket(self, exp: int) -> str:
        """Look the delay bucket 2**exp ms up instead of declaring it; return its name.

        Raises:
            QueueMissingError: No delayed job has needed the bucket yet, so it does not
                exist.
        """
        exp = max(BUCKET_MIN_EXP, min(exp, BUCKET_MAX_EXP))
        name = bucket_queue_name(self.queue_name, exp)
        if exp not in self._found_buckets:
            await require_queue(self, name)
            self._found_buckets.add(exp)
        return name


class ExistingOnlyPublisher(JobPublisher):
    """A `JobPublisher` that refuses every job while its queue does not exist.

    The queue is looked up before anything else (the job-state record, an idempotency
    claim), so a refused job leaves no trace. Each call looks it up again: a process
    with ``must_exist`` reads, and seldom enqueues (``dlq retry``).
    """

    async def enqueue(self, job: Job) -> JobResult:
        """As `JobPublisher.enqueue` once the queue is found; else Err(`QueueMissingError`).

        A delayed job whose delay bucket does not exist is refused too (its record is
        forgotten first), as `enqueue_many` refuses it.
        """
        refused = await self._refusal()
        if refused is not None:
            return refused
        try:
            return await super().enqueue(job)
        except QueueMissingError as exc:
            return Err(exc)

    async def enqueue_many(self, jobs: Sequence[Job]) -> list[JobResult]:
        """As `JobPublisher.enqueue_many` once the queue is found; else one Err per job."""
        refused = await self._refusal() if jobs else None
        if refused is not None:
            return [refused] * len(jobs)
        return await super().enqueue_many(jobs)

    async def _refusal(self) -> Err[TaskQueueError] | None:
        try:
            await require_queue(self._link)
        except QueueMissingError as exc:
            return Err(exc)
        return None
