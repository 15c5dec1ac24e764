"""`TaskStep`, the `Workflow` base class, and how one step runs.

A step's outcome is always a `StepResult`, never an exception (cancellation and other
`BaseException`s excepted, which propagate):

- the handler returns → ``success=True``, ``data`` = its return value, ``error=None``;
- the handler raises or times out, no ``on_error`` → ``success=False``, ``data=None``,
  ``error`` = ``"<ExceptionType>: <message>"``;
- ... with ``on_error`` → ``on_error(exc)`` is called and what it returns becomes the
  step's output: ``success=True``, ``data`` = that value, and ``error`` still records the
  failure it recovered from. When ``on_error`` raises (re-raise to keep the failure),
  the step fails and ``error`` names both exceptions.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from lexigram.contracts.tasks import (
    Err,
    Ok,
    Result,
    StepResult,
    TaskTimeoutError,
    WorkflowError,
    WorkflowResult,
    WorkflowStatus,
)

if TYPE_CHECKING:
    from lexigram.tasks.workflows._chain import TaskChain

logger = logging.getLogger(__name__)


@dataclass
class TaskStep:
    """A single step in a workflow.

    Attributes:
        name: Human-readable step name (unique within a chain that resumes from a store).
        handler: Callable that takes the step's input and returns its output. Async
            handlers are awaited; sync handlers run in a worker thread so they do not
            block the event loop.
        on_error: Optional error handler: called with the exception when the handler
            raises or times out; its return value (awaited if async) becomes the
            step's output. Re-raise inside it to keep the step failed.
        timeout: Optional timeout in seconds for the handler.
    """

    name: str
    handler: Callable[..., Any]
    on_error: Callable[[Exception], Any] | None = None
    timeout: float | None = None

    def __post_init__(self) -> None:
        if not self.name:
            msg = "A TaskStep needs a non-empty name. Pass e.g. TaskStep('parse', parse_data)."
            raise ValueError(msg)
        if not callable(cast("object", self.handler)):  # checked for untyped callers
            msg = f"TaskStep {self.name!r} has a handler that is not callable: {self.handler!r}."
            raise TypeError(msg)
        if self.timeout is not None and self.timeout <= 0:
            msg = f"TaskStep {self.name!r} has timeout {self.timeout!r}; use a positive number."
            raise ValueError(msg)

    def __or__(self, other: TaskStep | TaskChain) -> TaskChain:
        from lexigram.tasks.workflows._chain import TaskChain  # noqa: PLC0415 - import cycle

        return TaskChain([self]) | other


def new_workflow_id() -> str:
    """Return a fresh workflow id: the first 8 hex characters of a uuid4."""
    return uuid.uuid4().hex[:8]


def describe(exc: BaseException) -> str:
    """Return ``"<ExceptionType>: <message>"`` for a step's `error`."""
    return f"{type(exc).__name__}: {exc}"


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


async def _call_handler(step: TaskStep, input_data: Any) -> Any:
    if inspect.iscoroutinefunction(step.handler):
        return await step.handler(input_data)
    # A sync callable may still return an awaitable (a lambda wrapping a coroutine).
    return await _maybe_await(await asyncio.to_thread(step.handler, input_data))


async def _call_with_timeout(step: TaskStep, input_data: Any) -> Any:
    if step.timeout is None:
        return await _call_handler(step, input_data)
    scope = asyncio.timeout(step.timeout)
    try:
        async with scope:
            return await _call_handler(step, input_data)
    except TimeoutError:
        if not scope.expired():
            raise  # the handler's own TimeoutError, not ours
        msg = (
            f"Step {step.name!r} did not finish within its timeout of {step.timeout} s. "
            "Raise TaskStep.timeout or make the step faster."
        )
        raise TaskTimeoutError(msg) from None


