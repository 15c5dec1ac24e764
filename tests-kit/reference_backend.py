"""A small reference queue backend, written plainly to measure the conformance kit.

It is not one of the shipped backends: one `ReferenceStore` per queue name holds
encoded job envelopes (bytes, as a broker would), and every `ReferenceQueue` handle
on that name shares it, as worker processes share a server. It follows contract v2:
a lease token per delivery, fencing on ack/nack/extend_lease/retry_later, expired
leases handed back, poison payloads leased as `make_poison_job`, and blocked
consumers woken by enqueues, requeues, due delayed jobs and expiring leases.

Each rule has one place in the code guarded by ``_mutant("name")``: with the
environment variable ``KIT_MUTANT`` set to a name, that single rule is broken, and
`run_mutants.py` checks that the kit notices. The mutants are listed in
`mutants.py`.
"""

# ruff: noqa: INP001 - a directory of scripts and tests run by path, not a package

from __future__ import annotations

import asyncio
import math
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from lexigram.contracts.tasks import (
    POISON_JOB_NAME,
    Err,
    Job,
    JobStatus,
    Ok,
    Result,
    TaskBackendSpec,
    TaskDecodeError,
    TaskQueueError,
    TaskValidationError,
    decode_job,
    encode_job,
    make_poison_job,
    parse_options,
)

MUTANT = os.environ.get("KIT_MUTANT", "")
"""The rule broken in this process ("" for none)."""

_POLL_SECONDS = 0.25  # the period of the sleep-loop mutant
_LATE_GRACE = 2.0  # how late the late-redelivery mutant hands back an expired lease


def _mutant(name: str) -> bool:
    return name == MUTANT


@dataclass
class _Record:
    """One job the store holds: its envelope and its delivery state."""

    payload: bytes
    priority: int
    seq: int
    ready_at: float | None  # epoch seconds; None = ready now
    deliveries: int = 0
    leased_until: float | None = None  # monotonic; None = waiting
    token: str | None = None
    retrying: bool = False


@dataclass
class ReferenceStore:
    """The shared state of one queue name (what a server would hold)."""

    records: dict[str, _Record] = field(default_factory=dict)
    keys: dict[str, tuple[str, float]] = field(default_factory=dict)
    waiters: set[asyncio.Future[None]] = field(default_factory=set)
    seq: int = 0

    def notify(self) -> None:
        """Wake every blocked consumer."""
        waiters, self.waiters = self.waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


_STORES: dict[str, ReferenceStore] = {}


def store_for(queue_name: str) -> ReferenceStore:
    """The store of `queue_name`, created on first use."""
    return _STORES.setdefault(queue_name, ReferenceStore())


def drop_store(queue_name: str) -> None:
    """Forget a queue name's store (test cleanup)."""
    _STORES.pop(queue_name, None)


