"""Job-state records: what AMQP cannot tell us about a job by its id.

A broker can neither look a message up by id nor delete one in the middle of a
queue, so the queue keeps a small record per job in a key-value store
(`CacheBackendProtocol`): an in-process `LocalStateStore` by default (one per queue
name, shared by the queue objects of this process), or a shared one
(Redis, Postgres, ...) passed as ``state_store``. Keys, under
``lexigram:rabbitmq:<vhost>:<queue>:``:

- ``job:<id>``  ``w<envelope>`` while the job waits or runs; ``d`` once deleted
  (a tombstone: the message still sits in the broker and is dropped when delivered).
- ``del:<id>``  mirrors each tombstone so `count` can subtract them cheaply.
- ``run:<id>``  the running job (its envelope). It lives as long as the delivery's
  lease and each heartbeat renews it, so a worker that died (SIGKILL, lost
  connection) stops counting as RUNNING once its lease is over.
- ``retry:<id>`` set while a job waits for a retry (for ``count(status=RETRYING)``).
- ``idem:<key>`` ``@<held until>@<id>``: the job that holds an idempotency key, and the
  (epoch) time its TTL ends. The record lives as long as the job's own records can, so
  a key whose TTL ended still names its job: it stays held while that job waits or
  runs, and is free once the job is gone (see `JobStates.claim_idempotency`). Until
  the broker confirms the job, the record is pending (``p@...``, see `_idem_records`).
- ``idemx:<key>@<id>`` decides between concurrent claims of a key that job `<id>` no
  longer holds: the first claim to create it takes the key.
- ``copy:<id>`` ``<n> <created_at>``: copy `n` of the job (`COPY_HEADER`) was published
  anew and confirmed, so a message of an older copy of that job (same ``created_at``:
  the same enqueue) is stale and dropped (`JobStates.superseded`).

A worker touches these records for every job it runs, so the hot ones ride batched
round trips on a store that offers `BatchCacheProtocol` (the Redis cache does): the
deliveries of one hand-out are looked up together and recorded together, and the
records of jobs acked concurrently are dropped together (`GroupCommit`). Other stores
get the same calls one key at a time, concurrently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from enum import Enum
from typing import Generic, TypeVar

from lexigram.contracts.tasks import CacheBackendProtocol, Job
from lexigram.tasks.backends.rabbitmq._idem_records import (
    OPEN_CLAIMS,
    ClaimPending,
    idem_holder,
    idem_value,
)
from lexigram.tasks.backends.rabbitmq._local_store import (
    BatchCacheProtocol,
    KeyByKey,
    LocalStateStore,
    Write,
)

logger = logging.getLogger(__name__)

_WAITING = "w"
_DELETED = "d"

__all__ = [
    "CLAIM_MARGIN",
    "Admission",
    "BatchCacheProtocol",
    "JobStates",
    "LocalStateStore",
    "Write",
]

_FORGET_BATCH = 500
"""Most jobs whose records one coalesced forget drops (five keys each)."""

CLAIM_MARGIN = 5.0
"""Seconds a pending claim outlives its enqueue's longest wait for a confirm."""

_CLAIM_POLL = 0.02
_CLAIM_POLL_MAX = 0.5
"""First and longest pause between looks at another process's pending claim."""

T = TypeVar("T")


