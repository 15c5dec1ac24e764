"""Schedule persistence: typed `SchedulerStore`, in-memory store, dict-record adapter.

Two protocols exist on purpose. Backends (Redis, Postgres, third parties) implement the
contracts' `SchedulerStoreProtocol`, which stores plain JSON-ready records so a backend
needs nothing from core. The published API's `SchedulerStore` is typed over
`ScheduledJob`. `SchedulerStoreAdapter` turns the first into the second, and
`as_scheduler_store` picks what a given store needs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol, cast, runtime_checkable

from lexigram.contracts.tasks import FieldUpdatingSchedulerStoreProtocol, SchedulerStoreProtocol
from lexigram.tasks.scheduling._job import STATE_FIELDS, ScheduledJob

logger = logging.getLogger(__name__)


@runtime_checkable
class SchedulerStore(Protocol):
    """Durable storage of cron schedules, typed over `ScheduledJob`.

    A custom store of this kind must subclass `SchedulerStore` explicitly: `TaskScheduler`
    treats any other store as a dict-record store (`SchedulerStoreProtocol`, what backend
    stores implement) and wraps it in `SchedulerStoreAdapter`. Every method is a no-op
    for an unknown id rather than an error. Ids are store keys (`ScheduledJob.key`,
    ``"<namespace>/<schedule id>"``); the schedule's own id is `ScheduledJob.job_id`.
    """

    async def save_job(self, job_id: str, job: ScheduledJob) -> None:
        """Store (or replace) a schedule.

        Args:
            job_id: The schedule's id.
            job: The schedule.
        """
        ...

    async def load_jobs(self) -> dict[str, ScheduledJob]:
        """Return every stored schedule by id."""
        ...

    async def update_next_run(self, job_id: str, next_run: float) -> None:
        """Record a schedule's next fire time.

        Args:
            job_id: The schedule's id.
            next_run: Unix timestamp of the next fire time.
        """
        ...

    async def delete_job(self, job_id: str) -> None:
        """Remove a schedule.

        Args:
            job_id: The schedule's id.
        """
        ...

    async def update_fields(self, job_id: str, fields: Mapping[str, Any]) -> None:
        """Change state fields of a stored schedule, leaving the rest of it as it is.

        Only the names in `STATE_FIELDS` are written, so that a scheduler recording a
        fire and a command pausing the schedule never undo each other's change. This
        default records ``next_run`` only; the stores shipped here record every field.

        Args:
            job_id: The schedule's store key.
            fields: Some of `STATE_FIELDS` with their new values.
        """
        if fields.get("next_run") is not None:
            await self.update_next_run(job_id, float(fields["next_run"]))


class InMemorySchedulerStore(SchedulerStore):
    """A `SchedulerStore` in process memory, for tests and single-process apps.

    Schedules are kept as records and rebuilt on load, exactly as a persistent store
    would, so two schedulers sharing one instance never share `ScheduledJob` objects.
    """

    def __init__(self) -> None:
        # No lock: every method finishes without awaiting, so each is atomic on the loop.
        self._records: dict[str, dict[str, object]] = {}

    async def save_job(self, job_id: str, job: ScheduledJob) -> None:
        """Store (or replace) a schedule.

        Args:
            job_id: The schedule's id.
            job: The schedule.
        """
        record = job.to_dict()
        record["job_id"] = job.job_id or job_id
        self._records[job_id] = record

    async def load_jobs(self) -> dict[str, ScheduledJob]:
        """Return every stored schedule by id."""
        return {job_id: ScheduledJob.from_dict(rec) for job_id, rec in self._records.items()}

    async def update_next_run(self, job_id: str, next_run: float) -> None:
        """Record a schedule's next fire time (no-op for an unknown id).

        Args:
            job_id: The schedule's id.
            next_run: Unix timestamp of the next fire time.
        """
        record = self._records.get(job_id)
        if record is not None:
            record["next_run"] = next_run

    async def delete_job(self, job_id: str) -> None:
        """Remove a schedule (no-op for an unknown id).

        Args:
            job_id: The schedule's id.
        """
        self._records.pop(job_id, None)

    async def update_fields(self, job_id: str, fields: Mapping[str, Any]) -> None:
        """Change state fields of a stored schedule (no-op for an unknown id).

        Args:
            job_id: The schedule's store key.
            fields: Some of `STATE_FIELDS` with their new values.
        """
        record = self._records.get(job_id)
        if record is not None:
            record.update({k: v for k, v in fields.items() if k in STATE_FIELDS})


class SchedulerStoreAdapter(SchedulerStore):
    """A `SchedulerStore` over a dict-record `SchedulerStoreProtocol` (a backend's store).

    Records are `ScheduledJob.to_dict()`; a record that no longer parses is logged and
    skipped on load instead of stopping a restore.

    Args:
        records: The backend's record store.
    """

    def __init__(self, records: SchedulerStoreProtocol) -> None:
        self.records = records

    async def save_job(self, job_id: str, job: ScheduledJob) -> None:
        """Store (or replace) a schedule.

        Args:
            job_id: The schedule's id.
            job: The schedule.
        """
        record = job.to_dict()
        record["job_id"] = job.job_id or job_id
        await self.records.save_job(job_id, record)

    async def load_jobs(self) -> dict[str, ScheduledJob]:
        """Return every stored schedule that parses, by id."""
        loaded: dict[str, ScheduledJob] = {}
        for job_id, record in (await self.records.load_jobs()).items():
            try:
                job = ScheduledJob.from_dict(record)
                job.cron  # noqa: B018 - parse now so a bad expression is caught here
            except (KeyError, TypeError, ValueError):
                logger.exception(
                    "Skipping stored schedule %r: its record cannot be read. Delete it or "
                    "schedule it again.",
                    job_id,
                )
                continue
            job.job_id = job.job_id or job_id
            loaded[job_id] = job
        return loaded

    async def update_next_run(self, job_id: str, next_run: float) -> None:
        """Record a schedule's next fire time.

        Args:
            job_id: The schedule's id.
            next_run: Unix timestamp of the next fire time.
        """
        await self.records.update_next_run(job_id, next_run)

    async def delete_job(self, job_id: str) -> None:
        """Remove a schedule.

        Args:
            job_id: The schedule's id.
        """
        await self.records.delete_job(job_id)

    async def update_fields(self, job_id: str, fields: Mapping[str, Any]) -> None:
        """Change state fields of a stored schedule (see `update_record_fields`).

        Args:
            job_id: The schedule's store key.
            fields: Some of `STATE_FIELDS` with their new values.
        """
        await update_record_fields(self.records, job_id, fields)


async def update_record_fields(
    records: SchedulerStoreProtocol, key: str, fields: Mapping[str, Any]
) -> None:
    """Change state fields of one record of a dict-record store.

    A store with `FieldUpdatingSchedulerStoreProtocol` (every store shipped with
    lexigram-tasks) changes only those fields in one atomic step. For a store without
    it, ``next_run`` goes through `update_next_run` and the other fields through a read
    and a rewrite of the record (a change another process makes in between can be lost).

    Args:
        records: The backend's record store.
        key: The schedule's store key.
        fields: Some of `STATE_FIELDS` with their new values.
    """
    changes = {k: v for k, v in fields.items() if k in STATE_FIELDS}
    if isinstance(records, FieldUpdatingSchedulerStoreProtocol):
        await records.update_fields(key, changes)
        return
    if changes.get("next_run") is not None:
        await records.update_next_run(key, float(changes["next_run"]))
    rest = {k: v for k, v in changes.items() if k != "next_run"}
    if rest:
        record = (await records.load_jobs()).get(key)
        if record is not None:
            await records.save_job(key, {**record, **rest})


def as_scheduler_store(store: SchedulerStore | SchedulerStoreProtocol) -> SchedulerStore:
    """Return `store` as a typed `SchedulerStore`, wrapping a dict-record store.

    A store whose class subclasses `SchedulerStore` is used as is; any other store is
    taken to be a `SchedulerStoreProtocol` (dict records) and wrapped.

    Args:
        store: A typed store or a backend's dict-record store.

    Returns:
        A typed store.

    Raises:
        TypeError: `store` lacks the four store methods.
    """
    if SchedulerStore in type(store).__mro__:
        return cast("SchedulerStore", store)
    if not isinstance(store, SchedulerStoreProtocol):  # structural: the four methods
        msg = (
            f"{type(store).__name__} is not a scheduler store: it needs async save_job, "
            "load_jobs, update_next_run and delete_job. Pass an InMemorySchedulerStore, a "
            "backend's scheduler store, or a SchedulerStore subclass."
        )
        raise TypeError(msg)
    return SchedulerStoreAdapter(store)
