"""`TaskChord`: a group of steps in parallel, then a callback given all their outputs."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from lexigram.contracts.tasks import Result, WorkflowError, WorkflowResult, WorkflowStatus
from lexigram.tasks.workflows._group import TaskGroup
from lexigram.tasks.workflows._steps import (
    TaskStep,
    Workflow,
    conclude,
    failed_names,
    new_workflow_id,
    quoted,
    run_step,
)


class TaskChord(Workflow):
    """Fan-out then collect — parallel steps + callback with all results.

    Example:
        chord = TaskChord(
            steps=[TaskStep("a", fetch_a), TaskStep("b", fetch_b)],
            callback=TaskStep("merge", merge_results),
        )
        result = await chord.execute()

    The steps run as a `TaskGroup` on the input; the callback gets the list of their
    outputs, in step order. Outcome: COMPLETED (``Ok``) when every step and the callback
    succeeded, final result = the callback's output. When a step fails (after its
    on_error), the callback does not run: PARTIALLY_COMPLETED (``Err``) if other steps
    succeeded, FAILED if none did; the error message names the failed steps. When the
    callback fails: FAILED (``Err``). ``WorkflowResult.steps`` lists the steps, then the
    callback when it ran.

    Args:
        steps: The parallel steps.
        callback: The step that receives the list of their outputs.
        max_concurrency: Most steps running at once (None = all).
        workflow_id: The chord's id; 8 random hex characters if None.
    """

    def __init__(
        self,
        steps: Sequence[TaskStep],
        callback: TaskStep,
        *,
        max_concurrency: int | None = None,
        workflow_id: str | None = None,
    ) -> None:
        self.workflow_id = workflow_id or new_workflow_id()
        self.group = TaskGroup(steps, max_concurrency=max_concurrency, workflow_id=self.workflow_id)
        self.callback = callback

    def __repr__(self) -> str:
        names = [step.name for step in self.group.steps]
        return f"TaskChord({names!r}, callback={self.callback.name!r})"

    async def execute(self, input_data: Any = None) -> Result[WorkflowResult, WorkflowError]:
        """Run the steps concurrently, then the callback with all their outputs.

        Args:
            input_data: The input every parallel step gets.

        Returns:
            ``Ok(WorkflowResult)`` (COMPLETED) or ``Err(WorkflowError)`` whose ``result``
            holds every step that ran.
        """
        started = time.perf_counter()
        results = await self.group.run_steps(input_data)
        failed = failed_names(results)
        if failed:
            succeeded = len(failed) < len(results)
            status = WorkflowStatus.PARTIALLY_COMPLETED if succeeded else WorkflowStatus.FAILED
            error = (
                f"Chord {self.workflow_id!r}: step(s) {quoted(failed)} failed, so callback "
                f"{self.callback.name!r} did not run. See WorkflowError.result.steps for "
                "each error."
            )
            return conclude(self.workflow_id, status, results, None, started=started, error=error)
        callback_result = await run_step(self.callback, [r.data for r in results])
        steps = [*results, callback_result]
        if not callback_result.success:
            error = (
                f"Chord {self.workflow_id!r}: callback {self.callback.name!r} failed: "
                f"{callback_result.error}. The parallel steps succeeded; see "
                "WorkflowError.result.steps for their outputs."
            )
            return conclude(
                self.workflow_id, WorkflowStatus.FAILED, steps, None, started=started, error=error
            )
        return conclude(
            self.workflow_id, WorkflowStatus.COMPLETED, steps, callback_result.data, started=started
        )
