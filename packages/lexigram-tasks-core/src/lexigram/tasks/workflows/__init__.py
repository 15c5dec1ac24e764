"""Workflows: chains, groups, chords and branches of steps, resumable from a state store.

See ``docs/workflows.md`` for the statuses, the on_error rule and resuming after a crash.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lexigram.tasks._lazy import lazy_exports

# Each name is imported on first use (the names and their modules are the block below):
# a worker imports `_advance` and `_state` alone unless a job it runs is a workflow step.
if TYPE_CHECKING:
    from lexigram.contracts.tasks import (
        StepResult,
        WorkflowError,
        WorkflowResult,
        WorkflowStatus,
        WorkflowSummary,
    )
    from lexigram.tasks.workflows._advance import register_workflow_store, workflow_store_for
    from lexigram.tasks.workflows._branch import BranchStep
    from lexigram.tasks.workflows._chain import TaskChain, chain
    from lexigram.tasks.workflows._chord import TaskChord
    from lexigram.tasks.workflows._group import TaskGroup
    from lexigram.tasks.workflows._queued import (
        JobChain,
        JobChord,
        JobGroup,
        QueuedWorkflow,
        WorkflowHandle,
        WorkflowRunInfo,
        WorkflowStepInfo,
        with_job_states,
    )
    from lexigram.tasks.workflows._state import InMemoryWorkflowStateStore, WorkflowStateStore
    from lexigram.tasks.workflows._steps import TaskStep, Workflow, run_step

__getattr__, __dir__ = lazy_exports(__name__)

__all__ = [
    "BranchStep",
    "InMemoryWorkflowStateStore",
    "JobChain",
    "JobChord",
    "JobGroup",
    "QueuedWorkflow",
    "StepResult",
    "TaskChain",
    "TaskChord",
    "TaskGroup",
    "TaskStep",
    "Workflow",
    "WorkflowError",
    "WorkflowHandle",
    "WorkflowResult",
    "WorkflowRunInfo",
    "WorkflowStateStore",
    "WorkflowStatus",
    "WorkflowStepInfo",
    "WorkflowSummary",
    "chain",
    "register_workflow_store",
    "run_step",
    "with_job_states",
    "workflow_store_for",
]
