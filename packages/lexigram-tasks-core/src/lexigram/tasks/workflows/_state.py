"""Workflow state stores: the protocol (from contracts) and an in-memory version."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from lexigram.contracts.tasks import (
    WorkflowResult,
    WorkflowStateStoreProtocol,
    WorkflowStatus,
    WorkflowSummary,
)
from lexigram.tasks.workflows._runs import InMemoryWorkflowRuns

WorkflowStateStore = WorkflowStateStoreProtocol
"""The published name of the workflow state store protocol (save/load/list/delete)."""

_ACTIVE = frozenset({WorkflowStatus.PENDING, WorkflowStatus.RUNNING})


def _copy(result: WorkflowResult) -> WorkflowResult:
    # Step results are copied so later changes by the caller never alter saved state.
    return dataclasses.replace(result, steps=[dataclasses.replace(step) for step in result.steps])


class InMemoryWorkflowStateStore(InMemoryWorkflowRuns):
    """A `WorkflowStateStore` in process memory, for tests and single-process apps.

    Saved states are copies; `list_active` lists workflows whose saved status is
    PENDING or RUNNING (a chain that crashed mid-run stays RUNNING). It is also a
    `WorkflowRunStoreProtocol` for queue-driven workflows whose workers run in this
    process.
    """

    def __init__(self) -> None:
        super().__init__()
        self._states: dict[str, tuple[WorkflowResult, datetime, datetime]] = {}

    async def save_state(self, workflow_id: str, result: WorkflowResult) -> None:
        """Save a workflow's state, replacing the previous one.

        Args:
            workflow_id: The workflow's id.
            result: Its current result (steps so far, status).
        """
        now = datetime.now(UTC)
        previous = self._states.get(workflow_id)
        created = previous[1] if previous is not None else now
        self._states[workflow_id] = (_copy(result), created, now)

    async def load_state(self, workflow_id: str) -> WorkflowResult | None:
        """Return a workflow's saved state, or None.

        Args:
            workflow_id: The workflow's id.

        Returns:
            A copy of the saved result, or None when nothing is saved.
        """
        entry = self._states.get(workflow_id)
        return None if entry is None else _copy(entry[0])

    async def list_active(self) -> list[WorkflowSummary]:
        """Return summaries of the workflows that have not finished."""
        return [
            WorkflowSummary(
                workflow_id=workflow_id,
                status=result.status,
                completed_steps=[step.step_name for step in result.steps if step.success],
                created_at=created,
                last_updated=updated,
            )
            for workflow_id, (result, created, updated) in self._states.items()
            if result.status in _ACTIVE
        ]

    async def delete_state(self, workflow_id: str) -> None:
        """Delete a workflow's state (no-op when nothing is saved).

        Args:
            workflow_id: The workflow's id.
        """
        self._states.pop(workflow_id, None)
