"""The in-memory `WorkflowRunStoreProtocol`: queue-driven runs in process memory.

No method awaits between reading and writing a run, so each one is atomic on the
event loop without a lock; the workers sharing it must run in this process.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from typing import Any

from lexigram.contracts.tasks import WorkflowStatus

RUNNING = WorkflowStatus.RUNNING.value
COMPLETED = WorkflowStatus.COMPLETED.value
FAILED = WorkflowStatus.FAILED.value


def step_key(stage: int, member: int) -> str:
    """The key of a step's record in a run's ``steps``: ``"<stage>:<member>"``."""
    return f"{stage}:{member}"


class InMemoryWorkflowRuns:
    """Queue-driven workflow runs in process memory (mixed into the in-memory store).

    It is a `JobRecordingWorkflowRunStoreProtocol`: each stage's job ids are kept apart
    from the step records, in the run's ``jobs``; and a `ListingWorkflowRunStoreProtocol`.
    """

    def __init__(self) -> None:
        self._runs: dict[str, dict[str, Any]] = {}
        # Per run: steps recorded per stage, the member that completed each stage, and the
        # step that failed the run.
        self._counts: dict[str, dict[int, int]] = {}
        self._completers: dict[str, dict[int, int]] = {}
        self._failer: dict[str, str] = {}

    async def create_run(self, workflow_id: str, definition: Mapping[str, Any]) -> bool:
        """Store a new RUNNING run; False when the id exists."""
        if workflow_id in self._runs:
            return False
        now = time.time()
        self._runs[workflow_id] = {
            "workflow_id": workflow_id,
            "definition": copy.deepcopy(dict(definition)),
            "status": RUNNING,
            "steps": {},
            "jobs": {},
            "result": None,
            "error": None,
            "created_at": now,
            "updated_at": now,
        }
        self._counts[workflow_id] = {}
        self._completers[workflow_id] = {}
        return True

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
        run = self._runs.get(workflow_id)
        if run is None:
            return None
        steps: dict[str, Any] = run["steps"]
        key = step_key(stage, member)
        counts = self._counts[workflow_id]
        if key not in steps:
            steps[key] = copy.deepcopy(dict(record))
            counts[stage] = counts.get(stage, 0) + 1
            run["updated_at"] = time.time()
        if run["status"] != RUNNING or counts.get(stage, 0) < size:
            return None
        completer = self._completers[workflow_id].setdefault(stage, member)
        if completer != member:
            return None
        return [copy.deepcopy(steps[step_key(stage, index)]) for index in range(size)]

    async def record_jobs(self, workflow_id: str, stage: int, record: Mapping[str, Any]) -> None:
        """Keep (or replace) the record of a stage's jobs; no-op when the run is absent."""
        run = self._runs.get(workflow_id)
        if run is not None:
            run["jobs"][str(stage)] = copy.deepcopy(dict(record))

    async def fail_step(
        self, workflow_id: str, stage: int, member: int, *, record: Mapping[str, Any]
    ) -> bool:
        """Record a failed step; True to the step that failed the run."""
        run = self._runs.get(workflow_id)
        if run is None:
            return False
        key = step_key(stage, member)
        if key not in run["steps"]:
            run["steps"][key] = copy.deepcopy(dict(record))
            counts = self._counts[workflow_id]
            counts[stage] = counts.get(stage, 0) + 1
        if run["status"] == RUNNING:
            run["status"] = FAILED
            run["error"] = record.get("error")
            run["updated_at"] = time.time()
            self._failer[workflow_id] = key
        return self._failer.get(workflow_id) == key

    async def finish_run(self, workflow_id: str, result: Any) -> None:
        """Mark a RUNNING run COMPLETED with its result."""
        run = self._runs.get(workflow_id)
        if run is not None and run["status"] == RUNNING:
            run["status"] = COMPLETED
            run["result"] = copy.deepcopy(result)
            run["updated_at"] = time.time()

    async def load_run(self, workflow_id: str) -> dict[str, Any] | None:
        """Return a copy of a run, or None; ``failed_step`` names the step that failed it."""
        run = self._runs.get(workflow_id)
        return None if run is None else self._copy(run)

    async def list_runs(
        self, *, status: WorkflowStatus | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Return at most `limit` runs, newest first, each as `load_run` returns it."""
        if limit < 1:
            return []
        wanted = None if status is None else WorkflowStatus(status).value
        # Latest created first; the sort is stable, so runs created at the same instant
        # stay in reverse insertion order (the latest first).
        runs = [r for r in reversed(self._runs.values()) if wanted in (None, r["status"])]
        runs.sort(key=lambda r: float(r["created_at"]), reverse=True)
        return [self._copy(run) for run in runs[:limit]]

    def _copy(self, run: dict[str, Any]) -> dict[str, Any]:
        found = copy.deepcopy(run)
        found["failed_step"] = self._failer.get(run["workflow_id"])
        return found

    async def delete_run(self, workflow_id: str) -> None:
        """Delete a run (no-op when absent)."""
        self._runs.pop(workflow_id, None)
        self._counts.pop(workflow_id, None)
        self._completers.pop(workflow_id, None)
        self._failer.pop(workflow_id, None)
