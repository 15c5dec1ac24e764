"""How `TaskScheduler` keeps its schedules in a store: writes, restore, and re-reads.

Split from `_scheduler` so each module stays readable; `TaskScheduler` is the only
subclass. See ``docs/scheduling.md`` for the ownership rules (namespaces).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, TypeVar

from lexigram.tasks._outage import OutageLog
from lexigram.tasks.scheduling._handle import ScheduleHandle
from lexigram.tasks.scheduling._job import ScheduledJob, storage_key
from lexigram.tasks.scheduling._owners import check_namespace, merge_declared, sort_records
from lexigram.tasks.scheduling._store import SchedulerStore

# The scheduler's one logger, whichever of its modules logs (filters name it).
logger = logging.getLogger("lexigram.tasks.scheduling._scheduler")

T = TypeVar("T")


class StoredSchedules:
    """The store side of `TaskScheduler` (its base class; not used alone)."""

    store: SchedulerStore | None
    scheduled_jobs: dict[str, ScheduledJob]
    queue_name: str | None
    adopt_unowned: bool
    _namespace: str
    _wakeup: asyncio.Event
    _dirty: set[str]
    _stored: set[str]
    _writes: set[asyncio.Task[None]]
    _store_lock: asyncio.Lock
    _write_outage: OutageLog

    @property
    def namespace(self) -> str:
        """The application owning this scheduler's schedules (see the class docstring)."""
        return self._namespace

    @namespace.setter
    def namespace(self, value: str) -> None:
        # Set before any store write (TaskProvider names it once its config is known):
        # the schedules held so far move to the new owner with it.
        value = check_namespace(value)
        for job in self.scheduled_jobs.values():
            if job.namespace == self._namespace:
                job.namespace = value
        self._namespace = value

    def _key(self, schedule_id: str) -> str:
        return storage_key(self._namespace, schedule_id)

    async def restore_from_store(self) -> int:
        """Restore this scheduler's namespace's schedules from the configured store.

        Call once during startup, before `start_scheduler`. Only this scheduler's
        `namespace` is restored. A schedule this scheduler already holds (declared in
        code) keeps its definition and takes the stored state (paused, last run), and
        one the store does not have yet is saved to it; a
        stored schedule without a namespace (saved by an older version) is taken over
        when this scheduler holds one of the same id or `adopt_unowned` is set, and
        otherwise left alone with a warning. Restored schedules whose next run passed
        while no scheduler ran are handled by the misfire policy.

        Returns:
            Number of jobs restored.

        Raises:
            RuntimeError: No store was provided at construction.
        """
        if self.store is None:
            msg = (
                "restore_from_store() needs a scheduler store, and this TaskScheduler has "
                "none. Pass store=... (e.g. InMemorySchedulerStore() or a backend's store)."
            )
            raise RuntimeError(msg)
        found = sort_records(await self.store.load_jobs(), self._namespace)
        claimed: list[str] = []
        for key, job in found.unowned.items():
            if job.job_id in found.own:
                continue
            if self.adopt_unowned or job.job_id in self.scheduled_jobs:
                job.namespace = self._namespace
                job.queue_name = job.queue_name or self.queue_name
                found.own[job.job_id] = job
                claimed.append(key)
        for schedule_id, job in found.own.items():
            held = self.scheduled_jobs.get(schedule_id)
            if held is None:
                self.scheduled_jobs[schedule_id] = job
            else:
                merge_declared(held, job)
                self._dirty.add(schedule_id)
            self._stored.add(schedule_id)
        for key in claimed:
            schedule_id = found.unowned[key].job_id
            self._dirty.add(schedule_id)
            await self._flush([schedule_id])  # written under its new key, then the old removed
            await self.store.delete_job(key)
        # Schedules declared in code but never stored are saved now, so that `schedule
        # list`, `inspect` and the dashboard show what runs, whoever declared them.
        declared_only = [i for i in self.scheduled_jobs if i not in self._stored]
        self._dirty.update(declared_only)
        await self._flush()
        left = sorted(set(found.unowned) - set(claimed))
        if left:
            logger.warning(
                "%d stored schedule(s) have no namespace (saved by an older version) and do "
                "not fire: %s. Remove them with `lexigram-tasks schedule remove ID`, or set "
                "tasks.scheduler.adopt_unowned (TaskScheduler(adopt_unowned=True)) to take "
                "them over as %r.",
                len(left),
                ", ".join(left),
                self._namespace,
            )
        self._wakeup.set()
        logger.info(
            "Restored %d schedule(s) of namespace %r from the store (%d of other namespaces "
            "left alone).",
            len(found.own),
            self._namespace,
            found.foreign,
        )
        return len(found.own)

    def _persist(self, job_id: str, value: T) -> ScheduleHandle[T]:
        if self.store is None:
            return ScheduleHandle(value)
        self._dirty.add(job_id)
        task = self._start_write(job_id)
        handle = ScheduleHandle(value, task=task, write=lambda: self._flush([job_id]))
        if task is not None:
            task.add_done_callback(lambda t: self._write_done(t, handle))
        return handle

    def _persist_if_stored(self, job_id: str) -> None:
        if self.store is not None and (job_id in self._stored or job_id in self._dirty):
            self._dirty.add(job_id)
            task = self._start_write(job_id)
            if task is not None:
                task.add_done_callback(lambda t: self._write_done(t, None))

    def _start_write(self, job_id: str) -> asyncio.Task[None] | None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None  # no loop: written by start_scheduler, the loop, or an await
        task = loop.create_task(self._flush([job_id]), name=f"scheduler-store-{job_id}")
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return task

    def _write_done(self, task: asyncio.Task[None], handle: ScheduleHandle[Any] | None) -> None:
        if task.cancelled():
            return
        exc = task.exception()  # retrieved here so asyncio never reports it as lost
        if exc is None:
            self._write_outage.succeeded()
        elif handle is None or not handle.awaited:  # an awaited handle raises it instead
            self._write_outage.failed(exc)

    async def _flush(self, job_ids: list[str] | None = None) -> None:
        """Write the current state of dirty schedules to the store.

        Writes run one at a time and read the schedule's state when they run, so the
        last write for an id always reflects the latest change, whatever the order in
        which writes were started.
        """
        store = self.store
        if store is None:
            return
        async with self._store_lock:
            for job_id in list(self._dirty) if job_ids is None else job_ids:
                if job_id not in self._dirty:
                    continue
                self._dirty.discard(job_id)
                job = self.scheduled_jobs.get(job_id)
                try:
                    if job is None:
                        await store.delete_job(self._key(job_id))
                        self._stored.discard(job_id)
                    else:
                        await store.save_job(job.key, job)
                        self._stored.add(job_id)
                except Exception:
                    self._dirty.add(job_id)  # retried by the next flush
                    raise

    async def _flush_logged(self) -> None:
        """Write pending changes; a failure is logged (they are retried at the next check)."""
        try:
            await self._flush()
        except Exception as exc:
            self._write_outage.failed(exc)
        else:
            self._write_outage.succeeded()

    async def sync_from_store(self) -> None:
        """Apply changes other processes made to this scheduler's stored schedules.

        A stored schedule that is gone from the store is dropped, and one paused or
        resumed there is paused or resumed here (a resumed one fires from its next
        occurrence after now). Local changes not yet written win. New schedules other
        processes saved are not picked up here: `restore_from_store` does that.
        The loop calls this before each check.
        """
        store = self.store
        if store is None:
            return
        stored = sort_records(await store.load_jobs(), self._namespace).own
        for schedule_id in list(self._stored):
            job = self.scheduled_jobs.get(schedule_id)
            if job is None or schedule_id in self._dirty:
                continue
            record = stored.get(schedule_id)
            if record is None:
                logger.info("Schedule %r was removed from the store; dropped.", schedule_id)
                del self.scheduled_jobs[schedule_id]
                self._stored.discard(schedule_id)
            elif record.enabled != job.enabled:
                logger.info(
                    "Schedule %r was %s in the store.",
                    schedule_id,
                    "resumed" if record.enabled else "paused",
                )
                job.enabled = record.enabled
                if job.enabled:
                    job.next_run = job.calculate_next_run()
