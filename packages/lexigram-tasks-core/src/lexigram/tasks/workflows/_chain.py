"""`TaskChain` and `chain()`: steps in sequence, each fed the previous step's output."""

from __future__ import annotations

import logging
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

logger = logging.getLogger(__name__)


class TaskChain(Workflow):
    """Sequential task execution — output of each step feeds the next.

    Example:
        chain = TaskChain([
            TaskStep("parse", parse_data),
            TaskStep("validate", validate_data),
            TaskStep("save", save_data),
        ])
        result = await chain.execute(raw_input)

    Outcome: COMPLETED (``Ok``) when every step succeeded, final result = the last
    step's output. A failed step with ``stop_on_error=True`` stops the chain: FAILED
    (``Err``), final result None. With ``stop_on_error=False`` the failed step's input
    goes on to the next step; the chain ends PARTIALLY_COMPLETED (some steps succeeded,
    final result = the last successful output) or FAILED (none did).

    Resume: with a `state_store`, the state is saved after every successful step and at
    the end. A later `execute` with the same `workflow_id` skips every step whose name
    is saved as successful and feeds the next step the last saved output, so a chain
    whose process died after step 2 goes on at step 3. A COMPLETED chain re-run returns
    its saved outcome; delete the state (or use a new id) to run it again. Step outputs
    must suit the store (JSON-serializable for Redis and Postgres).

    Args:
        steps: The steps, in order.
        stop_on_error: Whether to stop at the first failed step.
        state_store: Optional store that makes the chain resumable.
        workflow_id: The chain's id (the resume key); 8 random hex characters if None.

    Raises:
        ValueError: Two steps share a name while a `state_store` is set.
    """

    def __init__(
        self,
        steps: Sequence[TaskStep],
        *,
        stop_on_error: bool = True,
        state_store: WorkflowStateStoreProtocol | None = None,
        workflow_id: str | None = None,
    ) -> None:
        self.steps = list(steps)
        self.stop_on_error = stop_on_error
        self.state_store = state_store
        self.workflow_id = workflow_id or new_workflow_id()
        if state_store is not None:
            refuse_repeated_names("TaskChain", self.workflow_id, self.steps)

    def __or__(self, other: TaskStep | TaskChain) -> TaskChain:
        """Return a new chain with `other` appended, keeping this chain's settings.

        Args:
            other: A step, or a chain whose steps are appended.

        Returns:
            The new chain (same stop_on_error, state_store and workflow_id).
        """
        extra = other.steps if isinstance(other, TaskChain) else [other]
        return TaskChain(
            [*self.steps, *extra],
            stop_on_error=self.stop_on_error,
            state_store=self.state_store,
            workflow_id=self.workflow_id,
        )

    def __repr__(self) -> str:
        names = [step.name for step in self.steps]
        return f"TaskChain({names!r}, workflow_id={self.workflow_id!r})"

    async def _save(self, status: WorkflowStatus, steps: list[StepResult], output: Any) -> None:
        if self.state_store is not None:
            state = WorkflowResult(self.workflow_id, status, list(steps), final_result=output)
            await self.state_store.save_state(self.workflow_id, state)

    async def _completed_steps(self) -> dict[str, StepResult]:
        if self.state_store is None:
            return {}
        saved = await self.state_store.load_state(self.workflow_id)
        if saved is None:
            return {}
        done = {step.step_name: step for step in saved.steps if step.success}
        if done:
            logger.info("Chain %r resumes; completed steps: %s", self.workflow_id, list(done))
        return done

    async def execute(self, input_data: Any = None) -> Result[WorkflowResult, WorkflowError]:
        """Execute all steps in sequence, threading output of each step into the next.

        If a workflow_id and state_store were provided at construction, this resumes
        from the last saved checkpoint: steps saved as completed are skipped and the
        last completed step's output seeds the next step.

        Args:
            input_data: Input of the first step.

        Returns:
            ``Ok(WorkflowResult)`` (COMPLETED) or ``Err(WorkflowError)`` whose ``result``
            holds the partial `WorkflowResult`.
        """
        started = time.perf_counter()
        done = await self._completed_steps()
        results: list[StepResult] = []
        current = input_data
        for step in self.steps:
            prior = done.get(step.name)
            if prior is not None:
                results.append(prior)
                current = prior.data
                continue
            outcome = await run_step(step, current)
            results.append(outcome)
            if outcome.success:
                current = outcome.data
                await self._save(WorkflowStatus.RUNNING, results, current)
            elif self.stop_on_error:
                break
        failed = failed_names(results)
        if not failed:
            await self._save(WorkflowStatus.COMPLETED, results, current)
            return conclude(
                self.workflow_id, WorkflowStatus.COMPLETED, results, current, started=started
            )
        succeeded = len(results) > len(failed)
        if self.stop_on_error:
            status, final = WorkflowStatus.FAILED, None
            error = (
                f"Chain {self.workflow_id!r} stopped at step {failed[0]!r}: "
                f"{(results[-1].error or 'it failed').rstrip('.')}. Steps after it did not run; "
                "fix the cause and run the chain again (with a state_store it resumes at that "
                "step)."
            )
        else:
            status = WorkflowStatus.PARTIALLY_COMPLETED if succeeded else WorkflowStatus.FAILED
            final = current if succeeded else None
            error = (
                f"Chain {self.workflow_id!r} ran to its end, but step(s) {quoted(failed)} "
                "failed. See WorkflowError.result.steps for each error."
            )
        await self._save(status, results, final)
        return conclude(self.workflow_id, status, results, final, started=started, error=error)


def chain(
    *steps: TaskStep,
    stop_on_error: bool = True,
    state_store: WorkflowStateStoreProtocol | None = None,
    workflow_id: str | None = None,
) -> TaskChain:
    """Create a sequential TaskChain from the given steps.

    Each step receives the output of the previous step as its input.

    Example:
        result = await chain(
            TaskStep("validate", validate_input),
            TaskStep("process", process_data),
            TaskStep("persist", save_to_db),
        ).execute(raw_data)

    Args:
        *steps: The steps, in order.
        stop_on_error: Whether to abort the pipeline on the first failure.
        state_store: Optional store that makes the chain resumable.
        workflow_id: The chain's id (the resume key).

    Returns:
        The chain.
    """
    return TaskChain(
        list(steps), stop_on_error=stop_on_error, state_store=state_store, workflow_id=workflow_id
    )
