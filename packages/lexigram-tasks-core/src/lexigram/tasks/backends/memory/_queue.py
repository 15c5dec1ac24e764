"""`MemoryTaskQueue`: the in-process queue with the same delivery semantics as Redis.

Layout (every operation O(log n) or amortised O(1)):

- ``_jobs``: every job the queue holds, waiting or in flight, by id (``get_job``).
- ``_payloads``: id -> the job's JSON envelope as it was last enqueued or retried.
- ``_waiting``: id -> sequence number of the job's live entry in ``_ready`` or
  ``_delayed``. Heap entries are never removed in place; an entry whose sequence
  number no longer matches is stale and skipped when it surfaces (lazy deletion).
- ``_ready``: heap of ``(-priority, sequence, job)``: priority high to low, then FIFO.
- ``_delayed``: heap of ``(scheduled_at, sequence, job)``; due entries are promoted to
  ``_ready`` on the next dequeue, so a delayed job never blocks a ready one.
- ``_in_flight``: id -> ``(lease deadline (monotonic), lease token)``, checked lazily:
  ``_next_reap`` is never later than the earliest deadline, and only a look at the queue
  past it scans the leases (returning the expired ones and moving it to the earliest
  left). A lease costs no heap push and its ack no clean-up; a scan happens about once
  per lease length when jobs end before their leases, the only case the bound is early.

A delivery hands out the stored job object itself, carrying a new lease token: no
copy on the path every job takes (a copy per delivery cost a quarter of the drain rate,
mostly in garbage-collector passes over the backlog). Whenever a job comes back to
wait without `retry_later` (its lease ran out, or it was nacked), the queue stores a
new object decoded from the envelope it kept at enqueue, so the next holder neither
shares an object with the stale one nor sees its changes, as with a networked
backend; and the stale holder cannot settle the new delivery: `ack`, `nack`,
`extend_lease` and `retry_later` compare tokens.

Stale heap entries are dropped whenever a structure empties and the heaps are rebuilt
when stale entries outnumber live ones, so memory returns to baseline after a burst.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence

from lexigram.contracts.tasks import (
    CancelOutcome,
    Err,
    Job,
    JobStatus,
    Ok,
    QueueFullError,
    Result,
    TaskQueueError,
    encode_job,
)
from lexigram.tasks.backends.memory._cancellations import CancelNotices
from lexigram.tasks.backends.memory._idempotency import IdempotencyKeys
from lexigram.tasks.backends.memory._jobs import copy_job, envelope_of, restored
from lexigram.tasks.backends.memory._lease_keeper import KeptLeases, MemoryLeaseRenewer
from lexigram.tasks.backends.memory._options import check_queue_settings
from lexigram.tasks.backends.memory._wakeups import Wakeups

logger = logging.getLogger(__name__)

# Heaps may hold this many stale entries beyond twice the live count before a rebuild.
_COMPACT_SLACK = 64
# Lease tokens: unique in this process, which is all a memory queue serves. Plain
# numerals: formatting a prefix in as well doubled what a token cost per delivery.
_tokens = itertools.count(1)


class MemoryTaskQueue:
    """In-memory task queue implementing the whole `TaskQueueProtocol`.

    Jobs live in this process only and are lost when it exits; use it for development,
    tests and single-process applications. Delivery follows the same rules as the
    networked backends (`docs/writing-a-backend.md`): leases fenced by a token per
    delivery, priority then FIFO, delayed jobs that never block ready ones, idempotency
    keys, and jobs that are rejected when Redis would reject them (the payload is
    JSON-encoded once at enqueue to check it, about 8 µs per job).

    The queue keeps the enqueued `Job` object and its first delivery is that object
    (so, in one process, the producer's `Job` shows the status the worker gives it);
    a job that comes back after a lease ran out or a nack is delivered as it was
    enqueued, and one that comes back through `retry_later` as it was passed there,
    never with what its earlier holder changed afterwards, as with a networked
    backend. `get_job` returns a copy. Any number of tasks of one event loop may
    share the queue: no operation awaits while it changes the queue, so no lock is
    needed (it is not meant to be shared between threads).

    Args:
        queue_name: Name of the queue (what `count` matches and hooks report).
        visibility_timeout: Lease length in seconds; a job not acked, nacked or
            extended within it is delivered again.
        max_size: Most jobs that may wait at once; `enqueue` beyond it returns
            `Err(QueueFullError)`. Jobs coming back from a lease never count against it.
        idempotency_ttl: Seconds an idempotency key stays held after its job was
            enqueued (it is also held for as long as that job is in the queue).

    Example:
        queue = MemoryTaskQueue()
        job_id = (await queue.enqueue(Job(name="send_email", args=("a@b.c",)))).unwrap()
        job = await queue.dequeue()
        await queue.ack(job.id, lease_token=job.lease_token)
    """

    def __init__(
        self,
        *,
        queue_name: str = "tasks",
        visibility_timeout: float = 30.0,
        max_size: int | None = None,
        idempotency_ttl: float = 86400.0,
    ) -> None:
        check_queue_settings(visibility_timeout, max_size, idempotency_ttl)
        self._queue_name = queue_name
        self._visibility_timeout = float(visibility_timeout)
        self._max_size = max_size
        self._seq = 0
        self._jobs: dict[str, Job] = {}
        self._payloads: dict[str, bytes] = {}
        self._waiting: dict[str, int] = {}
        self._ready: list[tuple[int, int, Job]] = []
        self._delayed: list[tuple[float, int, Job]] = []
        self._in_flight: dict[str, tuple[float, str]] = {}
        # No deadline in `_in_flight` is earlier than this (inf: nothing in flight).
        self._next_reap = math.inf
        self._keys = IdempotencyKeys(float(idempotency_ttl))
        self._wakeups = Wakeups()
        self._close_epoch = 0
        self._cancel_notices = CancelNotices()
        # Leases a worker's keeper thread renews (`open_lease_renewer`).
        self._kept = KeptLeases()

    def __repr__(self) -> str:
        return (
            f"MemoryTaskQueue(queue_name={self._queue_name!r}, waiting={len(self._waiting)}, "
            f"in_flight={len(self._in_flight)})"
        )

    @property
    def queue_name(self) -> str:
        """Name of the queue this object serves."""
        return self._queue_name

    @property
    def lease_seconds(self) -> float:
        """Lease length in seconds given to every dequeued job (the protocol's name)."""
        return self.visibility_timeout

    @property
    def visibility_timeout(self) -> float:
        """Lease length in seconds given to every dequeued job."""
        return self._visibility_timeout

    # -- producing ------------------------------------------------------------------

    async def enqueue(self, task: Job) -> Result[str, TaskQueueError]:
        """Add a job to the queue.

        A job id already held, or an idempotency key already held, returns Ok with the
        existing job's id and adds nothing.

        Args:
            task: The `Job` to enqueue.

        Returns:
            Ok(job_id); Err(TaskValidationError) for an invalid or non-JSON job;
            Err(QueueFullError) when `max_size` jobs are already waiting.
        """
        payload = envelope_of(task)
        if not isinstance(payload, bytes):
            return Err(payload)
        existing = self._existing_id(task)
        if existing is not None:
            return Ok(existing)
        full = self._full_error(task)
        if full is not None:
            return Err(full)
        key = task.idempotency_key
        if task.status is not JobStatus.RETRYING:
            task.status = JobStatus.PENDING
        if task.queue_name is None:
            task.queue_name = self._queue_name
        self._jobs[task.id] = task
        self._payloads[task.id] = payload
        if key is not None:
            self._keys.hold(key, task.id, time.monotonic())
        self._push_waiting(task)
        if self._wakeups.waiters:
            self._wakeups.wake_all()
        return Ok(task.id)

    async def enqueue_many(self, tasks: Sequence[Job]) -> list[Result[str, TaskQueueError]]:
        """Add several jobs; one result per job, in order (see `enqueue`)."""
        return [await self.enqueue(task) for task in tasks]

    # -- consuming ------------------------------------------------------------------

    async def dequeue(self) -> Job | None:
        """Lease and return the next ready job, or None when none is ready (no waiting)."""
        jobs = self._take(1)
        return jobs[0] if jobs else None

    async def dequeue_batch(self, max_jobs: int, *, timeout: float = 0.0) -> list[Job]:
        """Lease up to `max_jobs` ready jobs, waiting up to `timeout` seconds for the first.

        The wait ends as soon as a job is enqueued or requeued, when the next delayed job
        falls due or the next lease expires, when `close` is called, or at `timeout`.

        Returns:
            Between 0 (timeout) and `max_jobs` leased jobs.
        """
        if max_jobs < 1:
            return []
        jobs = self._take(max_jobs)
        if jobs or not timeout > 0:
            return jobs
        deadline = time.monotonic() + timeout
        epoch = self._close_epoch
        while True:
            now = time.monotonic()
            if now >= deadline:
                return []
            delay = min(deadline, self._next_due(now)) - now
            await self._wakeups.wait(delay)
            jobs = self._take(max_jobs)
            if jobs or self._close_epoch != epoch:
                return jobs

    async def extend_lease(
        self, task_id: str, seconds: float | None = None, *, lease_token: str | None = None
    ) -> bool:
        """Extend the lease of an in-flight job (the worker's heartbeat).

        Args:
            task_id: The leased job's id.
            seconds: New lease length from now; None means `lease_seconds`.
            lease_token: The delivery's token; None acts on the current delivery.

        Returns:
            False when the job is not leased under that token any more (acked, deleted,
            handed to another consumer, or its lease ran out, in which case it is made
            available again now).
        """
        now = time.monotonic()
        held = self._held(task_id, lease_token, now)
        if held is None:
            return False
        new_deadline = now + (self._visibility_timeout if seconds is None else seconds)
        self._in_flight[task_id] = (new_deadline, held)
        self._next_reap = min(self._next_reap, new_deadline)
        return True

    def open_lease_renewer(self) -> MemoryLeaseRenewer:
        """A renewer for a worker's keeper thread (`LeaseRenewingQueueProtocol`).

        It never changes the queue: a lease found past its deadline that the renewer
        kept is extended then, so a blocked event loop does not expire it.
        """
        return self._kept.open(self._in_flight)

    async def ack(self, task_id: str, *, lease_token: str | None = None) -> bool:
        """Acknowledge successful processing; the queue forgets the job.

        Returns:
            True if the delivery was held (under `lease_token`, when given) and is now
            settled; False, changing nothing, otherwise.
        """
        lease = self._in_flight.get(task_id)
        # Inlined `_held` for the live lease held under the token (every job's path).
        if (
            lease is None
            or lease[0] <= time.monotonic()
            or (lease_token is not None and lease_token != lease[1])
        ) and self._held(task_id, lease_token, time.monotonic()) is None:
            return False
        del self._in_flight[task_id]
        self._forget(task_id)
        return True

    async def nack(
        self, task_id: str, requeue: bool = True, *, lease_token: str | None = None
    ) -> bool:
        """Negative-acknowledge a leased job: requeue it now, or discard it.

        Returns:
            True if the delivery was held and is now settled; False, changing nothing,
            otherwise.
        """
        if self._held(task_id, lease_token, time.monotonic()) is None:
            return False
        del self._in_flight[task_id]
        if requeue:
            self._push_waiting(self._restored(task_id))
            if self._wakeups.waiters:
                self._wakeups.wake_all()
        else:
            self._forget(task_id)
        return True

    async def retry_later(self, task: Job, *, delay: float = 0.0) -> bool:
        """End the lease on `task` and make it available again after `delay` seconds.

        The fields of the `task` object passed in (`retry_count`, `last_error`, ...) are
        what the next delivery sees, and its status becomes RETRYING. `task.lease_token`
        fences the call: a job not leased under it is left alone.

        Returns:
            True if the delivery was held and the job waits again; False otherwise.

        Raises:
            TaskValidationError: The job no longer encodes to JSON (a networked backend
                could not store it either); the lease is left as it was.
        """
        if self._held(task.id, task.lease_token, time.monotonic()) is None:
            return False
        stored = copy_job(task, None)
        stored.status = JobStatus.RETRYING
        stored.scheduled_at = time.time() + delay if delay > 0 else None
        self._payloads[task.id] = encode_job(stored)
        del self._in_flight[task.id]
        self._jobs[task.id] = stored
        self._push_waiting(stored)
        if self._wakeups.waiters:
            self._wakeups.wake_all()
        return True

    # -- inspecting -----------------------------------------------------------------

    async def get_task_count(self) -> int:
        """Return the number of jobs waiting (ready or delayed, not in flight)."""
        self._reap(time.monotonic())
        return len(self._waiting)

    async def get_job(self, job_id: str) -> Job | None:
        """Return a copy of a job the queue holds (waiting or in flight), or None."""
        self._reap(time.monotonic())
        job = self._jobs.get(job_id)
        return None if job is None else copy_job(job, None)

    async def find_job_ids(self, prefix: str, limit: int) -> list[str]:
        """Return up to `limit` ids of held jobs starting with `prefix` (`JobLookupProtocol`)."""
        self._reap(time.monotonic())
        return list(itertools.islice((i for i in self._jobs if i.startswith(prefix)), limit))

    async def delete_job(self, job_id: str) -> bool:
        """Delete a waiting or in-flight job; an in-flight one is never re-delivered.

        Returns:
            True if the job existed and was deleted.
        """
        if self._in_flight.pop(job_id, None) is not None:
            self._forget(job_id)
            return True
        if self._waiting.pop(job_id, None) is not None:
            self._forget(job_id)
            self._compact_waiting()
            return True
        return False

    async def cancel(self, job_id: str) -> CancelOutcome:
        """Remove a waiting job (REMOVED), or remove a running one and announce it (STOPPING).

        Returns NOT_FOUND for a job the queue does not hold (`CancellableQueueProtocol`).
        """
        self._reap(time.monotonic())
        running = job_id in self._in_flight
        if not await self.delete_job(job_id):
            return CancelOutcome.NOT_FOUND
        if not running:
            return CancelOutcome.REMOVED
        self._cancel_notices.announce(job_id)
        return CancelOutcome.STOPPING

    def cancellations(self) -> AsyncIterator[str]:
        """Yield the id of every job this queue object cancels while it is in flight."""
        return self._cancel_notices.listen()

    async def count(self, queue_name: str, status: JobStatus | None = None) -> int:
        """Count jobs of `queue_name` held by this queue.

        `status` None counts waiting and in-flight jobs; PENDING the waiting ones
        (ready, delayed or awaiting a retry); RETRYING those waiting with
        retry_count > 0; RUNNING the in-flight ones whose lease has not run out (an
        expired lease is handed back first, so it counts as waiting). Other statuses
        and other queue names count 0.
        """
        if queue_name != self._queue_name:
            return 0
        self._reap(time.monotonic())
        if status is None:
            return len(self._waiting) + len(self._in_flight)
        if status == JobStatus.PENDING:
            return len(self._waiting)
        if status == JobStatus.RUNNING:
            return len(self._in_flight)
        if status == JobStatus.RETRYING:
            jobs = self._jobs
            return sum(1 for job_id in self._waiting if jobs[job_id].retry_count > 0)
        return 0

    async def clear(self) -> None:
        """Remove every job, waiting or in flight, and forget every idempotency key."""
        self._jobs.clear()
        self._payloads.clear()
        self._waiting.clear()
        self._ready.clear()
        self._delayed.clear()
        self._in_flight.clear()
        self._next_reap = math.inf
        self._keys.clear()

    async def close(self) -> None:
        """Wake every waiting `dequeue_batch` so that it returns; safe to call twice.

        The jobs stay: a memory queue holds no connection, and a provider that is
        stopped and started again keeps using the same object.
        """
        self._close_epoch += 1
        self._wakeups.wake_all()

    # -- internals ------------------------------------------------------------------

    def _full_error(self, task: Job) -> QueueFullError | None:
        """Return a `QueueFullError` when `max_size` jobs already wait, else None."""
        if self._max_size is None or len(self._waiting) < self._max_size:
            return None
        msg = (
            f"Queue {self._queue_name!r} is full ({self._max_size} jobs waiting); job "
            f"{task.name!r} was not enqueued. Retry later, add workers, or raise max_size."
        )
        return QueueFullError(msg, queue_name=self._queue_name, capacity=self._max_size)

    def _existing_id(self, task: Job) -> str | None:
        """Return the id of a job `task` duplicates (same id or held key), or None."""
        if task.id in self._jobs:
            return task.id
        key = task.idempotency_key
        if key is None:
            return None
        held = self._keys.held(key, self._jobs, time.monotonic())
        # The key still naming this very job means the job itself is being resubmitted
        # (a dead-letter retry), not duplicated by another one.
        return None if held == task.id else held

    def _held(self, job_id: str, lease_token: str | None, now: float) -> str | None:
        """Return the token of `job_id`'s live lease if `lease_token` holds it, else None.

        A lease that has run out is handed back to the queue here (so it counts as
        waiting at once) and holds nothing, whatever the token.
        """
        lease = self._in_flight.get(job_id)
        if lease is None:
            return None
        deadline, token = lease
        # A lease a worker's keeper renewed is extended here rather than expired.
        if deadline <= now and not (self._kept.renewers and self._keep(job_id, token, now)):
            del self._in_flight[job_id]
            self._expire(job_id)
            if self._wakeups.waiters:
                self._wakeups.wake_all()
            return None
        if lease_token is not None and lease_token != token:
            return None
        return token

    def _push_waiting(self, job: Job) -> None:
        """Make `job` wait: ready now, or in the delayed heap until `scheduled_at`."""
        self._seq += 1
        seq = self._seq
        self._waiting[job.id] = seq
        scheduled_at = job.scheduled_at
        if scheduled_at is not None and scheduled_at > time.time():
            heapq.heappush(self._delayed, (scheduled_at, seq, job))
        else:
            self._push_ready(job, seq)

    def _push_ready(self, job: Job, seq: int) -> None:
        heapq.heappush(self._ready, (-job.priority, seq, job))

    def _take(self, max_jobs: int) -> list[Job]:
        """Lease up to `max_jobs` ready jobs without waiting."""
        now = time.monotonic()
        if now >= self._next_reap:
            self._reap(now)
        if self._delayed:
            self._promote(time.time())
        taken: list[Job] = []
        ready = self._ready
        if not ready:
            return taken
        waiting = self._waiting
        in_flight = self._in_flight
        deadline = now + self._visibility_timeout
        self._next_reap = min(self._next_reap, deadline)
        running = JobStatus.RUNNING
        while ready and len(taken) < max_jobs:
            _, seq, job = heapq.heappop(ready)
            job_id = job.id
            if waiting.get(job_id) != seq:
                continue  # stale: the job was deleted, cleared or requeued since
            del waiting[job_id]
            job.status = running
            job.delivery_count += 1
            token = str(next(_tokens))
            job.lease_token = token
            in_flight[job_id] = (deadline, token)
            taken.append(job)
        return taken

    def _promote(self, now_epoch: float) -> None:
        """Move delayed jobs that are due onto the ready heap."""
        delayed = self._delayed
        waiting = self._waiting
        moved = False
        while delayed and delayed[0][0] <= now_epoch:
            _, seq, job = heapq.heappop(delayed)
            if waiting.get(job.id) == seq:
                self._push_ready(job, seq)
                moved = True
        if moved and self._wakeups.waiters:
            self._wakeups.wake_all()

    def _reap(self, now: float) -> None:
        """Return every job whose lease has expired to the queue."""
        if now < self._next_reap:
            return
        in_flight = self._in_flight
        overdue = [job_id for job_id, lease in in_flight.items() if lease[0] <= now]
        expired = False
        for job_id in overdue:
            if self._kept.renewers and self._keep(job_id, in_flight[job_id][1], now):
                continue
            del in_flight[job_id]
            self._expire(job_id)
            expired = True
        self._next_reap = min((lease[0] for lease in in_flight.values()), default=math.inf)
        if expired and self._wakeups.waiters:
            self._wakeups.wake_all()

    def _keep(self, job_id: str, token: str, now: float) -> bool:
        """Extend a lease past its deadline if a worker's lease keeper renewed it."""
        until = self._kept.until(job_id, token, now)
        if until is None:
            return False
        self._in_flight[job_id] = (until, token)
        self._next_reap = min(self._next_reap, until)
        return True

    def _expire(self, job_id: str) -> None:
        """Handle one expired lease: the job waits again and its next dequeue counts."""
        job = self._restored(job_id)
        logger.debug(
            "Lease on job %s (%s) expired after delivery %s; it is available again.",
            job_id,
            job.name,
            job.delivery_count,
        )
        self._push_waiting(job)

    def _restored(self, job_id: str) -> Job:
        """Replace the job a holder had with one decoded from its kept envelope.

        The holder keeps its object (and its lease token, which no longer holds); the
        queue's new one is as `restored` describes.
        """
        job = restored(self._jobs[job_id], self._payloads[job_id])
        self._jobs[job_id] = job
        return job

    def _next_due(self, now: float) -> float:
        """Monotonic time of the next delayed job due or lease expiry (inf if none)."""
        # The bound outlives the leases it was set by: with none left it names no expiry.
        due = self._next_reap if self._in_flight else math.inf
        if self._delayed:
            due = min(due, now + (self._delayed[0][0] - time.time()))
        return due

    def _forget(self, job_id: str) -> None:
        """Drop a job that leaves the queue (acked, discarded or deleted)."""
        job = self._jobs.pop(job_id)
        del self._payloads[job_id]
        key = job.idempotency_key
        if key is not None:
            self._keys.release_lapsed(key, job_id, time.monotonic())

    def _compact_waiting(self) -> None:
        waiting = self._waiting
        if not waiting:
            self._ready.clear()
            self._delayed.clear()
        elif len(self._ready) + len(self._delayed) > 2 * len(waiting) + _COMPACT_SLACK:
            self._ready = [entry for entry in self._ready if waiting.get(entry[2].id) == entry[1]]
            self._delayed = [
                entry for entry in self._delayed if waiting.get(entry[2].id) == entry[1]
            ]
            heapq.heapify(self._ready)
            heapq.heapify(self._delayed)