class ReferenceQueue:
    """A handle on the `ReferenceStore` of one queue name; implements `TaskQueueProtocol`."""

    def __init__(
        self, *, queue_name: str, lease_seconds: float, idempotency_ttl: float = 3600.0
    ) -> None:
        self._name = queue_name
        self._lease = lease_seconds
        self._ttl = idempotency_ttl
        self._store = store_for(queue_name)
        self._closed = False

    @property
    def queue_name(self) -> str:
        """Name of the queue this handle serves."""
        return self._name

    @property
    def lease_seconds(self) -> float:
        """Length of a delivery's lease, in seconds."""
        return 30.0 if _mutant("lease_seconds_undeclared") else self._lease

    # -- producing ------------------------------------------------------------------

    async def enqueue(self, task: Job) -> Result[str, TaskQueueError]:
        """Add a job; a held id or idempotency key returns the existing id."""
        try:
            payload = encode_job(task)
        except TaskValidationError as exc:
            return Err(exc)
        store = self._store
        if task.id in store.records and not _mutant("duplicate_id_enqueued"):
            return Ok(task.id)
        key = task.idempotency_key
        if key is not None and not _mutant("idempotency_key_ignored"):
            held = self._held_key(key)
            if held is not None and (held != task.id or _mutant("resubmission_refused")):
                return Ok(held)
            store.keys[key] = (task.id, time.monotonic() + self._ttl)
        store.seq += 1
        store.records[task.id] = _Record(
            payload=payload,
            priority=task.priority,
            seq=store.seq,
            ready_at=task.scheduled_at,
            deliveries=task.delivery_count,
            retrying=task.status is JobStatus.RETRYING,
        )
        if not _mutant("enqueue_never_wakes"):
            store.notify()
        return Ok(task.id)

    async def enqueue_many(self, tasks: Sequence[Job]) -> list[Result[str, TaskQueueError]]:
        """Add several jobs; one result per job, in order."""
        return [await self.enqueue(task) for task in tasks]

    def _held_key(self, key: str) -> str | None:
        entry = self._store.keys.get(key)
        if entry is None:
            return None
        job_id, expiry = entry
        if expiry > time.monotonic() or job_id in self._store.records:
            return job_id
        del self._store.keys[key]
        return None

    # -- consuming ------------------------------------------------------------------

    async def dequeue(self) -> Job | None:
        """Lease the next ready job, or None."""
        jobs = self._take(1)
        return jobs[0] if jobs else None

    async def dequeue_batch(self, max_jobs: int, *, timeout: float = 0.0) -> list[Job]:
        """Lease up to `max_jobs` jobs, waiting up to `timeout` seconds for the first."""
        if max_jobs < 1:
            return []
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            jobs = self._take(max_jobs)
            now = time.monotonic()
            if jobs or now >= deadline or self._closed:
                return jobs
            wait = deadline - now
            if _mutant("sleep_loop_polling"):
                await asyncio.sleep(min(wait, _POLL_SECONDS))
                continue
            if not _mutant("never_wakes_for_due"):
                wait = min(wait, max(self._next_event(now) - now, 0.0))
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._store.waiters.add(waiter)
            try:
                await asyncio.wait_for(waiter, wait)
            except TimeoutError:
                pass
            finally:
                self._store.waiters.discard(waiter)

    def _next_event(self, now: float) -> float:
        """Monotonic time of the next due delayed job or lease expiry (inf if none)."""
        event = math.inf
        wall = time.time()
        for record in self._store.records.values():
            if record.leased_until is not None:
                until = record.leased_until
                if _mutant("late_redelivery"):
                    until += _LATE_GRACE
                event = min(event, until)
            elif record.ready_at is not None:
                event = min(event, now + record.ready_at - wall)
        return event

    def _reap(self, now: float) -> None:
        """Hand back every expired lease."""
        if _mutant("no_redelivery"):
            return
        grace = _LATE_GRACE if _mutant("late_redelivery") else 0.0
        for record in self._store.records.values():
            if record.leased_until is not None and record.leased_until + grace <= now:
                record.leased_until = None
                record.token = None

    def _take(self, max_jobs: int) -> list[Job]:
        now = time.monotonic()
        wall = time.time()
        self._reap(now)
        waiting = [
            (job_id, record)
            for job_id, record in self._store.records.items()
            if record.leased_until is None
        ]
        if _mutant("priority_ignored"):
            waiting.sort(key=lambda item: item[1].seq)
        elif _mutant("fifo_broken"):
            waiting.sort(key=lambda item: (-item[1].priority, -item[1].seq))
        else:
            waiting.sort(key=lambda item: (-item[1].priority, item[1].seq))
        taken: list[Job] = []
        for job_id, record in waiting:
            if len(taken) >= max_jobs + (1 if _mutant("batch_overfills") else 0):
                break
            if record.ready_at is not None and record.ready_at > wall:
                if _mutant("delayed_blocks_ready"):
                    break
                continue
            taken.append(self._lease_record(job_id, record, now))
        return taken

    def _lease_record(self, job_id: str, record: _Record, now: float) -> Job:
        lease = self._lease / 2 if _mutant("early_redelivery") else self._lease
        record.leased_until = now + lease
        # The token_reused mutant names the job, not the delivery: every holder shares it.
        record.token = job_id if _mutant("token_reused") else secrets.token_hex(8)
        if not _mutant("delivery_count_not_raised"):
            record.deliveries += 1
        try:
            job = decode_job(record.payload)
        except TaskDecodeError as exc:
            if _mutant("poison_raises"):
                raise
            job = make_poison_job(job_id, record.payload, exc.message, queue_name=self.queue_name)
        job.status = JobStatus.RUNNING
        job.delivery_count = record.deliveries
        poison = job.name == POISON_JOB_NAME
        job.lease_token = None if poison and _mutant("poison_without_token") else record.token
        return job

    def _holds(
        self, job_id: str, token: str | None, *, fenced: bool = True, expires: bool = True
    ) -> _Record | None:
        """The record of `job_id` if its live lease is held by `token` (None: any holder).

        `fenced=False` ignores the token and `expires=False` the lease's end: the
        mutants that break those two rules pass them.
        """
        record = self._store.records.get(job_id)
        if record is None or record.leased_until is None:
            return None
        if expires and record.leased_until <= time.monotonic():
            self._reap(time.monotonic())
            return None
        if fenced and token is not None and token != record.token:
            return None
        return record

    async def extend_lease(
        self, task_id: str, seconds: float | None = None, *, lease_token: str | None = None
    ) -> bool:
        """Extend a held lease; False when `lease_token` no longer holds it."""
        record = self._holds(
            task_id,
            lease_token,
            fenced=not _mutant("stale_extend"),
            expires=not _mutant("extend_after_expiry"),
        )
        if record is None:
            return False
        length = self._lease if seconds is None or _mutant("extend_ignores_seconds") else seconds
        record.leased_until = time.monotonic() + length
        return True

    async def ack(self, task_id: str, *, lease_token: str | None = None) -> bool:
        """Forget a held job; False when `lease_token` no longer holds it."""
        held = self._holds(
            task_id,
            lease_token,
            fenced=not _mutant("stale_ack"),
            expires=not _mutant("ack_after_expiry"),
        )
        if held is None:
            return False
        del self._store.records[task_id]
        if _mutant("key_released_on_ack"):
            self._store.keys = {k: v for k, v in self._store.keys.items() if v[0] != task_id}
        return True

    async def nack(
        self, task_id: str, requeue: bool = True, *, lease_token: str | None = None
    ) -> bool:
        """Requeue (now) or discard a held job; False when `lease_token` no longer holds it."""
        record = self._holds(task_id, lease_token, fenced=not _mutant("stale_nack"))
        if record is None:
            return False
        if not requeue and not _mutant("discarding_nack_requeues"):
            del self._store.records[task_id]
            return True
        record.leased_until = None
        record.token = None
        if not _mutant("nack_never_wakes"):
            self._store.notify()
        return True

    async def retry_later(self, task: Job, *, delay: float = 0.0) -> bool:
        """Store `task`'s retry state and hand it back after `delay` seconds."""
        if _mutant("stale_retry_writes_state"):
            record = self._store.records.get(task.id)
            if record is not None:
                record.payload = encode_job(task)
        record = self._holds(task.id, task.lease_token, fenced=not _mutant("stale_retry"))
        if record is None:
            return False
        stored = Job.from_dict(task.to_dict())
        stored.status = JobStatus.RETRYING
        if not _mutant("retry_state_lost"):
            record.payload = encode_job(stored)
        ignore_delay = _mutant("retry_delay_ignored")
        record.ready_at = time.time() + delay if delay > 0 and not ignore_delay else None
        record.retrying = True
        record.leased_until = None
        record.token = None
        if not _mutant("retry_never_wakes"):
            self._store.notify()
        return True

    # -- inspecting -----------------------------------------------------------------

    async def get_task_count(self) -> int:
        """Jobs waiting (ready or delayed)."""
        self._reap(time.monotonic())
        return sum(1 for r in self._store.records.values() if r.leased_until is None)

    async def get_job(self, job_id: str) -> Job | None:
        """A job the store holds, with its current status, or None."""
        self._reap(time.monotonic())
        record = self._store.records.get(job_id)
        if record is None:
            return None
        try:
            job = decode_job(record.payload)
        except TaskDecodeError as exc:
            job = make_poison_job(job_id, record.payload, exc.message, queue_name=self.queue_name)
        if record.leased_until is not None:
            job.status = JobStatus.RUNNING
        else:
            job.status = JobStatus.RETRYING if record.retrying else JobStatus.PENDING
        job.delivery_count = record.deliveries
        return job

    async def delete_job(self, job_id: str) -> bool:
        """Delete a waiting or in-flight job."""
        record = self._store.records.get(job_id)
        if record is None:
            return False
        if _mutant("deleted_in_flight_redelivered") and record.leased_until is not None:
            record.token = None  # forgets the holder but leaves the lease to run out
            return True
        del self._store.records[job_id]
        return True

    async def count(self, queue_name: str, status: JobStatus | None = None) -> int:
        """Count held jobs of `queue_name` by status."""
        if queue_name != self._name:
            return 0
        now = time.monotonic()
        if not _mutant("count_running_counts_expired"):
            self._reap(now)
        records = list(self._store.records.values())
        if status is None:
            return len(records)
        if status is JobStatus.RUNNING:
            return sum(1 for r in records if r.leased_until is not None)
        if status is JobStatus.PENDING:
            return sum(1 for r in records if r.leased_until is None)
        if status is JobStatus.RETRYING:
            return sum(1 for r in records if r.leased_until is None and r.retrying)
        return 0

    async def clear(self) -> None:
        """Remove every job and forget every idempotency key."""
        self._store.records.clear()
        if not _mutant("clear_keeps_keys"):
            self._store.keys.clear()

    async def close(self) -> None:
        """Stop this handle's blocked consumers; safe to call twice."""
        self._closed = True
        self._store.notify()


