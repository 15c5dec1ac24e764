"""SQLite versions of the result, progress, DLQ, scheduler and workflow-state stores.

Each store is one table of the database file (see `_schema`); every process that
opens the file sees the same records. A stored result wakes `wait` in any process
through the file's wake-up sockets.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from lexigram.contracts.tasks import (
    JobResult,
    ProgressInfo,
    WorkflowResult,
    WorkflowStatus,
    WorkflowSummary,
    json_for_storage,
)
from lexigram.tasks.backends.sqlite._base import (
    Purger,
    SQLiteStore,
    Wakeup,
    expiry,
    loads,
)
from lexigram.tasks.backends.sqlite._lookup import result_ids
from lexigram.tasks.backends.sqlite._runs import SQLiteWorkflowRuns


def result_topic(job_id: str) -> str:
    """The wake-up topic published when the result of `job_id` is stored."""
    return f"r:{job_id}"


class _ResultBatch:
    """The results stored since the last batch ran: one ``executemany``, one call.

    Sealed when it first runs; it keeps its rows, so a replay (after a rollback)
    writes the same ones again.
    """

    __slots__ = ("lock", "purger", "rows", "sealed", "topics")

    def __init__(self, purger: Purger, lock: threading.Lock) -> None:
        self.purger = purger
        self.lock = lock
        self.rows: list[tuple[Any, ...]] = []
        self.topics: list[str] = []
        self.sealed = False

    def __call__(self, conn: sqlite3.Connection) -> None:
        with self.lock:
            self.sealed = True
        conn.executemany(
            "INSERT OR REPLACE INTO lexigram_results VALUES (?, ?, ?, ?, ?)", self.rows
        )
        self.purger.after_write(conn, "lexigram_results")


class SQLiteResultStore(SQLiteStore):
    """`ResultStoreProtocol` on SQLite: job results with a TTL; `wait` wakes across processes.

    Args:
        ttl: Seconds a result is kept (default: the `result_ttl` option).
        Others: as `SQLiteStore`.
    """

    def __init__(self, *args: Any, ttl: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ttl = self.options.result_ttl if ttl is None else ttl
        self._purger = Purger()
        self._lock = threading.Lock()  # the batch may run on the database thread
        self._batch: _ResultBatch | None = None

    async def store(self, job_id: str, result: JobResult) -> None:
        """Store `result` under `job_id` (replacing any earlier one) and wake waiters.

        The write is queued, not awaited: every later call of this process (a `get`,
        the job's ack) runs after it on the same connection and so sees it committed.
        Results stored before their batch runs share one ``executemany``.
        """
        data = result.to_json(of=job_id)
        now = time.time()
        row = (job_id, 1 if result.success else 0, data, now, expiry(self._ttl, now))
        with self._lock:
            batch = self._batch
            fresh = batch is None or batch.sealed
            if fresh:
                batch = self._batch = _ResultBatch(self._purger, self._lock)
            assert batch is not None  # noqa: S101 - narrowing for the type checker
            batch.rows.append(row)
            batch.topics.append(result_topic(job_id))
        if fresh:
            # Write-behind: the worker acks the job next, and that ack's commit (awaited
            # or not) comes after this one on the same connection.
            self._db.submit(batch, topics=batch.topics, what="store results")

    async def get(self, job_id: str) -> JobResult | None:
        """Return the result of `job_id`, or None if absent or expired."""

        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT data FROM lexigram_results WHERE job_id = ? AND expires_at > ?",
                (job_id, time.time()),
            ).fetchone()
            return None if row is None else str(row[0])

        raw = await self._db.call(run, write=False, what="read a result")
        return None if raw is None else JobResult.from_dict(loads(raw))

    async def find_job_ids(self, prefix: str, limit: int) -> list[str]:
        """Return up to `limit` ids with a live result starting with `prefix`."""
        return await result_ids(self._db, prefix, limit)

    async def delete(self, job_id: str) -> bool:
        """Delete a result; True if it existed."""

        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM lexigram_results WHERE job_id = ?", (job_id,))
            return cur.rowcount > 0

        return await self._db.call(run, what="delete a result")

    async def wait(
        self, job_id: str, *, timeout: float = 30.0, poll_interval: float = 0.5
    ) -> JobResult | None:
        """Wait up to `timeout` seconds for the result of `job_id`.

        Woken by `store` in any process through the file's wake-up socket; it re-reads
        at most every `poll_interval` option seconds as a safety net (the argument
        `poll_interval` is accepted for the protocol and not used).
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with Wakeup(self._db, result_topic(job_id)) as wakeup:
            while True:
                found = await self.get(job_id)
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                await wakeup.wait(min(remaining, self.options.poll_interval))

    async def cleanup_expired(self) -> int:
        """Remove expired results; returns how many were removed."""

        def run(conn: sqlite3.Connection) -> int:
            cur = conn.execute("DELETE FROM lexigram_results WHERE expires_at <= ?", (time.time(),))
            return cur.rowcount

        return await self._db.call(run, what="clean up results")

    async def _listed(self, success: int, limit: int | None) -> list[JobResult]:
        if limit is not None and limit <= 0:
            return []

        def run(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT data FROM lexigram_results WHERE success = ? AND expires_at > ? "
                "ORDER BY stored_at DESC LIMIT ?",
                (success, time.time(), -1 if limit is None else limit),
            ).fetchall()
            return [str(row[0]) for row in rows]

        return [JobResult.from_dict(loads(raw)) for raw in await self._db.call(run, write=False)]

    async def get_completed(self, limit: int | None = None) -> list[JobResult]:
        """Return stored successful results, newest first (at most `limit`)."""
        return await self._listed(1, limit)

    async def get_failed(self, limit: int | None = None) -> list[JobResult]:
        """Return stored failed results, newest first (at most `limit`)."""
        return await self._listed(0, limit)


class SQLiteProgressStore(SQLiteStore):
    """`ProgressStoreProtocol` on SQLite: the latest `ProgressInfo` per job, with a TTL."""

    def __init__(self, *args: Any, ttl: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ttl = self.options.progress_ttl if ttl is None else ttl
        self._purger = Purger()  # used on the database thread only, like the results'

    async def save(self, info: ProgressInfo) -> None:
        """Save progress state (a finished entry leaves `list_active`).

        Finished is the rule of `ProgressInfo.is_active`: complete by its count, or
        marked complete or failed (a failed or cancelled job). Like storing a result, a
        save now and then deletes a chunk of expired entries.
        """
        data = json_for_storage(info.to_dict(), what=f"progress of job {info.job_id}")
        row = (info.job_id, data, 0 if info.is_active else 1, expiry(self._ttl))
        purger = self._purger

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO lexigram_progress VALUES (?, ?, ?, ?)", row)
            purger.after_write(conn, "lexigram_progress")

        self._db.submit(run, what="save progress")  # write-behind, like results

    async def get(self, job_id: str) -> ProgressInfo | None:
        """Return progress for a job, or None."""

        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT data FROM lexigram_progress WHERE job_id = ? AND expires_at > ?",
                (job_id, time.time()),
            ).fetchone()
            return None if row is None else str(row[0])

        raw = await self._db.call(run, write=False, what="read progress")
        return None if raw is None else ProgressInfo.from_dict(loads(raw))

    async def delete(self, job_id: str) -> None:
        """Remove a progress entry."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM lexigram_progress WHERE job_id = ?", (job_id,))

        self._db.submit(run, what="delete progress")

    async def list_active(self) -> list[ProgressInfo]:
        """Return entries whose job has not completed or failed (expired ones are removed)."""

        def run(conn: sqlite3.Connection) -> list[str]:
            now = time.time()
            conn.execute("DELETE FROM lexigram_progress WHERE expires_at <= ?", (now,))
            rows = conn.execute(
                "SELECT data FROM lexigram_progress WHERE complete = 0 ORDER BY job_id"
            ).fetchall()
            return [str(row[0]) for row in rows]

        raws = await self._db.call(run, what="list progress")
        infos = [ProgressInfo.from_dict(loads(raw)) for raw in raws]
        return [info for info in infos if info.is_active]


class SQLiteDLQBackend(SQLiteStore):
    """`DLQBackendProtocol` on SQLite: dead-letter records, newest first, optionally capped.

    Args:
        max_entries: Most records kept, oldest dropped first (default: the
            `dlq_max_entries` option; 0 = no cap).
    """

    def __init__(self, *args: Any, max_entries: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cap = self.options.dlq_max_entries if max_entries is None else max_entries

    async def add(self, record_id: str, record_data: Mapping[str, Any]) -> None:
        """Store (or replace) a record."""
        data = json_for_storage(dict(record_data), what=f"dead-letter record {record_id}")
        cap = self._cap

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO lexigram_dlq VALUES (?, ?, ?)",
                (record_id, data, time.time()),
            )
            if cap > 0:
                conn.execute(
                    "DELETE FROM lexigram_dlq WHERE record_id IN (SELECT record_id FROM "
                    "lexigram_dlq ORDER BY added_at DESC LIMIT -1 OFFSET ?)",
                    (cap,),
                )

        await self._db.call(run, what="dead-letter a job")

    async def get(self, record_id: str) -> dict[str, Any] | None:
        """Return a record, or None."""

        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT data FROM lexigram_dlq WHERE record_id = ?", (record_id,)
            ).fetchone()
            return None if row is None else str(row[0])

        raw = await self._db.call(run, write=False, what="read a dead-letter record")
        return None if raw is None else dict(loads(raw))

    async def list_all(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Return records newest first, at most `limit` of them."""
        if limit is not None and limit <= 0:
            return []

        def run(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT data FROM lexigram_dlq ORDER BY added_at DESC LIMIT ?",
                (-1 if limit is None else limit,),
            ).fetchall()
            return [str(row[0]) for row in rows]

        return [dict(loads(raw)) for raw in await self._db.call(run, write=False)]

    async def remove(self, record_id: str) -> bool:
        """Delete a record; True if it existed."""

        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM lexigram_dlq WHERE record_id = ?", (record_id,))
            return cur.rowcount > 0

        return await self._db.call(run, what="remove a dead-letter record")

    async def clear(self) -> int:
        """Delete every record and return how many there were."""

        def run(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM lexigram_dlq").rowcount

        return await self._db.call(run, what="clear the dead-letter queue")

    async def size(self) -> int:
        """Return the number of records."""

        def run(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT count(*) FROM lexigram_dlq").fetchone()[0])

        return await self._db.call(run, write=False)


SCHEDULE_STATE_FIELDS = frozenset(
    {"enabled", "next_run", "last_run", "last_outcome", "last_error", "last_job_id"}
)
"""Record fields `SQLiteSchedulerStore.update_fields` changes (others are ignored)."""


class SQLiteSchedulerStore(SQLiteStore):
    """`SchedulerStoreProtocol` on SQLite: schedules survive restarts and are shared.

    `next_run` has a column of its own, so `update_next_run` is one small write; it
    is merged back into each record (key ``"next_run"``) by `load_jobs`. Each
    occurrence still fires once across scheduler processes because the scheduler
    enqueues it under a deterministic idempotency key, which the queue honours.
    """

    async def save_job(self, job_id: str, job: Mapping[str, Any]) -> None:
        """Store (or replace) a schedule."""
        record = dict(job)
        data = json_for_storage(record, what=f"schedule {job_id}")
        next_run = record.get("next_run")
        at = float(next_run) if isinstance(next_run, int | float) else None

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO lexigram_schedules VALUES (?, ?, ?)", (job_id, data, at)
            )

        await self._db.call(run, what="save a schedule")

    async def load_jobs(self) -> dict[str, dict[str, Any]]:
        """Return every stored schedule by id, with its latest ``next_run``."""

        def run(conn: sqlite3.Connection) -> list[tuple[str, str, float | None]]:
            return list(conn.execute("SELECT job_id, data, next_run FROM lexigram_schedules"))

        jobs: dict[str, dict[str, Any]] = {}
        for job_id, raw, next_run in await self._db.call(run, write=False):
            record = dict(loads(raw))
            if next_run is not None:
                record["next_run"] = float(next_run)
            jobs[job_id] = record
        return jobs

    async def update_next_run(self, job_id: str, next_run: float) -> None:
        """Record a schedule's next fire time (ignored for an unknown schedule)."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE lexigram_schedules SET next_run = ? WHERE job_id = ?",
                (float(next_run), job_id),
            )

        await self._db.call(run, what="update a schedule")

    async def delete_job(self, job_id: str) -> None:
        """Remove a schedule."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM lexigram_schedules WHERE job_id = ?", (job_id,))

        await self._db.call(run, what="delete a schedule")

    async def update_fields(self, job_id: str, fields: Mapping[str, Any]) -> None:
        """Change state fields of a schedule, leaving the rest (no-op for an unknown id).

        Read and rewrite happen in one write transaction, so a scheduler recording a
        fire and a command pausing the schedule never undo each other's change.
        """
        changes = {k: v for k, v in fields.items() if k in SCHEDULE_STATE_FIELDS}
        if not changes:
            return
        next_run = changes.get("next_run")
        at = None if next_run is None else float(next_run)

        def run(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT data FROM lexigram_schedules WHERE job_id = ?", (job_id,)
            ).fetchone()
            if row is None:
                return
            record = {**loads(row[0]), **changes}
            conn.execute(
                "UPDATE lexigram_schedules SET data = ?, next_run = COALESCE(?, next_run) "
                "WHERE job_id = ?",
                (json_for_storage(record, what=f"schedule {job_id}"), at, job_id),
            )

        await self._db.call(run, what="update a schedule")


_ACTIVE_WORKFLOW = (WorkflowStatus.PENDING, WorkflowStatus.RUNNING)


class SQLiteWorkflowStateStore(SQLiteWorkflowRuns):
    """`WorkflowStateStoreProtocol` on SQLite, so a chain resumes after a crash.

    It is also the `WorkflowRunStoreProtocol` of queue-driven workflows.
    """

    async def save_state(self, workflow_id: str, result: WorkflowResult) -> None:
        """Save a workflow's state (PENDING/RUNNING ones are listed as active)."""
        data = json_for_storage(result.to_dict(), what=f"state of workflow {workflow_id}")
        active = 1 if result.status in _ACTIVE_WORKFLOW else 0

        def run(conn: sqlite3.Connection) -> None:
            now = time.time()
            conn.execute(
                "INSERT INTO lexigram_workflows VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (workflow_id) DO UPDATE SET data = excluded.data, "
                "active = excluded.active, updated_at = excluded.updated_at",
                (workflow_id, data, active, now, now),
            )

        await self._db.call(run, what="save a workflow's state")

    async def load_state(self, workflow_id: str) -> WorkflowResult | None:
        """Return a workflow's saved state, or None."""

        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT data FROM lexigram_workflows WHERE workflow_id = ?", (workflow_id,)
            ).fetchone()
            return None if row is None else str(row[0])

        raw = await self._db.call(run, write=False, what="load a workflow's state")
        return None if raw is None else WorkflowResult.from_dict(loads(raw))

    async def list_active(self) -> list[WorkflowSummary]:
        """Return workflows that have not finished (PENDING or RUNNING), oldest first."""

        def run(conn: sqlite3.Connection) -> list[tuple[str, str, float, float]]:
            return list(
                conn.execute(
                    "SELECT workflow_id, data, created_at, updated_at FROM lexigram_workflows "
                    "WHERE active = 1 ORDER BY created_at"
                )
            )

        summaries: list[WorkflowSummary] = []
        for workflow_id, raw, created, updated in await self._db.call(run, write=False):
            result = WorkflowResult.from_dict(loads(raw))
            summaries.append(
                WorkflowSummary(
                    workflow_id=workflow_id,
                    status=result.status,
                    completed_steps=[step.step_name for step in result.steps if step.success],
                    created_at=datetime.fromtimestamp(created, UTC),
                    last_updated=datetime.fromtimestamp(updated, UTC),
                )
            )
        return summaries

    async def delete_state(self, workflow_id: str) -> None:
        """Delete a workflow's state."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM lexigram_workflows WHERE workflow_id = ?", (workflow_id,))

        await self._db.call(run, what="delete a workflow's state")
