"""Queue-driven workflow runs on SQLite: each join is one write transaction.

`SQLiteDatabase.call` runs a write under the file's write lock (``BEGIN IMMEDIATE``),
so the read-count-decide of a join cannot interleave with another process's; the
tables are ``lexigram_workflow_runs``, ``lexigram_workflow_steps`` and
``lexigram_workflow_stages`` (the member that completed each stage).

The record of a stage's enqueued jobs is a row of ``lexigram_workflow_steps`` too, at
stage ``-1 - <stage>`` (member 0): no join counts a negative stage, and a version that
predates these rows reads them as steps no stage has, so it ignores them.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from typing import Any

from lexigram.contracts.tasks import WorkflowStatus, json_for_storage
from lexigram.tasks.backends.sqlite._base import SQLiteStore, loads

_RUNNING = WorkflowStatus.RUNNING.value

_RUN_COLUMNS = "workflow_id, definition, status, result, error, created_at, updated_at, failer"


def jobs_stage(stage: int) -> int:
    """The (negative) stage of the row that holds the jobs of stage `stage`."""
    return -1 - stage


def _steps_of(conn: sqlite3.Connection, workflow_id: str) -> list[Any]:
    return conn.execute(
        "SELECT stage, member, record FROM lexigram_workflow_steps WHERE workflow_id = ?",
        (workflow_id,),
    ).fetchall()


def listing_sql(*, filtered: bool) -> str:
    """The query of `list_runs`: its parameters are the status when `filtered`, then the limit.

    rowid breaks ties of ``created_at`` (runs created at the same instant, the latest
    first); an index entry ends with the rowid, so the indexes of schema version 7
    (``lexigram_workflow_runs_created``, ``lexigram_workflow_runs_status``) give this
    order without a sort.
    """
    where = "WHERE status = ? " if filtered else ""
    return (
        f"SELECT {_RUN_COLUMNS} FROM lexigram_workflow_runs {where}"  # noqa: S608 - fixed names
        "ORDER BY created_at DESC, rowid DESC LIMIT ?"
    )


def _run_dict(row: Any, rows: list[Any]) -> dict[str, Any]:
    """A run as `load_run` returns it, from its ``_RUN_COLUMNS`` row and its step rows."""
    workflow_id, definition, status, result, error, created, updated, failer = row
    steps = {f"{stage}:{member}": loads(raw) for stage, member, raw in rows if stage >= 0}
    jobs = {str(jobs_stage(stage)): loads(raw) for stage, _, raw in rows if stage < 0}
    return {
        "workflow_id": workflow_id,
        "definition": loads(definition),
        "status": status,
        "steps": steps,
        "jobs": jobs,
        "result": None if result is None else loads(result),
        "error": error,
        "created_at": float(created),
        "updated_at": float(updated),
        "failed_step": failer,
    }


def _insert_step(
    conn: sqlite3.Connection, workflow_id: str, stage: int, member: int, data: str
) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO lexigram_workflow_steps VALUES (?, ?, ?, ?)",
        (workflow_id, stage, member, data),
    )


class SQLiteWorkflowRuns(SQLiteStore):
    """`JobRecordingWorkflowRunStoreProtocol` on SQLite: the base of `SQLiteWorkflowStateStore`.

    It is a `ListingWorkflowRunStoreProtocol` too.
    """

    async def create_run(self, workflow_id: str, definition: Mapping[str, Any]) -> bool:
        """Store a new RUNNING run; False when the id exists."""
        data = json_for_storage(dict(definition), what=f"workflow {workflow_id}")

        def run(conn: sqlite3.Connection) -> bool:
            now = time.time()
            cursor = conn.execute(
                "INSERT OR IGNORE INTO lexigram_workflow_runs (workflow_id, status, definition, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                (workflow_id, _RUNNING, data, now, now),
            )
            return cursor.rowcount == 1

        return await self._db.call(run, what="create a workflow run")

    async def record_step(
        self,
        workflow_id: str,
        stage: int,
        member: int,
        *,
        size: int,
        record: Mapping[str, Any],
    ) -> list[dict[str, Any]] | None:
        """Record a success; the stage's records to the step that completed the stage."""
        data = json_for_storage(
            dict(record), what=f"step {stage}:{member} of workflow {workflow_id}"
        )

        def run(conn: sqlite3.Connection) -> list[str] | None:
            row = conn.execute(
                "SELECT status FROM lexigram_workflow_runs WHERE workflow_id = ?", (workflow_id,)
            ).fetchone()
            if row is None:
                return None
            _insert_step(conn, workflow_id, stage, member, data)
            if row[0] != _RUNNING:
                return None
            (count,) = conn.execute(
                "SELECT count(*) FROM lexigram_workflow_steps WHERE workflow_id = ? AND stage = ?",
                (workflow_id, stage),
            ).fetchone()
            if count < size:
                return None
            conn.execute(
                "INSERT OR IGNORE INTO lexigram_workflow_stages VALUES (?, ?, ?)",
                (workflow_id, stage, member),
            )
            (completer,) = conn.execute(
                "SELECT completer FROM lexigram_workflow_stages "
                "WHERE workflow_id = ? AND stage = ?",
                (workflow_id, stage),
            ).fetchone()
            if completer != member:
                return None
            return [
                str(r[0])
                for r in conn.execute(
                    "SELECT record FROM lexigram_workflow_steps WHERE workflow_id = ? "
                    "AND stage = ? ORDER BY member",
                    (workflow_id, stage),
                )
            ]

        raws = await self._db.call(run, what="record a workflow step")
        return None if raws is None else [loads(raw) for raw in raws]

    async def record_jobs(self, workflow_id: str, stage: int, record: Mapping[str, Any]) -> None:
        """Keep (or replace) the record of a stage's jobs; no-op when the run is absent."""
        data = json_for_storage(
            dict(record), what=f"jobs of stage {stage} of workflow {workflow_id}"
        )

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO lexigram_workflow_steps SELECT ?, ?, 0, ? WHERE EXISTS "
                "(SELECT 1 FROM lexigram_workflow_runs WHERE workflow_id = ?)",
                (workflow_id, jobs_stage(stage), data, workflow_id),
            )

        await self._db.call(run, what="record a workflow stage's jobs")

    async def fail_step(
        self, workflow_id: str, stage: int, member: int, *, record: Mapping[str, Any]
    ) -> bool:
        """Record a failed step; True to the step that failed the run."""
        data = json_for_storage(
            dict(record), what=f"step {stage}:{member} of workflow {workflow_id}"
        )
        key = f"{stage}:{member}"

        def run(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT status, failer FROM lexigram_workflow_runs WHERE workflow_id = ?",
                (workflow_id,),
            ).fetchone()
            if row is None:
                return False
            _insert_step(conn, workflow_id, stage, member, data)
            if row[0] != _RUNNING:
                return bool(row[1] == key)
            conn.execute(
                "UPDATE lexigram_workflow_runs SET status = ?, error = ?, failer = ?, "
                "updated_at = ? WHERE workflow_id = ?",
                (
                    WorkflowStatus.FAILED.value,
                    str(record.get("error") or ""),
                    key,
                    time.time(),
                    workflow_id,
                ),
            )
            return True

        return await self._db.call(run, what="fail a workflow step")

    async def finish_run(self, workflow_id: str, result: Any) -> None:
        """Mark a RUNNING run COMPLETED with its result."""
        data = json_for_storage(result, what=f"result of workflow {workflow_id}")

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE lexigram_workflow_runs SET status = ?, result = ?, updated_at = ? "
                "WHERE workflow_id = ? AND status = ?",
                (WorkflowStatus.COMPLETED.value, data, time.time(), workflow_id, _RUNNING),
            )

        await self._db.call(run, what="finish a workflow run")

    async def load_run(self, workflow_id: str) -> dict[str, Any] | None:
        """Return a run, or None; ``failed_step`` names the step that failed it."""

        def run(conn: sqlite3.Connection) -> tuple[Any, list[Any]] | None:
            row = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM lexigram_workflow_runs WHERE workflow_id = ?",  # noqa: S608 - fixed names
                (workflow_id,),
            ).fetchone()
            return None if row is None else (row, _steps_of(conn, workflow_id))

        found = await self._db.call(run, write=False, what="read a workflow run")
        return None if found is None else _run_dict(*found)

    async def list_runs(
        self, *, status: WorkflowStatus | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Return at most `limit` runs, newest first, each as `load_run` returns it.

        The runs come from a backward walk of an index on ``created_at`` (on
        ``(status, created_at)`` with `status`) that stops after `limit` rows, so a
        page costs its own runs and their steps, however many runs the file holds.
        """
        if limit < 1:
            return []
        sql = listing_sql(filtered=status is not None)
        params = () if status is None else (WorkflowStatus(status).value,)

        def run(conn: sqlite3.Connection) -> list[tuple[Any, list[Any]]]:
            rows = conn.execute(sql, (*params, limit)).fetchall()
            return [(row, _steps_of(conn, row[0])) for row in rows]

        found = await self._db.call(run, write=False, what="list workflow runs")
        return [_run_dict(row, steps) for row, steps in found]

    async def delete_run(self, workflow_id: str) -> None:
        """Delete a run and its steps (no-op when absent)."""

        def run(conn: sqlite3.Connection) -> None:
            for table in ("workflow_steps", "workflow_stages", "workflow_runs"):
                conn.execute(
                    f"DELETE FROM lexigram_{table} WHERE workflow_id = ?",  # noqa: S608 - fixed names
                    (workflow_id,),
                )

        await self._db.call(run, what="delete a workflow run")
