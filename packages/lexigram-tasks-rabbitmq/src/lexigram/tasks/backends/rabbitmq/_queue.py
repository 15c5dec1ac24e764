"""`RabbitMQTaskQueue`: `TaskQueueProtocol` on AMQP 0-9-1 (aio-pika / aiormq)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from lexigram.contracts.tasks import (
    BackendLookupProtocol,
    CacheBackendProtocol,
    CancelOutcome,
    Job,
    JobStatus,
    Result,
    TaskQueueError,
    decode_or_poison,
    parse_options,
)
from lexigram.tasks.backends.rabbitmq._cancel import announce, follow_cancellations
from lexigram.tasks.backends.rabbitmq._claims import BrokerClaims, Claims
from lexigram.tasks.backends.rabbitmq._connection import AMQPLink
from lexigram.tasks.backends.rabbitmq._consumer import DeliveryBuffer
from lexigram.tasks.backends.rabbitmq._delivery import Delivery
from lexigram.tasks.backends.rabbitmq._existing import ExistingOnlyLink, ExistingOnlyPublisher
from lexigram.tasks.backends.rabbitmq._leases import DeliveryLeases
from lexigram.tasks.backends.rabbitmq._options import (
    DEFAULT_AMQP_URL,
    RabbitMQOptions,
    family_queues,
    owned_queues,
    state_namespace,
    validate_queue_name,
)
from lexigram.tasks.backends.rabbitmq._publisher import JobPublisher
from lexigram.tasks.backends.rabbitmq._requeue import Republisher
from lexigram.tasks.backends.rabbitmq._state import CLAIM_MARGIN, JobStates
from lexigram.tasks.backends.rabbitmq._stores import (
    StoreOrigin,
    check_state_store,
    close_store,
    local_state_store,
    state_store_for,
    store_origin,
)

logger = logging.getLogger(__name__)

# Longest wait of an unsubscribed `dequeue_batch(n, timeout=0)` for the jobs the broker
# counted as ready: the consumer's prefetch brings a hundred in a few milliseconds.
_FIRST_BATCH_WAIT = 0.05


class RabbitMQTaskQueue:
    """A task queue on RabbitMQ (AMQP 0-9-1) with publisher confirms and manual acks.

    Nothing connects until the first operation. Jobs are JSON envelopes published
    persistently (``durable=True``) to a durable classic or quorum queue; `enqueue`
    returns Ok only after the broker confirmed the message. Workers consume with
    manual acks and a prefetch equal to their free slots. Each job handed out is
    leased for `lease_seconds`: the lease ends when its consumer's connection drops
    (the broker redelivers it) or when nobody acked or extended it in time (it is given
    back to the broker for another consumer). Every delivery carries its own lease
    token, and `ack`/`nack`/`extend_lease`/`retry_later` with a token that no longer
    holds the lease return False and change nothing. Delays use per-delay TTL queues
    that dead-letter back (or the delayed-message plugin), a rejected job is
    dead-lettered to ``<queue>.dlx``, and `get_job` / `delete_job` / `count` rely on a
    job-state store (see ``docs/backends/rabbitmq.md`` for where AMQP differs from the
    other backends).

    Args:
        amqp_url: ``amqp://user:pass@host:5672/vhost`` or ``amqps://...`` (TLS).
        queue_name: Queue to serve (also the prefix of its delay and dead-letter queues).
        options: The backend's options (`RabbitMQOptions`); the defaults when None.
        state_store: A shared `CacheBackendProtocol` (e.g. the Redis or Postgres one) for
            job-state records; None uses ``options.state_store`` / ``options.stores``,
            else keeps them in this process.
        backends: Where the backend those options name is found (the core passes its
            registry, `TaskBackendSpec.backends`); None: among the installed backends.
        **values: Option names of `RabbitMQOptions` as keyword arguments (e.g.
            ``visibility_timeout=5``), applied on top of `options`.

    Raises:
        TaskConfigurationError: An unknown option (naming the nearest one), a value out
            of range, or a malformed URL or queue name.

    Example:
        queue = RabbitMQTaskQueue("amqp://guest:guest@localhost:5672/", "emails")
        job_id = (await queue.enqueue(Job(name="send_email", args=("a@b.c",)))).unwrap()
    """

    def __init__(
        self,
        amqp_url: str = DEFAULT_AMQP_URL,
        queue_name: str = "tasks",
        *,
        options: RabbitMQOptions | None = None,
        state_store: CacheBackendProtocol | None = None,
        backends: BackendLookupProtocol | None = None,
        **values: Any,
    ) -> None:
        if values:
            given = parse_options("rabbitmq", queue_name, values, RabbitMQOptions)
            chosen = {name: getattr(given, name) for name in values}
            options = dataclasses.replace(options or RabbitMQOptions(), **chosen)
        self.options = options = options or RabbitMQOptions()
        self._queue_name = validate_queue_name(queue_name)
        # must_exist: a link and a publisher that create nothing on the broker (`_existing`).
        link_type = ExistingOnlyLink if options.must_exist else AMQPLink
        self._link = link_type(amqp_url, queue_name, options)
        self.target = self._link.target
        # A store built from the options is this queue's to close; one passed in is not.
        self._owned_state_store: CacheBackendProtocol | None = None
        origin = StoreOrigin("state_store")
        if state_store is None:
            state_store = state_store_for(options, queue_name, backends)
            origin = store_origin(options)
            if state_store is not None and state_store not in (options.stores, options.state_store):
                self._owned_state_store = state_store
        namespace = state_namespace(self.target.vhost, queue_name)
        store = (
            state_store
            if state_store is not None
            else local_state_store(self.target, namespace, options)
        )
        self._states = JobStates(
            store,
            namespace,
            state_ttl=options.state_ttl,
            claim_window=options.publish_timeout + CLAIM_MARGIN,
        )
        # What `check_connection` reads in a shared store (nothing in an in-process one).
        self._store_check = None if self._states.local else (origin, f"{namespace}check")
        claims: Claims = self._states
        if state_store is None and options.broker_idempotency:
            # No store other processes see: claim keys where every process looks.
            claims = BrokerClaims(self._link)
        self._claims = claims
        self._buffer = DeliveryBuffer(self._link, self._send_back_soon, self._holding)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._leases = DeliveryLeases(
            self._buffer, self._states, queue_name, self.lease_seconds, self._spawn
        )
        # The leases' own map: the settle paths change it through them, lookups read it.
        self._inflight = self._leases.inflight
        publisher_type = ExistingOnlyPublisher if options.must_exist else JobPublisher
        self._publisher = publisher_type(self._link, self._states, claims, options, queue_name)
        self._republisher = Republisher(self._publisher, self._buffer, self._states, self._leases)
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"RabbitMQTaskQueue(url={self._link.masked_url!r}, queue_name={self._queue_name!r}, "
            f"queue_type={self.options.queue_type!r})"
        )

    @property
    def lease_seconds(self) -> float:
        """The lease of a delivery, in seconds (``visibility_timeout``)."""
        return float(self.options.visibility_timeout)

    @property
    def visibility_timeout(self) -> float:
        """The lease of a delivery, in seconds (the option's name; see `lease_seconds`)."""
        return float(self.options.visibility_timeout)

    @property
    def queue_name(self) -> str:
        """Name of the queue this object serves."""
        return self._queue_name

    @property
    def url(self) -> str:
        """The broker URL with its password masked (safe to log)."""
        return self._link.masked_url

    @property
    def state_store(self) -> CacheBackendProtocol:
        """The job-state store (in-process unless a shared one was passed)."""
        return self._states.store

    async def connect(self) -> None:
        """Connect and declare the queues now instead of on first use (none with ``must_exist``).

        Raises:
            BackendConnectionError: The broker cannot be reached.
            TaskConfigurationError: The queue exists with other arguments.
        """
        await self._link.ready()

    async def check_connection(self) -> None:
        """Reach the broker (as below) and read the shared job-state store once.

        The CLI's start-up check. On a first connect, declaring the topology (the queue
        with its arguments, its dead-letter exchange and queue) is the check, so nothing
        more is asked; a connection already up answers one passive declare. `count`
        passive-declares each of the queue's delay buckets too, reopening the channel
        after each one that does not exist (about 30 ms on a local broker), and asks the
        state store. With ``must_exist`` nothing is declared: the check is that the broker
        answers, whether or not the queue exists (``schedule`` and ``dlq`` need none).

        A shared job-state store (``stores`` / ``state_store``) answers one read of a
        key, at the same time and within `connect_timeout` too: every job handed out or
        enqueued is recorded there, so a worker whose store refuses it would consume and
        run nothing. The broker's error comes first when both fail.

        Raises:
            BackendConnectionError: The broker cannot be reached or did not answer
                within `publish_timeout`, or the job-state store failed its read or did
                not answer within `connect_timeout` (naming the option it came from).
            TaskConfigurationError: The queue exists with other arguments.
        """
        if self._store_check is None:
            await self._check_broker()
            return
        origin, key = self._store_check
        checks = await asyncio.gather(
            self._check_broker(),
            check_state_store(
                self._states.store, key, origin, self._queue_name, self.options.connect_timeout
            ),
            return_exceptions=True,
        )
        for outcome in checks:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _check_broker(self) -> None:
        if not self._link.connected:
            await self._link.ready()
            return
        await self._link.depths([self._queue_name], action="answer a connection check")

    # -- enqueue ---------------------------------------------------------------------

    async def enqueue(self, task: Job) -> Result[str, TaskQueueError]:
        """Publish a job and wait for the broker's confirm.

        Returns:
            Ok(job id) once the broker confirmed it (or the first job's id for a held
            idempotency key / an id already queued); Err for an invalid job or a
            message the broker refused.

        Raises:
            BackendConnectionError: No confirm within `publish_timeout`.
        """
        return await self._publisher.enqueue(task)

    async def enqueue_many(self, tasks: Sequence[Job]) -> list[Result[str, TaskQueueError]]:
        """Publish jobs many per socket write, with up to `publish_window` confirms in flight.

        Every Ok still means the broker confirmed that job. A job whose confirm did not
        come (the connection dropped mid-batch) is published again on its own, waiting
        for the reconnect as `enqueue` does; if the first copy did arrive, the job is
        delivered twice (at-least-once, as for any publish retried across a reconnect).

        Returns:
            One result per job, in order. A job whose publish failed on a connection
            error gets Err(BackendConnectionError) instead of raising, so the caller
            learns which jobs did reach the broker.
        """
        return await self._publisher.enqueue_many(tasks)

    # -- dequeue ---------------------------------------------------------------------

    async def dequeue(self) -> Job | None:
        """Lease the next ready job (highest priority first), or None.

        It never waits for a job to come; only for the jobs this object is putting back
        into the queue at that moment (see below), which are ready already.
        """
        while True:
            got = await self._buffer.get()
            if got is not None:
                self._buffer.push(got)
            for delivery in self._buffer.take(1):
                jobs = await self._leases.hand_out([delivery])
                if jobs:
                    return jobs[0]
            if got is not None or self._buffer.best_priority() is not None:
                continue
            if not self._tasks:
                return None
            # Jobs this object is putting back (what an idle consumer hands back, a delay
            # hop, a lease that ran out) are in neither the queue nor the buffer until the
            # broker has them again: wait for those, never for new jobs.
            await self._settle_background()

    async def dequeue_batch(self, max_jobs: int, *, timeout: float = 0.0) -> list[Job]:
        """Lease up to `max_jobs` ready jobs, waiting up to `timeout` s for the first.

        With a timeout the wait is the AMQP consumer itself: the broker pushes jobs as
        they arrive, up to a prefetch of (jobs in flight + `max_jobs`), or up to a tenth
        more while it stays within that (`prefetch_target`).
        """
        if max_jobs <= 0:
            return []
        buffer = self._buffer
        if timeout <= 0 and not buffer.consuming:
            # Not subscribed: look at the queue as it is now (basic.get).
            return await self._first_batch(max_jobs)
        if not self._link.connected:
            await self._link.ready()  # a first connect fails on its own, with its cause
        buffer.enter()
        try:
            deadline = time.monotonic() + timeout
            try:
                # Bounded: while reconnecting, subscribing waits for the connection.
                async with asyncio.timeout(max(timeout, self.options.connect_timeout)):
                    await buffer.ensure_consuming(len(self._inflight) + max_jobs)
            except TimeoutError:
                return []
            while True:
                jobs = await self._leases.hand_out(buffer.take(max_jobs))
                remaining = deadline - time.monotonic()
                if jobs or remaining <= 0:
                    return jobs
                await buffer.wait(remaining)
        finally:
            buffer.leave()

    async def _first_batch(self, max_jobs: int) -> list[Job]:
        """Lease up to `max_jobs` ready jobs while unsubscribed (a worker's first batch).

        One basic.get says whether a job is ready and how many wait behind it. A job
        alone is handed out at once. Otherwise work is flowing: the consumer subscribes,
        so this batch and the caller's next ones come from its prefetch, which the broker
        pushes in one stream, instead of a basic.get round trip per job (100 of them were
        a worker's first ~70 ms). The batch waits a moment for the jobs counted behind
        the first (other consumers may take some), and is handed out as one (one
        state-store round trip).
        """
        buffer = self._buffer
        got = await buffer.get()
        if got is None:
            return []
        buffer.push(got)
        wanted = min(max_jobs, 1 + buffer.ready_behind)
        if wanted == 1:
            # Nothing waits behind it: hand it out now, not after subscribing (a channel,
            # its prefetch and basic.consume, about 6 ms on a local broker); the caller's
            # next wait subscribes.
            return await self._leases.hand_out(buffer.take(1))
        deadline = time.monotonic() + _FIRST_BATCH_WAIT
        jobs: list[Job] = []
        buffer.enter()
        try:
            await buffer.ensure_consuming(len(self._inflight) + max_jobs)
            # A hand-out drops deliveries of deleted jobs: take more for their places.
            while len(jobs) < wanted:
                await buffer.wait_ready(wanted - len(jobs), deadline - time.monotonic())
                taken = buffer.take(max_jobs - len(jobs))
                if not taken:
                    break
                jobs += await self._leases.hand_out(taken)
            return jobs
        finally:
            buffer.leave()

    def _send_back_soon(self, delivery: Delivery) -> None:
        self._spawn(self._republisher.send_back(delivery))

    # -- settle ----------------------------------------------------------------------

    async def extend_lease(
        self, task_id: str, seconds: float | None = None, *, lease_token: str | None = None
    ) -> bool:
        """Renew the lease of a job held here (the worker's heartbeat).

        Returns:
            True while the delivery is held under `lease_token`; False once it was
            settled, deleted, given back after its lease ran out, or lost with its
            channel (the broker has then requeued it).
        """
        delivery = self._leases.held(task_id, lease_token)
        if delivery is None:
            return False
        if await self._states.is_deleted(task_id):
            if self._inflight.get(task_id) is delivery:
                # Deleted through another queue object: settle the message, so it never comes back.
                self._leases.take(task_id)
                await self._buffer.ack(delivery)
                await self._states.forget(task_id)
            return False
        if self._inflight.get(task_id) is not delivery:
            return False
        length = self.lease_seconds if seconds is None else max(float(seconds), 0.001)
        self._leases.arm(delivery, length)
        await self._states.renewed(task_id, delivery.record(), length)
        return True

    async def ack(self, task_id: str, *, lease_token: str | None = None) -> bool:
        """Acknowledge a finished job (coalesced into multiple-acks where safe).

        Returns:
            True if the delivery was held under `lease_token` and is now settled.
        """
        delivery = self._leases.held(task_id, lease_token)
        if delivery is None:
            return False
        self._leases.take(task_id)
        if not await self._buffer.ack(delivery):
            return False  # the channel died meanwhile: the broker redelivers it
        await self._states.forget(task_id)
        return True

    async def nack(
        self, task_id: str, requeue: bool = True, *, lease_token: str | None = None
    ) -> bool:
        """Requeue a leased job now, or dead-letter it to ``<queue>.dlx``.

        A requeued job is re-published (confirmed) with its delivery count, then the
        original is acked, so its next delivery counts exactly.

        Returns:
            True if the delivery was held under `lease_token` and is now settled.
        """
        delivery = self._leases.held(task_id, lease_token)
        if delivery is None:
            return False
        self._leases.take(task_id)
        if not requeue or await self._states.is_deleted(task_id):
            await self._buffer.reject(delivery, requeue=False)
            await self._states.forget(task_id)
            return True
        job = delivery.job
        job.status = JobStatus.RETRYING if job.retry_count > 0 else JobStatus.PENDING
        await self._republisher.requeue(job, delivery, delay=0.0)
        return True

    async def retry_later(self, task: Job, *, delay: float = 0.0) -> bool:
        """Publish the updated job (confirmed) to the delay path, then ack the original.

        Fenced by ``task.lease_token`` like `ack`.

        Returns:
            True if the delivery was held and the job waits again; False otherwise.
        """
        delivery = self._leases.held(task.id, task.lease_token)
        if delivery is None:
            return False
        self._leases.take(task.id)
        if await self._states.is_deleted(task.id):
            await self._buffer.ack(delivery)
            await self._states.forget(task.id)
            return False
        if task.status in (JobStatus.RUNNING, JobStatus.PENDING):
            task.status = JobStatus.RETRYING if task.retry_count > 0 else JobStatus.PENDING
        task.scheduled_at = time.time() + delay if delay > 0 else None
        await self._republisher.requeue(task, delivery, delay=max(0.0, delay))
        return True

    def _holding(self) -> bool:
        return bool(self._inflight)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle_background(self) -> None:
        """Wait for give-backs and send-backs under way (before counting)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- lookups ---------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job | None:
        """Return a waiting or running job by id (from the in-flight map or the state store)."""
        delivery = self._inflight.get(job_id)
        if delivery is not None and not delivery.stale:
            return Job.from_dict(delivery.job.to_dict())
        running = await self._states.running_envelope(job_id)
        if running is not None:
            job = decode_or_poison(job_id, running, queue_name=self.queue_name)
            job.status = JobStatus.RUNNING
            return job
        waiting = await self._states.waiting_envelope(job_id)
        return (
            None
            if waiting is None
            else decode_or_poison(job_id, waiting, queue_name=self.queue_name)
        )

    async def delete_job(self, job_id: str) -> bool:
        """Delete a waiting or running job; it is never delivered again.

        A job running here is acked at once (its holder's token is refused from then
        on, so its worker sees `extend_lease` False); a waiting one, or one running in
        another process, gets a tombstone and is dropped when the broker delivers it.
        """
        delivery = self._leases.take(job_id)
        if delivery is not None:
            if await self._buffer.ack(delivery):
                await self._states.forget(job_id)
            else:
                await self._states.delete(job_id)
            return True
        return await self._states.delete(job_id)

    async def cancel(self, job_id: str) -> CancelOutcome:
        """Remove a waiting job (REMOVED), or remove a running one and announce it (STOPPING).

        The job is deleted as `delete_job` deletes it (a tombstone, or an ack when it
        runs here), then a running one is announced on the ``<queue>.cancel`` fanout
        exchange. A job running in another process is known only through a shared state
        store; with the in-process one, cancelling it from here gives NOT_FOUND.
        """
        delivery = self._inflight.get(job_id)
        running = delivery is not None and not delivery.stale
        if not running:
            running = await self._states.running_envelope(job_id) is not None
        if not await self.delete_job(job_id):
            return CancelOutcome.NOT_FOUND
        if not running:
            return CancelOutcome.REMOVED
        await announce(self._link, job_id)
        return CancelOutcome.STOPPING

    def cancellations(self) -> AsyncIterator[str]:
        """Yield the id of every job of this queue cancelled while running (any process)."""
        return follow_cancellations(self._link)

    async def get_task_count(self) -> int:
        """Number of jobs waiting (ready or delayed, not in flight)."""
        return await self.count(self._queue_name, JobStatus.PENDING)

    async def count(self, queue_name: str, status: JobStatus | None = None) -> int:
        """Count jobs; waiting ones come from the broker's queue depths.

        PENDING = messages ready in the queue and its delay buckets, plus those
        buffered here, minus deleted ones not yet dropped; RUNNING = leases that have
        not run out (this process's, or every process's with a shared state store,
        whose running records expire with the lease); RETRYING = jobs waiting for a
        retry scheduled through this state store.
        """
        wanted = None if status is None else JobStatus(status)
        if wanted in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED):
            return 0
        if queue_name != self._queue_name:
            if wanted in (None, JobStatus.PENDING):
                return await self._broker_depth(queue_name)
            return 0
        if wanted is JobStatus.RETRYING:
            return await self._states.count("retry")
        total = 0
        if wanted in (None, JobStatus.PENDING):
            await self._buffer.quiesce()
            await self._settle_background()
            await self._buffer.quiesce()
            depth = await self._broker_depth(queue_name) + len(self._buffer)
            total += max(0, depth - await self._states.count("del"))
        if wanted in (None, JobStatus.RUNNING):
            total += await self._running()
        return total

    async def _running(self) -> int:
        return await self._states.count("run")

    async def _broker_depth(self, queue_name: str) -> int:
        """Ready messages in `queue_name` and its delay buckets (passive declares)."""
        return sum(await self._link.depths(family_queues(queue_name)))

    async def clear(self) -> None:
        """Purge the queue and its delay buckets, and drop every job held here."""
        # Unsubscribe first: each ack below frees a prefetch slot the broker would refill.
        await self._buffer.quiesce()
        for job_id in list(self._inflight):
            await self.delete_job(job_id)
        for delivery in self._buffer.drain():
            await self._buffer.ack(delivery)
        for job_id in await self._states.running_ids():
            await self._states.delete(job_id)
        await self._link.purge(family_queues(self._queue_name))
        await self._states.clear()
        if self._claims is not self._states:
            await self._claims.clear()

    async def delete_queues(self, *, if_empty: bool = True) -> None:
        """Delete what this queue created on the broker, e.g. after a test or a demo.

        Removes the queue, its delay buckets, ``<queue>.dlx`` (queue and exchange), the
        delayed-message exchange and the idempotency keys claimed on the broker. Close
        this object afterwards: a later enqueue would find no queue (the next
        `RabbitMQTaskQueue` of that name declares them again).

        Args:
            if_empty: Refuse while any job waits, runs here, or sits in ``<queue>.dlx``.

        Raises:
            TaskQueueError: `if_empty` and jobs remain (the message says how many).
            BackendConnectionError: The broker cannot be reached.
        """
        await self._buffer.quiesce()
        if if_empty:
            depths = await self._link.depths(owned_queues(self._queue_name))
            left = sum(depths) + len(self._inflight) + len(self._buffer)
            if left:
                msg = (
                    f"RabbitMQ queue {self._queue_name!r} still holds {left} job(s) (waiting, "
                    "running here, or dead-lettered); drain or clear() it first, or pass "
                    "if_empty=False to delete them with the queue."
                )
                raise TaskQueueError(msg, queue_name=self._queue_name)
        await BrokerClaims(self._link).delete()
        await self._link.delete_topology()

    async def close(self) -> None:
        """Stop consuming and close the connection; unacked jobs return to the queue."""
        if self._closed:
            return
        self._closed = True
        for delivery in self._inflight.values():
            delivery.stop_timer()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._buffer.close()
        await self._link.close()
        await close_store(self._owned_state_store)
