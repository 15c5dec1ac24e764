"""`BranchStep`: run one of two steps, chosen by a condition on the input."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

from lexigram.contracts.tasks import (
    Result,
    StepResult,
    WorkflowError,
    WorkflowResult,
    WorkflowStatus,
)
from lexigram.tasks.workflows._steps import (
    TaskStep,
    Workflow,
    conclude,
    describe,
    new_workflow_id,
    run_step,
)


class BranchStep(Workflow):
    """Branch based on a condition evaluated against the input.

    Example:
        workflow = BranchStep(
            condition=lambda data: data["amount"] > 1000,
            if_true=TaskStep("manual_review", manual_review),
            if_false=TaskStep("auto_approve", auto_approve),
        )

    The condition (sync or async) is called with the input; the chosen step runs on the
    same input. Outcome: COMPLETED (``Ok``) with the chosen step's output when it
    succeeded; FAILED (``Err``) when it failed, or when the condition raised (then
    ``WorkflowResult.steps`` holds one failed step named ``"condition"``).

    Args:
        condition: Decides the branch from the input.
        if_true: The step run when the condition is true.
        if_false: The step run when it is false.
        workflow_id: The branch's id; 8 random hex characters if None.
    """

    def __init__(
        self,
        condition: Callable[[Any], Any],
        if_true: TaskStep,
        if_false: TaskStep,
        *,
        workflow_id: str | None = None,
    ) -> None:
        self.condition = condition
        self.if_true = if_true
        self.if_false = if_false
        self.workflow_id = workflow_id or new_workflow_id()

    def __repr__(self) -> str:
        return f"BranchStep(if_true={self.if_true.name!r}, if_false={self.if_false.name!r})"

    async def execute(self, input_data: Any = None) -> Result[WorkflowResult, WorkflowError]:
        """Evaluate the condition and run the chosen step.

        Args:
            input_data: Input of the condition and of the chosen step.

        Returns:
            ``Ok(WorkflowResult)`` (COMPLETED) or ``Err(WorkflowError)``.
        """
        started = time.perf_counter()
        try:
            decision = self.condition(input_data)
            if inspect.isawaitable(decision):
                decision = await decision
        except Exception as exc:
            error = describe(exc)
            failed = StepResult("condition", success=False, error=error)
            message = (
                f"Branch {self.workflow_id!r}: the condition raised {error}, so neither "
                f"{self.if_true.name!r} nor {self.if_false.name!r} ran. Fix the condition."
            )
            return conclude(
                self.workflow_id,
                WorkflowStatus.FAILED,
                [failed],
                None,
                started=started,
                error=message,
            )
        chosen = self.if_true if decision else self.if_false
        outcome = await run_step(chosen, input_data)
        if outcome.success:
            return conclude(
                self.workflow_id, WorkflowStatus.COMPLETED, [outcome], outcome.data, started=started
            )
        message = f"Branch {self.workflow_id!r}: step {chosen.name!r} failed: {outcome.error}."
        return conclude(
            self.workflow_id, WorkflowStatus.FAILED, [outcome], None, started=started, error=message
        )