def plant_raw(queue: ReferenceQueue, raw: bytes) -> str:
    """Store `raw` as a job envelope would be stored; return the id used."""
    store = store_for(queue.queue_name)
    store.seq += 1
    job_id = f"raw-{store.seq}"
    if _mutant("poison_skipped"):
        # Stored where no consumer ever looks: never delivered, never dead-lettered.
        store.records[job_id] = _Record(payload=raw, priority=0, seq=store.seq, ready_at=math.inf)
        return job_id
    store.records[job_id] = _Record(payload=raw, priority=0, seq=store.seq, ready_at=None)
    store.notify()
    return job_id


@dataclass(frozen=True, slots=True)
class ReferenceOptions:
    """What `TaskBackendSpec.options` may carry for the reference backend."""

    lease_seconds: float = 30.0
    idempotency_ttl: float = 3600.0


class ReferenceBackend:
    """The object an entry point of the reference backend would name (`TaskBackendProtocol`).

    It declares every optional self-description a backend can: no URL scheme (its stores
    live in this process), its options, and the flags and `close` that say so.
    """

    url_schemes: tuple[str, ...] = ()
    url_field: str | None = None
    options_type: type[ReferenceOptions] = ReferenceOptions
    url_required: bool = False
    process_local: bool = True

    def __init__(self) -> None:
        self.closed = 0

    def create_queue(self, spec: TaskBackendSpec, /) -> ReferenceQueue:
        """Build a handle on the spec's queue."""
        options = parse_options("reference", spec.name, spec.options, ReferenceOptions)
        return ReferenceQueue(
            queue_name=spec.queue_name,
            lease_seconds=options.lease_seconds,
            idempotency_ttl=options.idempotency_ttl,
        )

    async def close(self) -> None:
        """Nothing is shared between handles but the stores, which outlive a program's use."""
        self.closed += 1