class GroupCommit(Generic[T]):
    """Concurrent `submit` calls share one call of `run`; a lone call pays nothing extra.

    The first caller runs its items at once. Callers arriving while that call is in
    flight queue up, and when it returns one of them sends everything queued, up to
    `max_batch` items per call. Each caller returns once its own items are done, or
    raises what the call that held them raised.
    """

    def __init__(self, run: Callable[[list[T]], Awaitable[None]], max_batch: int) -> None:
        self._run = run
        self._max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._busy = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Future[None] | None = None

    async def submit(self, item: T) -> None:
        """Run `item` alone, or with the items submitted meanwhile."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # Whatever was pending belongs to a loop that is gone and never completes.
            self._pending, self._busy, self._loop = [], False, loop
        if self._busy:
            future: asyncio.Future[None] = loop.create_future()
            self._pending.append((item, future))
            await future
            return
        self._busy = True
        try:
            await self._run([item])
        finally:
            self._hand_over()

    def _hand_over(self) -> None:
        """Send what queued meanwhile as the next call, or go idle."""
        if not self._pending:
            self._busy = False
            return
        batch = self._pending[: self._max_batch]
        del self._pending[: self._max_batch]
        # Held here: the loop keeps only a weak reference to a task.
        self._task = asyncio.ensure_future(self._send(batch))

    async def _send(self, batch: list[tuple[T, asyncio.Future[None]]]) -> None:
        try:
            await self._run([item for item, _ in batch])
        except asyncio.CancelledError:
            # The loop is shutting down: nothing queued will be sent.
            for _, future in batch + self._pending:
                future.cancel()
            self._pending, self._busy = [], False
            raise
        except Exception as exc:  # every caller of the batch learns the outcome
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for _, future in batch:
                if not future.done():
                    future.set_result(None)
        self._hand_over()


class Admission(Enum):
    """Outcome of recording a job at enqueue time."""

    NEW = "new"
    """No record existed: publish the job."""
    PRESENT = "present"
    """The id is already waiting or running: do not publish it again."""
    REVIVED = "revived"
    """The id was deleted but its message is still in the broker: it runs after all."""


class JobStates:
    """Typed access to the job-state records of one queue (see the module docstring)."""

    def __init__(
        self,
        store: CacheBackendProtocol,
        namespace: str,
        *,
        state_ttl: float,
        claim_window: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        # How long a claim stays pending before it is taken for a dead producer's: as
        # long as an enqueue may wait for its confirm, and a little more.
        self.claim_window = claim_window
        # Wall time: a key's end is compared by every process sharing the store.
        self._clock = clock
        self.local = isinstance(store, LocalStateStore)
        self._batch: BatchCacheProtocol = (
            store if isinstance(store, BatchCacheProtocol) else KeyByKey(store)
        )
        self._ns = namespace
        self._ttl = state_ttl
        self._forgets: GroupCommit[str] = GroupCommit(self._forget_many, _FORGET_BATCH)

    def _key(self, kind: str, ident: str) -> str:
        return f"{self._ns}{kind}:{ident}"

    def ttl(self, delay: float = 0.0) -> float:
        """Lifetime of a record for a job due in `delay` seconds."""
        return self._ttl + max(0.0, delay)

    # -- enqueue ---------------------------------------------------------------------

    async def claim_idempotency(
        self, key: str, job_id: str, ttl: float, *, delay: float = 0.0, wait: bool = True
    ) -> str | None:
        """Take `key` for `job_id`; return the holder's id if another job holds it.

        A key is held for `ttl` seconds and, beyond that, for as long as its job's
        ``job:`` record says it waits or runs. So the record of the key lives as long as
        the job's records can (`ttl` or the records' lifetime for a job due in `delay`
        seconds, whichever is longer) and carries the end of its TTL.

        The claim is pending until `confirm_idempotency`: it lives `claim_window`
        seconds meanwhile. A pending claim of another process is waited for (see
        `_idem_records`), so a key never defers to a job that never reached the broker;
        with `wait` False, `ClaimPending` is raised instead.
        """
        ikey = self._key("idem", key)
        life = max(ttl, self.ttl(delay))
        value = idem_value(self._clock() + ttl, job_id, pending=True)
        pending_life = min(life, self.claim_window)
        waited = 0.0
        pause = _CLAIM_POLL
        while True:
            try:
                holder = await self._claim_once(key, ikey, job_id, value, pending_life)
            except ClaimPending as pending:
                if not wait:
                    raise
                if waited > 2 * self.claim_window:  # a clock or store gone wrong
                    logger.warning(
                        "Idempotency key %r stayed claimed by unconfirmed job %s for %.0f s; "
                        "job %s is taken as its duplicate.",
                        key,
                        pending.holder,
                        waited,
                        job_id,
                    )
                    return pending.holder
                await asyncio.sleep(pause)
                waited += pause
                pause = min(pause * 2, _CLAIM_POLL_MAX)
                continue
            if holder is None and not self.local:
                OPEN_CLAIMS[ikey] = job_id
            return holder

    async def _claim_once(
        self, key: str, ikey: str, job_id: str, value: str, life: float
    ) -> str | None:
        """One attempt of `claim_idempotency`: None when taken, else who holds the key.

        Raises:
            ClaimPending: Another process's claim of the key is not confirmed yet.
        """
        if await self.store.set_if_absent(ikey, value, life):
            return None
        current = await self.store.get(ikey)
        if current is None:  # expired between the two calls: take it now
            await self.store.set(ikey, value, life)
            return None
        holder, until, confirmed = idem_holder(current)
        if not (confirmed or holder == job_id or self.local or OPEN_CLAIMS.get(ikey) == holder):
            # Its publish is under way, or its producer died before the confirm. (A claim
            # of this live process ends soon either way: it counts as confirmed.)
            raise ClaimPending(holder)
        if holder == job_id or until > self._clock() or await self._exists(holder):
            return holder
        # Its TTL is over and its job is gone: the key is free. Two claims may both see
        # that; the one that creates the marker named after the old holder takes it.
        marker = self._key("idemx", f"{key}@{holder}")
        if await self.store.set_if_absent(marker, job_id, life):
            await self.store.set(ikey, value, life)
            return None
        return await self.store.get(marker) or holder

    async def confirm_idempotency(self, claims: Sequence[tuple[str, str, float, float]]) -> None:
        """Hold each ``(key, job id, ttl, delay)`` for its whole TTL: its job was confirmed.

        One write for all of them. It does not read first: a claim taken over meanwhile
        means this job's publish outlasted `claim_window`, and two held records then
        cost a duplicate at most, never a job.
        """
        sets: list[Write] = []
        now = self._clock()
        for key, job_id, ttl, delay in claims:
            ikey = self._key("idem", key)
            OPEN_CLAIMS.pop(ikey, None)
            sets.append((ikey, idem_value(now + ttl, job_id), max(ttl, self.ttl(delay))))
        if sets:
            await self._batch.write_many(sets, ())

    async def _exists(self, job_id: str) -> bool:
        """True while a job waits or runs (its ``job:`` record is not a tombstone)."""
        record = await self.store.get(self._key("job", job_id))
        return record is not None and record.startswith(_WAITING)

    async def release_idempotency(self, key: str, job_id: str) -> None:
        """Give an idempotency key back (the enqueue of `job_id` that took it failed)."""
        ikey = self._key("idem", key)
        if OPEN_CLAIMS.get(ikey) == job_id:
            del OPEN_CLAIMS[ikey]
        current = await self.store.get(ikey)
        if current is not None and idem_holder(current)[0] == job_id:
            await self.store.delete(ikey)

    async def _extend_idempotency(self, key: str, job_id: str, life: float) -> None:
        """Keep `job_id`'s hold on `key` recorded as long as its requeued records live."""
        ikey = self._key("idem", key)
        current = await self.store.get(ikey)
        if current is not None and idem_holder(current)[0] == job_id:
            await self.store.set(ikey, current, life)

    async def admit(self, job_id: str, envelope: str, delay: float) -> Admission:
        """Record a job about to be published; see `Admission`."""
        key = self._key("job", job_id)
        ttl = self.ttl(delay)
        if await self.store.set_if_absent(key, _WAITING + envelope, ttl):
            return Admission.NEW
        current = await self.store.get(key)
        if current == _DELETED:
            # The deleted message is still queued; instead of publishing a second copy
            # (which the tombstone would not tell apart) the first one runs after all.
            await self.store.set(key, _WAITING + envelope, ttl)
            await self.store.delete(self._key("del", job_id))
            return Admission.REVIVED
        return Admission.PRESENT

    async def forget(self, job_id: str) -> None:
        """Drop every record of a job (its publish failed, or it finished).

        Jobs forgotten concurrently (a worker acking many at once) share one write.
        """
        if self.local:
            await self._forget_many([job_id])
            return
        await self._forgets.submit(job_id)

    async def _forget_many(self, job_ids: list[str]) -> None:
        kinds = ("job", "retry", "del", "run", "copy")
        await self._batch.write_many((), [self._key(k, i) for i in job_ids for k in kinds])

    # -- delivery --------------------------------------------------------------------

    async def hand_out(
        self, deliveries: Sequence[tuple[str, str, bool]], lease: float
    ) -> list[bool]:
        """Record a batch of deliveries as running; False for each one not to run.

        Each delivery is ``(job id, envelope, retried)``, in the order the broker
        delivered them, and is taken as if the batch were taken one delivery after the
        other: a deleted job loses its tombstone and does not run (a later copy of it
        in the batch then runs); a running one gets a ``run:`` record that lives
        `lease` seconds and loses its ``retry:`` record when `retried`; a later copy
        of a job that runs in this batch does not run and touches nothing.

        The jobs wait for this before they start, so it costs one round trip: the
        read of the tombstones and the write of what the batch does if none is
        found travel together (the write touches no ``job:`` record, so the read sees
        the same whichever the store applies first). A batch that meets a tombstone
        pays a second write that corrects what the first one assumed.
        """
        first: dict[str, tuple[str, bool]] = {}
        for job_id, envelope, retried in deliveries:
            first.setdefault(job_id, (envelope, retried))
        ids = list(first)
        assumed: list[Write] = [(self._key("run", i), first[i][0], lease) for i in ids]
        assumed_gone = [self._key("retry", i) for i in ids if first[i][1]]
        keys = [self._key("job", i) for i in ids]
        if self.local:  # no round trip to save: no task either
            values = await self._batch.get_many(keys)
            await self._batch.write_many(assumed, assumed_gone)
        else:
            # The write runs as a task (sent in the next loop pass, while the read is
            # still out); one task rather than gather's two keeps a lone job's cost low.
            write = asyncio.ensure_future(self._batch.write_many(assumed, assumed_gone))
            try:
                values = await self._batch.get_many(keys)
            finally:
                await write
        if _DELETED in values:
            return await self._correct(deliveries, dict(zip(ids, values, strict=True)), lease)
        seen: set[str] = set()
        verdicts: list[bool] = []
        for job_id, _, _ in deliveries:
            verdicts.append(job_id not in seen)
            seen.add(job_id)
        return verdicts

    async def _correct(
        self,
        deliveries: Sequence[tuple[str, str, bool]],
        found: dict[str, str | None],
        lease: float,
    ) -> list[bool]:
        """Verdicts of a batch that met a tombstone, and the write that undoes the guess.

        The batch was recorded as if each job's first copy ran; a tombstoned job's
        first copy does not, so its ``run:`` record goes (or is rewritten for the later
        copy that runs instead) and its tombstone is taken.
        """
        tombstoned = {job_id for job_id, value in found.items() if value == _DELETED}
        started: set[str] = set()
        sets: list[Write] = []
        deletes: list[str] = []
        verdicts: list[bool] = []
        for job_id, envelope, retried in deliveries:
            if job_id in started:
                verdicts.append(False)
                continue
            if found[job_id] == _DELETED:
                found[job_id] = None  # taken: a later copy runs, as it would one by one
                deletes += (self._key("job", job_id), self._key("del", job_id))
                verdicts.append(False)
                continue
            started.add(job_id)
            if job_id in tombstoned:  # a later copy of a tombstoned job runs after all
                if retried:
                    deletes.append(self._key("retry", job_id))
                sets.append((self._key("run", job_id), envelope, lease))
            verdicts.append(True)
        deletes += [self._key("run", job_id) for job_id in tombstoned - started]
        await self._batch.write_many(sets, deletes)
        return verdicts

    async def is_deleted(self, job_id: str) -> bool:
        """True if a tombstone exists for the job."""
        return await self.store.get(self._key("job", job_id)) == _DELETED

    async def renewed(self, job_id: str, envelope: str, lease: float) -> None:
        """A heartbeat: the running record lives `lease` seconds from now."""
        await self.store.set(self._key("run", job_id), envelope, lease)

    async def lapsed(self, job_id: str) -> None:
        """The lease ran out here: the job no longer runs (it goes back to the queue)."""
        await self.store.delete(self._key("run", job_id))

    async def requeued(
        self,
        job_id: str,
        envelope: str,
        *,
        retrying: bool,
        delay: float,
        idempotency_key: str | None = None,
    ) -> None:
        """Record that a job waits again (nack with requeue, or retry_later).

        A job's `idempotency_key` stays held while it waits again, so its record lives
        at least as long as the job's.
        """
        ttl = self.ttl(delay)
        await self.store.set(self._key("job", job_id), _WAITING + envelope, ttl)
        if retrying:
            await self.store.set(self._key("retry", job_id), "1", ttl)
        await self.store.delete(self._key("run", job_id))
        if idempotency_key is not None:
            await self._extend_idempotency(idempotency_key, job_id, ttl)

    # -- copies ----------------------------------------------------------------------

    async def copied(self, job_id: str, copy: int, created_at: float, delay: float) -> None:
        """Record that copy `copy` of the job was confirmed (its older copies are stale).

        Written after the copy's confirm and before the older delivery's ack: a holder
        killed between the two leaves the older message, which is then dropped when it
        is delivered again. A later write of a lower count (two holders of twin copies)
        only makes fewer copies stale, so no write needs to read first.
        """
        await self.store.set(self._key("copy", job_id), f"{copy} {created_at!r}", self.ttl(delay))

    async def superseded(self, copies: Sequence[tuple[Job, int]]) -> list[bool]:
        """For each (job, copy it came as): True when a newer copy of it was confirmed.

        Such a message is stale: the newer copy carries the job (it waits, runs, ran, or
        was itself replaced by a newer one, recorded in turn), so it is acked unrun. A
        job enqueued anew under the same id has another ``created_at`` and is never
        taken for an older copy of the earlier one.
        """
        values = await self._batch.get_many([self._key("copy", job.id) for job, _ in copies])
        verdicts: list[bool] = []
        for (job, copy), value in zip(copies, values, strict=True):
            newest, _, created = (value or "").partition(" ")
            verdicts.append(
                newest.isdigit() and int(newest) > copy and created == repr(job.created_at)
            )
        return verdicts

    # -- lookups ---------------------------------------------------------------------

    async def waiting_envelope(self, job_id: str) -> str | None:
        """The envelope of a waiting (or locally unknown running) job, or None."""
        value = await self.store.get(self._key("job", job_id))
        if value is None or not value.startswith(_WAITING):
            return None
        return value[1:]

    async def running_envelope(self, job_id: str) -> str | None:
        """The envelope of a running job (held by any queue object using this store)."""
        return await self.store.get(self._key("run", job_id))

    async def delete(self, job_id: str) -> bool:
        """Tombstone a waiting or remotely running job; True if it was known."""
        key = self._key("job", job_id)
        current = await self.store.get(key)
        running = await self.store.exists(self._key("run", job_id))
        if current is None and not running:
            return False
        if current == _DELETED:
            return False
        ttl = self._ttl
        await self.store.set(key, _DELETED, ttl)
        await self.store.set(self._key("del", job_id), "1", ttl)
        await self._delete_all([self._key("retry", job_id), self._key("run", job_id)])
        return True

    async def count(self, kind: str) -> int:
        """Number of live records of one kind (``run``, ``retry``, ``del``)."""
        return len(await self.store.keys(f"{self._ns}{kind}:"))

    async def running_ids(self) -> list[str]:
        """Ids of the jobs recorded as running."""
        prefix = f"{self._ns}run:"
        return [key[len(prefix) :] for key in await self.store.keys(prefix)]

    async def clear(self) -> None:
        """Drop every record of this queue, idempotency keys included."""
        keys = [
            key
            for kind in ("job", "del", "run", "retry", "idem", "idemx", "copy")
            for key in await self.store.keys(f"{self._ns}{kind}:")
        ]
        await self._delete_all(keys)

    async def _delete_all(self, keys: list[str]) -> None:
        await self._batch.write_many((), keys)
