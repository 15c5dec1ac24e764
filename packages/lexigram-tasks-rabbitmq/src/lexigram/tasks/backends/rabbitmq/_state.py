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
- ``idem:<key>`` the id of the job that holds an idempotency key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from enum import Enum

from lexigram.contracts.tasks import CacheBackendProtocol

logger = logging.getLogger(__name__)

_WAITING = "w"
_DELETED = "d"


class LocalStateStore:
    """In-process `CacheBackendProtocol` store with TTLs and a size bound.

    The default job-state store: exact for jobs enqueued and consumed in one process,
    and blind to other processes (pass a shared store for that). When it holds
    `max_entries` keys the oldest are evicted, so a producer-only process whose jobs
    are acked elsewhere does not grow without bound.
    """

    def __init__(
        self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._data: OrderedDict[str, tuple[str, float | None]] = OrderedDict()
        self._max_entries = max_entries
        self._clock = clock
        self._warned = False

    def __len__(self) -> int:
        return len(self._data)

    def _live(self, key: str) -> str | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= self._clock():
            del self._data[key]
            return None
        return value

    def _put(self, key: str, value: str, ttl: float | None) -> None:
        expires = None if ttl is None else self._clock() + ttl
        self._data[key] = (value, expires)
        self._data.move_to_end(key)
        if len(self._data) > self._max_entries:
            self._data.popitem(last=False)
            if not self._warned:
                self._warned = True
                logger.warning(
                    "The in-process RabbitMQ job-state store reached %d records and evicts "
                    "the oldest; get_job/delete_job may miss old jobs. Pass a shared "
                    "state_store (e.g. Redis) when producers and workers are separate processes.",
                    self._max_entries,
                )

    async def get(self, key: str) -> str | None:
        """Return the value, or None if absent or expired."""
        return self._live(key)

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        """Store a value, expiring after `ttl` seconds when given."""
        self._put(key, value, ttl)

    async def set_if_absent(self, key: str, value: str, ttl: float | None = None) -> bool:
        """Store a value only if the key is absent; True if stored."""
        if self._live(key) is not None:
            return False
        self._put(key, value, ttl)
        return True

    async def delete(self, key: str) -> bool:
        """Delete a key; True if it existed."""
        return self._data.pop(key, None) is not None

    async def exists(self, key: str) -> bool:
        """Return True if the key is present."""
        return self._live(key) is not None

    async def keys(self, prefix: str) -> list[str]:
        """Return the live keys that start with `prefix`."""
        now = self._clock()
        return [
            key
            for key, (_, expires) in self._data.items()
            if key.startswith(prefix) and (expires is None or expires > now)
        ]


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
    ) -> None:
        self.store = store
        self.local = isinstance(store, LocalStateStore)
        self._ns = namespace
        self._ttl = state_ttl

    def _key(self, kind: str, ident: str) -> str:
        return f"{self._ns}{kind}:{ident}"

    def ttl(self, delay: float = 0.0) -> float:
        """Lifetime of a record for a job due in `delay` seconds."""
        return self._ttl + max(0.0, delay)

    # -- enqueue ---------------------------------------------------------------------

    async def claim_idempotency(self, key: str, job_id: str, ttl: float) -> str | None:
        """Take `key` for `job_id`; return the holder's id if another job holds it."""
        ikey = self._key("idem", key)
        if await self.store.set_if_absent(ikey, job_id, ttl):
            return None
        holder = await self.store.get(ikey)
        if holder is None:  # expired between the two calls: take it now
            await self.store.set(ikey, job_id, ttl)
            return None
        return holder

    async def release_idempotency(self, key: str, job_id: str) -> None:
        """Give an idempotency key back (the enqueue of `job_id` that took it failed)."""
        ikey = self._key("idem", key)
        if await self.store.get(ikey) == job_id:
            await self.store.delete(ikey)

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
        """Drop every record of a job (its publish failed, or it finished)."""
        await self._delete_all(
            [
                self._key("job", job_id),
                self._key("retry", job_id),
                self._key("del", job_id),
                self._key("run", job_id),
            ]
        )

    # -- delivery --------------------------------------------------------------------

    async def take_if_deleted(self, job_id: str) -> bool:
        """True if the delivered job was deleted (and drop its tombstone)."""
        key = self._key("job", job_id)
        if await self.store.get(key) != _DELETED:
            return False
        await self._delete_all([key, self._key("del", job_id)])
        return True

    async def is_deleted(self, job_id: str) -> bool:
        """True if a tombstone exists for the job."""
        return await self.store.get(self._key("job", job_id)) == _DELETED

    async def started(self, job_id: str, envelope: str, *, retried: bool, lease: float) -> None:
        """Record that a job was handed to a consumer under a lease of `lease` seconds."""
        if retried:
            await self.store.delete(self._key("retry", job_id))
        await self.store.set(self._key("run", job_id), envelope, lease)

    async def renewed(self, job_id: str, envelope: str, lease: float) -> None:
        """A heartbeat: the running record lives `lease` seconds from now."""
        await self.store.set(self._key("run", job_id), envelope, lease)

    async def lapsed(self, job_id: str) -> None:
        """The lease ran out here: the job no longer runs (it goes back to the queue)."""
        await self.store.delete(self._key("run", job_id))

    async def requeued(self, job_id: str, envelope: str, *, retrying: bool, delay: float) -> None:
        """Record that a job waits again (nack with requeue, or retry_later)."""
        ttl = self.ttl(delay)
        await self.store.set(self._key("job", job_id), _WAITING + envelope, ttl)
        if retrying:
            await self.store.set(self._key("retry", job_id), "1", ttl)
        await self.store.delete(self._key("run", job_id))

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
            for kind in ("job", "del", "run", "retry", "idem")
            for key in await self.store.keys(f"{self._ns}{kind}:")
        ]
        await self._delete_all(keys)

    async def _delete_all(self, keys: list[str]) -> None:
        if self.local:
            for key in keys:
                await self.store.delete(key)
            return
        await asyncio.gather(*(self.store.delete(key) for key in keys))
