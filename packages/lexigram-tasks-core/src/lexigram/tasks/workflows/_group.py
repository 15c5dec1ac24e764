"""`TaskGroup`: steps run concurrently on the same input."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from lexigram.contracts.tasks import (
    Result,
    StepResult,
    WorkflowError,
    WorkflowResult,
    WorkflowStateStoreProtocol,
    WorkflowStatus,
)
from lexigram.tasks.workflows._steps import (
    TaskStep,
    Workflow,
    conclude,
    failed_names,
    new_workflow_id,
    quoted,
    refuse_repeated_names,
    run_step,
)


class TaskGroup(Workflow):
    """Parallel task execution — all steps run concurrently.

    Example:
        group = TaskGroup([
            TaskStep("email", send_email),
            TaskStep("sms", send_sms),
        ])
        result = await group.execute(user_data)

    Every step gets the same input and keeps its own timeout and on_error; one step's
    failure never cancels the others. Outcome: COMPLETED (``Ok``) when every step
    succeeded, final result = the list of step outputs in step order;
    PARTIALLY_COMPLETED (``Err``) when some failed, final result = that list with None
    for the failed steps; FAILED (``Err``) when all failed, final result None.

    With a `state_store`, the state is saved after each successful step, and a re-run
    with the same `workflow_id` runs only the steps not saved as successful.

    Args:
        steps: The steps.
        max_concurrency: Most steps running at once (None = all).
        state_store: Optional store that makes the group resumable.
        workflow_id: The group's id; 8 random hex characters if None.

    Raises:
        ValueError: `max_concurrency` is below 1, or two steps share a name while a
            `state_store` is given (a resumed group finds its done steps by name).
    """

    def __init__(
        self,
        steps: Sequence[TaskStep],
        *,
        max_concurrency: int | None = None,
        state_store: WorkflowStateStoreProtocol | None = None,
        workflow_id: str | None = None,
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            msg = f"max_concurrency must be None or >= 1, got {max_concurrency!r}."
            raise ValueError(msg)
        self.steps = list(steps)
        self.max_concurrency = max_concurrency
        self.state_store = state_store
        self.workflow_id = workflow_id or new_workflow_id()
        if state_store is not None:
            refuse_repeated_names("TaskGroup", self.workflow_id, self.steps)

    def __repr__(self) -> str:
        names = [step.name for step in self.steps]
        return f"TaskGroup({names!r}, workflow_id={self.workflow_id!r})"

    async def _completed_steps(self) -> dict[str, StepResult]:
        if self.state_store is None:
            return {}
        saved = await self.state_store.load_state(self.workflow_id)
        if saved is None:
            return {}
        return {step.step_name: step for step in saved.steps if step.success}

    async def run_steps(self, input_data: Any) -> list[StepResult]:
        """Run every step concurrently and return their results in step order.

        Args:
            input_data: The input every step gets.

        Returns:
            One `StepResult` per step.
        """
        done = await self._completed_steps()
        results: list[StepResult | None] = [done.get(step.name) for step in self.steps]
        limit = asyncio.Semaphore(self.max_concurrency) if self.max_concurrency else None
        save_lock = asyncio.Lock()

        async def run_one(index: int, step: TaskStep) -> None:
            if limit is None:
                outcome = await run_step(step, input_data)
            else:
                async with limit:
                    outcome = await run_step(step, input_data)
            results[index] = outcome
            if outcome.success and self.state_store is not None:
                async with save_lock:  # saves in completion order, never interleaved
                    finished = [r for r in results if r is not None]
                    state = WorkflowResult(self.workflow_id, WorkflowStatus.RUNNING, finished)
                    await self.state_store.save_state(self.workflow_id, state)

        tasks = [
            asyncio.create_task(
                run_one(index, step), name=f"workflow-{self.workflow_id}-{step.name}"
            )
            for index, step in enumerate(self.steps)
            if results[index] is None
        ]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # A step raised past run_step (cancellation, a crash): stop its siblings too.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return [r for r in results if r is not None]

    async def execute(self, input_data: Any = None) -> Result[WorkflowResult, WorkflowError]:
        """Run all steps concurrently on `input_data`.

        Args:
            input_data: The input every step gets.

        Returns:
            ``Ok(WorkflowResult)`` (COMPLETED) or ``Err(WorkflowError)`` whose ``result``
            holds every step's result.
        """
        started = time.perf_counter()
        results = await self.run_steps(input_data)
        failed = failed_names(results)
        outputs = [r.data if r.success else None for r in results]
        if not failed:
            status, final, error = WorkflowStatus.COMPLETED, outputs, None
        elif len(failed) < len(results):
            status, final = WorkflowStatus.PARTIALLY_COMPLETED, outputs
            error = (
                f"Group {self.workflow_id!r}: step(s) {quoted(failed)} failed, the others "
                "succeeded. See WorkflowError.result.steps for each error."
            )
        else:
            status, final = WorkflowStatus.FAILED, None
            error = (
                f"Group {self.workflow_id!r}: every step failed ({quoted(failed)}). "
                "See WorkflowError.result.steps for each error."
            )
        if self.state_store is not None:
            state = WorkflowResult(self.workflow_id, status, list(results), final_result=final)
            await self.state_store.save_state(self.workflow_id, state)
        return conclude(self.workflow_id, status, results, final, started=started, error=error)
