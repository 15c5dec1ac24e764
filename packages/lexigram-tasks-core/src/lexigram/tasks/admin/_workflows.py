"""Queue-driven workflow runs (JobChain, JobGroup, JobChord) as the run store records them."""

from __future__ import annotations

from typing import Any

from lexigram.contracts.tasks import WorkflowRunStoreProtocol
from lexigram.tasks.workflows import WorkflowRunInfo, WorkflowStepInfo


def _step_dict(step: WorkflowStepInfo) -> dict[str, Any]:
    duration = None
    if step.started_at is not None and step.finished_at is not None:
        duration = step.finished_at - step.started_at
    return {
        "stage": step.stage,
        "member": step.member,
        "task": step.name,
        "status": step.status,
        "result": step.result,
        "error": step.error,
        "job_id": step.job_id,
        "attempts": step.attempts,
        "started_at": step.started_at,
        "finished_at": step.finished_at,
        "duration": duration,
    }


def workflow_dict(info: WorkflowRunInfo) -> dict[str, Any]:
    """A run and every step with its state, result and timing, as plain data.

    ``queue`` is the queue its steps' jobs are enqueued on (None: the store did not
    record it), the one to name when looking a step's job up (``job status --queue``).
    ``failed_step`` is ``"<stage>.<member>"`` of the step that failed the run, the one its
    ``error`` and its handle's `WorkflowError` name (None unless the run failed).
    """
    failing = info.failing_step()
    return {
        "id": info.workflow_id,
        "kind": info.kind,
        "status": info.status.value,
        "queue": info.queue_name,
        "result": info.result,
        "error": info.error,
        "failed_step": None if failing is None else f"{failing.stage}.{failing.member}",
        "created_at": info.created_at,
        "updated_at": info.updated_at,
        "steps": [_step_dict(step) for step in info.steps],
    }


async def load_workflow(
    store: WorkflowRunStoreProtocol, workflow_id: str
) -> WorkflowRunInfo | None:
    """Read one run from the backend's workflow run store; None when it has no such run."""
    from lexigram.tasks.workflows._queued import run_info  # noqa: PLC0415 - one use

    run = await store.load_run(workflow_id)
    return None if run is None else run_info(run)
