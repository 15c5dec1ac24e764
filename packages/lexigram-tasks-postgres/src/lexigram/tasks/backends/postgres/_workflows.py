"""PostgreSQL workflow stores: the in-process chains' state and queue-driven runs.

A queue-driven run is a row of ``workflow_runs`` (definition, status, result); each
step that ended is a row of ``workflow_steps`` and each joined stage a row of
``workflow_stages`` naming the member that completed it. Every call that decides
something locks the run's row first (``SELECT ... FOR UPDATE``), so the joins of one
run are serialized whichever process makes them; a chord's last two members can
never both see the other's record missing.

The record of a stage's enqueued jobs is a row of ``workflow_steps`` too, at stage
``-1 - <stage>`` (member 0): no join counts a negative stage, and a version that
predates these rows reads them as steps no stage has, so it ignores them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from lexigram.contracts.tasks import WorkflowResult, WorkflowStatus, WorkflowSummary
from lexigram.tasks.backends.postgres._connection import Conn
from lexigram.tasks.backends.postgres._stores import _TableStore, dumps, loads

_ACTIVE_WORKFLOWS = [WorkflowStatus.PENDING.value, WorkflowStatus.RUNNING.value]
_RUNNING = WorkflowStatus.RUNNING.value


_RUN_COLUMNS = "workflow_id, definition, status, result, error, created_at, updated_at, failer"


def jobs_stage(stage: int) -> int:
    """The (negative) stage of the row that holds the jobs of stage `stage`."""
    return -1 - stage


def _run_dict(run: Any, steps: list[Any]) -> dict[str, Any]:
    """A run as `load_run` returns it, from its ``_RUN_COLUMNS`` row and its step rows."""
    created: datetime = run["created_at"]
    updated: datetime = run["updated_at"]
    return {
        "workflow_id": run["workflow_id"],
        "definition": loads(run["definition"]),
        "status": run["status"],
        "steps": {
            f"{r['stage']}:{r['member']}": loads(r["record"]) for r in steps if r["stage"] >= 0
        },
        "jobs": {str(jobs_stage(r["stage"])): loads(r["record"]) for r in steps if r["stage"] < 0},
        "result": None if run["result"] is None else loads(run["result"]),
        "error": run["error"],
        "created_at": created.timestamp(),
        "updated_at": updated.timestamp(),
        "failed_step": run["failer"],
    }


class PostgresWorkflowStateStore(_TableStore):
    """Workflow progress, so a chain resumes from its last completed step after a crash.

    It is also the `JobRecordingWorkflowRunStoreProtocol` (and the
    `ListingWorkflowRunStoreProtocol`) of queue-driven workflows.
    """

    _what = "workflow state store"

    async def save_state(self, workflow_id: str, result: WorkflowResult) -> None:
        """Save (or replace) a workflow's state."""
        await self._execute(
            f"""
INSERT INTO {self._s}.workflows (namespace, workflow_id, status, data)
VALUES ($1, $2, $3, $4::json)
ON CONFLICT (namespace, workflow_id) DO UPDATE SET status = EXCLUDED.status,
    data = EXCLUDED.data, updated_at = clock_timestamp()""",  # noqa: S608 - validated
            self.namespace,
            workflow_id,
            result.status.value,
            dumps(result.to_dict()),
        )

    async def load_state(self, workflow_id: str) -> WorkflowResult | None:
        """Return a workflow's saved state, or None."""
        text = await self._fetchval(
            f"SELECT data FROM {self._s}.workflows WHERE namespace = $1 AND workflow_id = $2",  # noqa: S608 - validated
            self.namespace,
            workflow_id,
        )
        return None if text is None else WorkflowResult.from_dict(loads(text))

    async def list_active(self) -> list[WorkflowSummary]:
        """Return summaries of the workflows that are pending or running."""
        rows = await self._fetch(
            f"SELECT workflow_id, data, created_at, updated_at FROM {self._s}.workflows "  # noqa: S608 - validated
            "WHERE namespace = $1 AND status = ANY($2::text[]) ORDER BY created_at",
            self.namespace,
            _ACTIVE_WORKFLOWS,
        )
        summaries: list[WorkflowSummary] = []
        for row in rows:
            result = WorkflowResult.from_dict(loads(row["data"]))
            created: datetime = row["created_at"]
            updated: datetime = row["updated_at"]
            summaries.append(
                WorkflowSummary(
                    workflow_id=row["workflow_id"],
                    status=result.status,
                    completed_steps=[step.step_name for step in result.steps if step.success],
                    created_at=created,
                    last_updated=updated,
                )
            )
        return summaries

    async def delete_state(self, workflow_id: str) -> None:
        """Delete a workflow's state (no-op when absent)."""
        await self._execute(
            f"DELETE FROM {self._s}.workflows WHERE namespace = $1 AND workflow_id = $2",  # noqa: S608 - validated
            self.namespace,
            workflow_id,
        )

    # -- queue-driven runs ---------------------------------------------------------------

    async def _in_transaction(self, what: str, fn: Any) -> Any:
        await self._ensure_ready()

        async def run(conn: Conn) -> Any:
            async with conn.transaction():
                return await fn(conn)

        return await self._db.run(run, what)

    async def _lock_run(self, conn: Conn, workflow_id: str) -> Any:
        return await conn.fetchrow(
            f"SELECT status, failer FROM {self._s}.workflow_runs "  # noqa: S608 - validated
            "WHERE namespace = $1 AND workflow_id = $2 FOR UPDATE",
            self.namespace,
            workflow_id,
        )

    async def _insert_step(
        self, conn: Conn, workflow_id: str, stage: int, member: int, record: Mapping[str, Any]
    ) -> None:
        await conn.execute(
            f"INSERT INTO {self._s}.workflow_steps (namespace, workflow_id, stage, member, "  # noqa: S608 - validated
            "record) VALUES ($1, $2, $3, $4, $5::json) ON CONFLICT DO NOTHING",
            self.namespace,
            workflow_id,
            stage,
            member,
            dumps(dict(record)),
        )

    async def create_run(self, workflow_id: str, definition: Mapping[str, Any]) -> bool:
        """Store a new RUNNING run; False when the id exists."""
        status = await self._execute(
            f"INSERT INTO {self._s}.workflow_runs (namespace, workflow_id, status, definition) "  # noqa: S608 - validated
            "VALUES ($1, $2, $3, $4::json) ON CONFLICT DO NOTHING",
            self.namespace,
            workflow_id,
            _RUNNING,
            dumps(dict(definition)),
        )
        return status.endswith(" 1")

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
        s = self._s

        async def join(conn: Conn) -> list[dict[str, Any]] | None:
            run = await self._lock_run(conn, workflow_id)
            if run is None:
                return None
            await self._insert_step(conn, workflow_id, stage, member, record)
            if run["status"] != _RUNNING:
                return None
            count = await conn.fetchval(
                f"SELECT count(*) FROM {s}.workflow_steps "  # noqa: S608 - validated
                "WHERE namespace = $1 AND workflow_id = $2 AND stage = $3",
                self.namespace,
                workflow_id,
                stage,
            )
            if count < size:
                return None
            completer = await conn.fetchval(
                f"INSERT INTO {s}.workflow_stages (namespace, workflow_id, stage, completer) "  # noqa: S608 - validated
                "VALUES ($1, $2, $3, $4) ON CONFLICT (namespace, workflow_id, stage) "
                "DO UPDATE SET completer = workflow_stages.completer RETURNING completer",
                self.namespace,
                workflow_id,
                stage,
                member,
            )
            if completer != member:
                return None
            rows = await conn.fetch(
                f"SELECT record FROM {s}.workflow_steps WHERE namespace = $1 "  # noqa: S608 - validated
                "AND workflow_id = $2 AND stage = $3 ORDER BY member",
                self.namespace,
                workflow_id,
                stage,
            )
            return [loads(row["record"]) for row in rows]

        answer: list[dict[str, Any]] | None = await self._in_transaction("record a step", join)
        return answer

    async def record_jobs(self, workflow_id: str, stage: int, record: Mapping[str, Any]) -> None:
        """Keep (or replace) the record of a stage's jobs; no-op when the run is absent.

        One statement: the run's row is share-locked while the row is written, so a
        `delete_run` (which deletes the run's row first) either waits for it and then
        deletes the row too, or has deleted the run and this writes nothing.
        """
        await self._execute(
            f"INSERT INTO {self._s}.workflow_steps (namespace, workflow_id, stage, member, "  # noqa: S608 - validated
            f"record) SELECT $1, $2, $3, 0, $4::json WHERE EXISTS (SELECT 1 FROM "
            f"{self._s}.workflow_runs WHERE namespace = $1 AND workflow_id = $2 FOR KEY SHARE) "
            "ON CONFLICT (namespace, workflow_id, stage, member) "
            "DO UPDATE SET record = EXCLUDED.record",
            self.namespace,
            workflow_id,
            jobs_stage(stage),
            dumps(dict(record)),
        )

    async def fail_step(
        self, workflow_id: str, stage: int, member: int, *, record: Mapping[str, Any]
    ) -> bool:
        """Record a failed step; True to the step that failed the run."""
        key = f"{stage}:{member}"

        async def fail(conn: Conn) -> bool:
            run = await self._lock_run(conn, workflow_id)
            if run is None:
                return False
            await self._insert_step(conn, workflow_id, stage, member, record)
            if run["status"] != _RUNNING:
                return bool(run["failer"] == key)
            await conn.execute(
                f"UPDATE {self._s}.workflow_runs SET status = $3, error = $4, failer = $5, "  # noqa: S608 - validated
                "updated_at = clock_timestamp() WHERE namespace = $1 AND workflow_id = $2",
                self.namespace,
                workflow_id,
                WorkflowStatus.FAILED.value,
                str(record.get("error") or ""),
                key,
            )
            return True

        return bool(await self._in_transaction("fail a step", fail))

    async def finish_run(self, workflow_id: str, result: Any) -> None:
        """Mark a RUNNING run COMPLETED with its result."""
        await self._execute(
            f"UPDATE {self._s}.workflow_runs SET status = $3, result = $4::json, "  # noqa: S608 - validated
            "updated_at = clock_timestamp() WHERE namespace = $1 AND workflow_id = $2 "
            "AND status = $5",
            self.namespace,
            workflow_id,
            WorkflowStatus.COMPLETED.value,
            dumps(result),
            _RUNNING,
        )

    async def load_run(self, workflow_id: str) -> dict[str, Any] | None:
        """Return a run, or None; ``failed_step`` names the step that failed it."""
        s = self._s

        async def read(conn: Conn) -> dict[str, Any] | None:
            run = await conn.fetchrow(
                f"SELECT {_RUN_COLUMNS} FROM {s}.workflow_runs "  # noqa: S608 - validated
                "WHERE namespace = $1 AND workflow_id = $2",
                self.namespace,
                workflow_id,
            )
            if run is None:
                return None
            steps = await conn.fetch(
                f"SELECT workflow_id, stage, member, record FROM {s}.workflow_steps "  # noqa: S608 - validated
                "WHERE namespace = $1 AND workflow_id = $2",
                self.namespace,
                workflow_id,
            )
            return _run_dict(run, steps)

        found: dict[str, Any] | None = await self._in_transaction("read a run", read)
        return found

    def _listing_sql(self, *, filtered: bool) -> str:
        """The runs query of `list_runs`: $1 namespace, $2 limit, $3 status when `filtered`.

        Two texts rather than one with ``($3 IS NULL OR status = $3)``: a prepared
        statement's generic plan cannot pick an index by a parameter being NULL. Each
        text is answered by a backward-ordered walk of its index (``stores v9``:
        ``workflow_runs_created_idx``, ``workflow_runs_status_idx``) that stops at the
        limit.
        """
        status = "AND status = $3 " if filtered else ""
        return (
            f"SELECT {_RUN_COLUMNS} FROM {self._s}.workflow_runs WHERE namespace = $1 "  # noqa: S608 - validated
            f"{status}ORDER BY created_at DESC, workflow_id DESC LIMIT $2"
        )

    async def list_runs(
        self, *, status: WorkflowStatus | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Return at most `limit` runs, newest first, each as `load_run` returns it.

        The runs come from an index on the namespace's creation times (on the status's,
        with `status`), so a page reads its own runs and their steps, however many
        runs the namespace holds.
        """
        if limit < 1:
            return []
        s = self._s
        sql = self._listing_sql(filtered=status is not None)
        args = () if status is None else (WorkflowStatus(status).value,)

        async def read(conn: Conn) -> list[dict[str, Any]]:
            runs = await conn.fetch(sql, self.namespace, limit, *args)
            if not runs:
                return []
            steps = await conn.fetch(
                f"SELECT workflow_id, stage, member, record FROM {s}.workflow_steps "  # noqa: S608 - validated
                "WHERE namespace = $1 AND workflow_id = ANY($2::text[])",
                self.namespace,
                [run["workflow_id"] for run in runs],
            )
            by_run: dict[str, list[Any]] = {}
            for step in steps:
                by_run.setdefault(step["workflow_id"], []).append(step)
            return [_run_dict(run, by_run.get(run["workflow_id"], [])) for run in runs]

        # One transaction: the steps read are those of the runs listed, as they were.
        found: list[dict[str, Any]] = await self._in_transaction("list runs", read)
        return found

    async def delete_run(self, workflow_id: str) -> None:
        """Delete a run and its steps (no-op when absent)."""

        async def delete(conn: Conn) -> None:
            # The run's row first: a concurrent `record_jobs` either holds it (this waits,
            # then deletes its row) or finds no run and writes nothing.
            for table in ("workflow_runs", "workflow_steps", "workflow_stages"):
                await conn.execute(
                    f"DELETE FROM {self._s}.{table} WHERE namespace = $1 AND workflow_id = $2",  # noqa: S608 - validated
                    self.namespace,
                    workflow_id,
                )

        await self._in_transaction("delete a run", delete)