async def run_step(step: TaskStep, input_data: Any) -> StepResult:
    """Run one step (timeout and on_error included) and return its `StepResult`.

    Args:
        step: The step.
        input_data: The step's input.

    Returns:
        The outcome; see the module docstring for the fields.
    """
    started = time.perf_counter()

    def elapsed() -> float:
        return (time.perf_counter() - started) * 1000.0

    try:
        data = await _call_with_timeout(step, input_data)
    except Exception as exc:
        error = describe(exc)
        if step.on_error is None:
            logger.info("Workflow step %r failed: %s", step.name, error)
            return StepResult(step.name, success=False, error=error, duration_ms=elapsed())
        try:
            recovered = await _maybe_await(step.on_error(exc))
        except Exception as handler_exc:
            error = f"{error} (on_error raised {describe(handler_exc)})"
            logger.info("Workflow step %r failed: %s", step.name, error)
            return StepResult(step.name, success=False, error=error, duration_ms=elapsed())
        logger.info("Workflow step %r recovered by on_error from %s", step.name, error)
        return StepResult(
            step.name, success=True, data=recovered, error=error, duration_ms=elapsed()
        )
    return StepResult(step.name, success=True, data=data, duration_ms=elapsed())


def failed_names(steps: Sequence[StepResult]) -> list[str]:
    """Return the names of the failed steps, in order."""
    return [step.step_name for step in steps if not step.success]


def conclude(
    workflow_id: str,
    status: WorkflowStatus,
    steps: list[StepResult],
    final_result: Any,
    *,
    started: float,
    error: str | None = None,
) -> Result[WorkflowResult, WorkflowError]:
    """Build the `Result` of a workflow run: `Ok` only when the status is COMPLETED.

    Args:
        workflow_id: The workflow's id.
        status: The final status.
        steps: Every step result, in order.
        final_result: The workflow's output.
        started: `time.perf_counter()` at the start of the run.
        error: What failed, for a status other than COMPLETED.

    Returns:
        ``Ok(WorkflowResult)``, or ``Err(WorkflowError)`` whose ``result`` is the partial
        `WorkflowResult` and whose ``step_name`` is the first failed step.
    """
    result = WorkflowResult(
        workflow_id=workflow_id,
        status=status,
        steps=steps,
        final_result=final_result,
        total_duration_ms=(time.perf_counter() - started) * 1000.0,
        error=error,
    )
    if status is WorkflowStatus.COMPLETED:
        return Ok(result)
    failed = failed_names(steps)
    message = error or f"Workflow {workflow_id!r} ended with status {status.value!r}."
    return Err(WorkflowError(message, step_name=failed[0] if failed else None, result=result))


def quoted(names: Sequence[str]) -> str:
    """Return ``'a', 'b'`` for error messages."""
    return ", ".join(repr(name) for name in names)


class Workflow(ABC):
    """Base class of `TaskChain`, `TaskGroup`, `TaskChord` and `BranchStep`.

    `execute` returns ``Ok(WorkflowResult)`` with status COMPLETED when every step
    succeeded (a step recovered by its ``on_error`` counts as succeeded), and
    ``Err(WorkflowError)`` otherwise; the error's ``result`` is the partial
    `WorkflowResult` (status FAILED or PARTIALLY_COMPLETED, every step that ran).
    """

    workflow_id: str

    @abstractmethod
    async def execute(self, input_data: Any = None) -> Result[WorkflowResult, WorkflowError]:
        """Run the workflow.

        Args:
            input_data: Input of the first step(s).

        Returns:
            ``Ok(WorkflowResult)`` if every step succeeded, else ``Err(WorkflowError)``.
        """

    def as_step(self, name: str | None = None, *, timeout: float | None = None) -> TaskStep:
        """Wrap this workflow as a `TaskStep`, to nest it in another workflow.

        The step's output is the workflow's ``final_result``; a failed run raises its
        `WorkflowError` inside the step.

        Args:
            name: Step name (defaults to the class name and workflow id).
            timeout: Optional timeout of the whole nested workflow.

        Returns:
            The step.
        """

        async def run_nested(input_data: Any) -> Any:
            outcome = await self.execute(input_data)
            if isinstance(outcome, Err):
                raise outcome.error
            return outcome.value.final_result

        step_name = name or f"{type(self).__name__}:{self.workflow_id}"
        return TaskStep(step_name, run_nested, timeout=timeout)
