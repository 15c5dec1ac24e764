"""`RabbitMQTaskQueue`: `TaskQueueProtocol` on AMQP 0-9-1 (aio-pika / aiormq)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from lexigram.contracts.tasks import (
    CacheBackendProtocol,
    HookRegistryProtocol,
    Job,
    JobStatus,
    Result,
    TaskQueueError,
    decode_job,
    encode_job,
)
from lexigram.tasks.backends.rabbitmq._bulk import Published
from lexigram.tasks.backends.rabbitmq._consumer import Delivery, DeliveryBuffer
from lexigram.tasks.backends.rabbitmq._link import CONNECTION_ERRORS, AMQPLink
from lexigram.tasks.backends.rabbitmq._options import (
    DAY,
    DEFAULT_AMQP_URL,
    DelayMode,
    QueueMode,
    QueueType,
    RabbitMQSettings,
    family_queues,
    owned_queues,
    parse_amqp_url,
    state_namespace,
    validate_queue_name,
)
from lexigram.tasks.backends.rabbitmq._publisher import JobPublisher
from lexigram.tasks.backends.rabbitmq._state import JobStates, LocalStateStore

logger = logging.getLogger(__name__)

_STALE_DONE_LIMIT = 10_000
_REBUCKET_ERRORS: tuple[type[Exception], ...] = (TaskQueueError, *CONNECTION_ERRORS)


class RabbitMQTaskQueue:
    """A task queue on RabbitMQ (AMQP 0-9-1) with publisher confirms and manual acks.

    Nothing connects until the first operation. Jobs are JSON envelopes published
    persistently (``durable=True``) to a durable classic or quorum queue; `enqueue`
    returns Ok only after the broker confirmed the message. Workers consume with
    manual acks and a prefetch equal to their free slots; a consumer that loses its
    connection gets its unacked jobs redelivered by the broker, and the connection,
    channels and consumer recover on their own after a broker restart. Delays use
    per-delay TTL queues that dead-letter back (or the delayed-message plugin), a
    rejected job is dead-lettered to ``<queue>.dlx``, and `get_job` / `delete_job` /
    `count` rely on a job-state store (see ``docs/backends/rabbitmq.md`` for where AMQP
    differs from the other backends).

    Args:
        amqp_url: ``amqp://user:pass@host:5672/vhost`` or ``amqps://...`` (TLS).
        queue_name: Queue to serve (also the prefix of its delay and dead-letter queues).
        durable: Durable queues and persistent messages (survive a broker restart).
        queue_type: ``classic`` (priorities) or ``quorum`` (replicated).
        max_priority: ``x-max-priority`` of a classic queue; job priorities 0..255 are
            mapped onto 0..max_priority keeping their order.
        queue_version: ``x-queue-version`` of the classic queues (2 by default: faster
            confirms for persistent messages; None for the broker's default).
        queue_mode: ``x-queue-mode`` of the classic queues (``lazy`` by default: messages
            go to disk as they arrive, which on RabbitMQ 3.10/3.11 takes persistent
            messages faster; 3.12+ ignores it). None sends no argument.
        visibility_timeout: The worker's heartbeat basis. AMQP has no lease expiry: a
            job stays with its consumer until acked or the connection drops.
        state_store: A shared `CacheBackendProtocol` (e.g. the Redis or Postgres one) for
            job-state records; None keeps them in this process.
        idempotency_ttl: How long an idempotency key is held, in seconds.
        delay_mode: ``ttl`` (bucket queues, default), ``plugin`` or ``auto``.
        dead_letter_ttl: ``x-message-ttl`` of ``<queue>.dlx``; None keeps dead letters.
        connect_timeout: Seconds to wait for the broker on connect.
        reconnect_interval: Seconds between reconnect attempts.
        publish_timeout: Seconds an enqueue waits for a confirm, reconnects included.
        publish_window: Confirms in flight at once in `enqueue_many`.
        state_ttl: Lifetime of a job-state record in seconds (plus the job's delay).
        state_max_entries: Size bound of the in-process state store.

    Example:
        queue = RabbitMQTaskQueue("amqp://guest:guest@localhost:5672/", "emails")
        job_id = (await queue.enqueue(Job(name="send_email", args=("a@b.c",)))).unwrap()
    """

    def __init__(
        self,
        amqp_url: str = DEFAULT_AMQP_URL,
        queue_name: str = "tasks",
        *,
        durable: bool = True,
        queue_type: QueueType = "classic",
        max_priority: int = 10,
        queue_version: int | None = 2,
        queue_mode: QueueMode | None = "lazy",
        visibility_timeout: float = 30.0,
        state_store: CacheBackendProtocol | None = None,
        idempotency_ttl: float = DAY,
        delay_mode: DelayMode = "ttl",
        dead_letter_ttl: float | None = 7 * DAY,
        connect_timeout: float = 10.0,
        reconnect_interval: float = 1.0,
        publish_timeout: float = 30.0,
        publish_window: int = 256,
        state_ttl: float = 7 * DAY,
        state_max_entries: int = 100_000,
    ) -> None:
        self.settings = RabbitMQSettings(
            durable=durable,
            queue_type=queue_type,
            max_priority=max_priority,
            queue_version=queue_version,
            queue_mode=queue_mode,
            visibility_timeout=visibility_timeout,
            idempotency_ttl=idempotency_ttl,
            delay_mode=delay_mode,
            dead_letter_ttl=dead_letter_ttl,
            connect_timeout=connect_timeout,
            reconnect_interval=reconnect_interval,
            publish_timeout=publish_timeout,
            publish_window=publish_window,
            state_ttl=state_ttl,
            state_max_entries=state_max_entries,
        )
        self.target = parse_amqp_url(amqp_url)
        self._queue_name = validate_queue_name(queue_name)
        self.visibility_timeout = float(visibility_timeout)
        self._link = AMQPLink(amqp_url, queue_name, self.settings)
        store = (
            state_store
            if state_store is not None
            else LocalStateStore(max_entries=state_max_entries)
        )
        self._states = JobStates(
            store,
            state_namespace(self.target.vhost, queue_name),
            shared=state_store is not None,
            state_ttl=state_ttl,
        )
        self._buffer = DeliveryBuffer(self._link, self._send_back_soon, self._holding)
        self._inflight: dict[str, Delivery] = {}
        self._cancelled: set[str] = set()
        self._done_stale: OrderedDict[str, None] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._publisher = JobPublisher(self._link, self._states, self.settings, queue_name)
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"RabbitMQTaskQueue(url={self._link.masked_url!r}, queue_name={self._queue_name!r}, "
            f"queue_type={self.settings.queue_type!r})"
        )

    @property
    def lease_seconds(self) -> float:
        """The heartbeat basis (AMQP holds a delivery until ack or connection loss)."""
        return self.visibility_timeout

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

    def set_hook_registry(self, hooks: HookRegistryProtocol | None) -> None:
        """Attach an optional hook registry; each newly published job emits ``"task.queued"``.

        The payload is core's `TaskEnqueuedHook`, imported only when a registry is set
        (a process that passes one runs the core). Pass None to stop emitting.
        """
        self._publisher.set_hook_registry(hooks)

    async def connect(self) -> None:
        """Connect and declare the queues now instead of on first use.

        Raises:
            BackendConnectionError: The broker cannot be reached.
            TaskConfigurationError: The queue exists with other arguments.
        """
        await self._link.ready()

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
        """Lease the next ready job (highest priority first), or None; never waits."""
        while True:
            got = await self._buffer.get()
            if got is not None:
                self._buffer.push(got)
            for delivery in self._buffer.take(1):
                jobs = await self._hand_out([delivery])
                if jobs:
                    return jobs[0]
            if got is None and self._buffer.best_priority() is None:
                return None

    async def dequeue_batch(self, max_jobs: int, *, timeout: float = 0.0) -> list[Job]:
        """Lease up to `max_jobs` ready jobs, waiting up to `timeout` s for the first.

        With a timeout the wait is the AMQP consumer itself: the broker pushes jobs as
        they arrive, up to a prefetch of (jobs in flight + `max_jobs`).
        """
        if max_jobs <= 0:
            return []
        buffer = self._buffer
        if timeout <= 0 and not buffer.consuming:
            # Not subscribed: look at the queue as it is now, job by job (basic.get).
            jobs: list[Job] = []
            while len(jobs) < max_jobs and (job := await self.dequeue()) is not None:
                jobs.append(job)
            if jobs:
                # Work is flowing: subscribe, so the caller's next batches come from
                # the consumer's prefetch instead of one round trip per job.
                buffer.enter()
                try:
                    await buffer.ensure_consuming(len(self._inflight) + max_jobs - len(jobs))
                finally:
                    buffer.leave()
            return jobs
        buffer.enter()
        try:
            deadline = time.monotonic() + timeout
            try:
                # Bounded: while reconnecting, subscribing waits for the connection.
                async with asyncio.timeout(max(timeout, self.settings.connect_timeout)):
                    await buffer.ensure_consuming(len(self._inflight) + max_jobs)
            except TimeoutError:
                return []
            while True:
                jobs = await self._hand_out(buffer.take(max_jobs))
                remaining = deadline - time.monotonic()
                if jobs or remaining <= 0:
                    return jobs
                await buffer.wait(remaining)
        finally:
            buffer.leave()

    async def _hand_out(self, deliveries: list[Delivery]) -> list[Job]:
        jobs: list[Job] = []
        for delivery in deliveries:
            job = delivery.job
            current = self._inflight.get(job.id)
            if current is not None and not current.stale:
                # A second copy of a job that is running here (e.g. published twice
                # across a reconnect): the running one settles it, drop this one.
                await self._buffer.ack(delivery)
                continue
            if job.id in self._done_stale:
                # It finished while its first delivery's channel was gone: do not rerun.
                del self._done_stale[job.id]
                await self._buffer.ack(delivery)
                continue
            if await self._states.take_if_deleted(job.id):
                await self._buffer.ack(delivery)
                continue
            await self._states.started(job.id, delivery.envelope, retried=job.retry_count > 0)
            job.status = JobStatus.RUNNING
            self._inflight[job.id] = delivery
            jobs.append(job)
        return jobs

    def _send_back_soon(self, delivery: Delivery) -> None:
        task = asyncio.ensure_future(self._send_back(delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_back(self, delivery: Delivery) -> None:
        """Re-publish a delivery that is not handed out now, then ack it.

        Used for a job that came back from a delay bucket before it is due (it goes on
        to the next smaller bucket), a classic-queue redelivery (its count raised, so
        the next delivery counts exactly), and jobs an idle consumer hands back. The
        delivery itself is not counted: the copy carries the count of deliveries that
        really happened.
        """
        job = delivery.job
        remaining = (job.scheduled_at or 0.0) - time.time()
        job.delivery_count -= 1
        try:
            outcome = await self._publisher.publish(job, encode_job(job), remaining)
        except _REBUCKET_ERRORS as exc:
            logger.warning("Could not re-publish job %s (%s); it comes back later.", job.id, exc)
            outcome = Published.NACK
        if outcome is Published.ACK:
            await self._buffer.ack(delivery)
            return
        await asyncio.sleep(1.0)  # do not spin on a broker that keeps refusing
        await self._buffer.reject(delivery, requeue=True)

    # -- settle ----------------------------------------------------------------------

    async def extend_lease(self, task_id: str, seconds: float | None = None) -> bool:
        """Confirm the job is still held; AMQP has no lease to extend.

        A delivery stays with its consumer until acked or until the connection drops,
        so this returns True while the delivery is held and its channel is alive, and
        False once the job was deleted or the channel was lost (the broker has then
        requeued it). The broker's ``consumer_timeout`` bounds a hung handler.
        """
        if task_id in self._cancelled:
            return False
        delivery = self._inflight.get(task_id)
        if delivery is None or delivery.stale:
            return False
        return not (self._states.shared and await self._states.is_deleted(task_id))

    async def ack(self, task_id: str) -> None:
        """Acknowledge a finished job (coalesced into multiple-acks where safe)."""
        if task_id in self._cancelled:
            self._cancelled.discard(task_id)  # deleted while running: already settled
            return
        delivery = self._take(task_id)
        if delivery is None:
            return
        if not await self._buffer.ack(delivery):
            self._remember_stale_done(task_id)
        await self._states.forget(task_id)

    async def nack(self, task_id: str, requeue: bool = True) -> None:
        """Requeue a leased job now, or dead-letter it to ``<queue>.dlx``.

        A requeued job is re-published (confirmed) with its delivery count, then the
        original is acked, so its next delivery counts exactly.
        """
        if task_id in self._cancelled:
            self._cancelled.discard(task_id)
            return
        delivery = self._take(task_id)
        if delivery is None:
            return
        if not requeue or await self._states.is_deleted(task_id):
            await self._buffer.reject(delivery, requeue=False)
            await self._states.forget(task_id)
            return
        if delivery.stale:
            return  # the broker already requeued it when the channel closed
        job = delivery.job
        job.status = JobStatus.RETRYING if job.retry_count > 0 else JobStatus.PENDING
        await self._requeue(job, delivery, delay=0.0)

    async def retry_later(self, task: Job, *, delay: float = 0.0) -> None:
        """Publish the updated job (confirmed) to the delay path, then ack the original."""
        if task.id in self._cancelled:
            self._cancelled.discard(task.id)
            return
        delivery = self._take(task.id)
        if delivery is not None and delivery.stale:
            return  # the broker redelivers the original; this retry's state is lost
        if await self._states.is_deleted(task.id):
            if delivery is not None:
                await self._buffer.ack(delivery)
            return
        if task.status in (JobStatus.RUNNING, JobStatus.PENDING):
            task.status = JobStatus.RETRYING if task.retry_count > 0 else JobStatus.PENDING
        task.scheduled_at = time.time() + delay if delay > 0 else None
        await self._requeue(task, delivery, delay=max(0.0, delay))

    async def _requeue(self, job: Job, delivery: Delivery | None, *, delay: float) -> None:
        body = encode_job(job)
        # Recorded first: once published, the job may be delivered and finished at once.
        await self._states.requeued(
            job.id, body.decode(), retrying=job.retry_count > 0, delay=delay
        )
        try:
            outcome = await self._publisher.publish(job, body, delay)
        except TaskQueueError:
            outcome = Published.NACK
            logger.warning(
                "Could not requeue job %s; the broker redelivers it.", job.id, exc_info=True
            )
        if outcome is not Published.ACK:
            if delivery is not None:
                await self._buffer.reject(delivery, requeue=True)
            return
        if delivery is not None:
            await self._buffer.ack(delivery)

    def _holding(self) -> bool:
        return bool(self._inflight)

    def _take(self, job_id: str) -> Delivery | None:
        """Remove a job from the in-flight map (the consumer may go idle after the last)."""
        delivery = self._inflight.pop(job_id, None)
        if delivery is not None and not self._inflight:
            self._buffer.settled()
        return delivery

    def _remember_stale_done(self, task_id: str) -> None:
        self._done_stale[task_id] = None
        if len(self._done_stale) > _STALE_DONE_LIMIT:
            self._done_stale.popitem(last=False)

    # -- lookups ---------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job | None:
        """Return a waiting or running job by id (from the in-flight map or the state store)."""
        delivery = self._inflight.get(job_id)
        if delivery is not None and not delivery.stale and job_id not in self._cancelled:
            return Job.from_dict(delivery.job.to_dict())
        running = await self._states.running_envelope(job_id)
        if running is not None:
            job = decode_job(running)
            job.status = JobStatus.RUNNING
            return job
        waiting = await self._states.waiting_envelope(job_id)
        return None if waiting is None else decode_job(waiting)

    async def delete_job(self, job_id: str) -> bool:
        """Delete a waiting or running job; it is never delivered again.

        A job running here is acked at once (its worker sees `extend_lease` False); a
        waiting one gets a tombstone and is dropped when the broker delivers it.
        """
        delivery = self._take(job_id)
        if delivery is not None:
            self._cancelled.add(job_id)
            if await self._buffer.ack(delivery):
                await self._states.forget(job_id)
            else:
                await self._states.delete(job_id)
            return True
        return await self._states.delete(job_id)

    async def get_task_count(self) -> int:
        """Number of jobs waiting (ready or delayed, not in flight)."""
        return await self.count(self._queue_name, JobStatus.PENDING)

    async def count(self, queue_name: str, status: Any | None = None) -> int:
        """Count jobs; waiting ones come from the broker's queue depths.

        PENDING = messages ready in the queue and its delay buckets, plus those
        buffered here, minus deleted ones not yet dropped; RUNNING = jobs in flight
        (this process, or every process with a shared state store); RETRYING = jobs
        waiting for a retry scheduled through this state store.
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
            depth = await self._broker_depth(queue_name) + len(self._buffer)
            total += max(0, depth - await self._states.count("del"))
        if wanted in (None, JobStatus.RUNNING):
            total += await self._running()
        return total

    async def _running(self) -> int:
        if self._states.shared:
            return await self._states.count("run")
        return sum(1 for d in self._inflight.values() if not d.stale)

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
        if self._states.shared:
            for job_id in await self._states.running_ids():
                await self._states.delete(job_id)
        await self._link.purge(family_queues(self._queue_name))
        await self._states.clear()

    async def delete_queues(self, *, if_empty: bool = True) -> None:
        """Delete what this queue created on the broker, e.g. after a test or a demo.

        Removes the queue, its delay buckets, ``<queue>.dlx`` (queue and exchange) and the
        delayed-message exchange. Close this object afterwards: a later enqueue would find
        no queue (the next `RabbitMQTaskQueue` of that name declares them again).

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
        await self._link.delete_topology()

    async def close(self) -> None:
        """Stop consuming and close the connection; unacked jobs return to the queue."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._buffer.close()
        await self._link.close()
