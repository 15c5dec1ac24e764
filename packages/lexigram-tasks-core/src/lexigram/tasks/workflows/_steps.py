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

A step whose handler is a ``@task`` function (a `TaskFunction`) runs it like the worker
would, within the step's process: awaited when the decorated function is async, with the
task's ``timeout`` and ``max_retries`` (and ``retry_on``/``dont_retry_on``/``retry_backoff``)
where the step sets no ``timeout``/``max_retries`` of its own.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
import uuid
from abc import ABC, abstractmethod
from collections import Counter
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
from lexigram.tasks._worker_settings import RetrySettings
from lexigram.tasks.decorators import TaskFunction
from lexigram.tasks.execution._backoff import retry_delay
from lexigram.tasks.execution._options import DEFAULT_OPTIONS, Reject, Retry, TaskOptions

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
            block the event loop. A ``@task`` function counts as async when the function
            it decorates is.
        on_error: Optional error handler: called with the exception when the handler
            raises or times out (after the last attempt); its return value (awaited if
            async) becomes the step's output. Re-raise inside it to keep the step failed.
        timeout: Seconds one attempt of the handler may run. None: a ``@task``
            handler's own ``timeout``, else no limit.
        max_retries: Further attempts after a failed one. None: a ``@task`` handler's
            own ``max_retries`` when it sets one, else none (a task's unset value means
            the worker's default, which applies to jobs, not to steps). A ``@task``
            handler's ``retry_on``/``dont_retry_on`` choose which failures are retried
            and its ``retry_backoff`` spaces the attempts; ``raise Reject(...)`` in the
            handler is never retried and ``raise Retry(delay=...)`` waits that long.
    """

    name: str
    handler: Callable[..., Any]
    on_error: Callable[[Exception], Any] | None = None
    timeout: float | None = None
    max_retries: int | None = None

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
        if self.max_retries is not None and self.max_retries < 0:
            msg = (
                f"TaskStep {self.name!r} has max_retries {self.max_retries!r}; use 0 or more "
                "(0: never retry)."
            )
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


def _task_options(step: TaskStep) -> TaskOptions:
    """The options of a ``@task`` handler, else the defaults (nothing set)."""
    return step.handler.options if isinstance(step.handler, TaskFunction) else DEFAULT_OPTIONS


def _attempt_timeout(step: TaskStep) -> float | None:
    """Seconds one attempt may run: the step's `timeout`, else its task's (or None)."""
    return step.timeout if step.timeout is not None else _task_options(step).timeout


def _retries(step: TaskStep) -> int:
    """Further attempts after a failed one: `max_retries`, else its task's, else 0."""
    if step.max_retries is not None:
        return step.max_retries
    return _task_options(step).max_retries or 0


def _is_async(handler: Callable[..., Any]) -> bool:
    # A TaskFunction is an object with __call__, which inspect does not see as a
    # coroutine function even when the function it decorates is one.
    if isinstance(handler, TaskFunction):
        return inspect.iscoroutinefunction(handler.__wrapped__)
    return inspect.iscoroutinefunction(handler)


async def _call_handler(step: TaskStep, input_data: Any) -> Any:
    if _is_async(step.handler):
        return await step.handler(input_data)
    # A sync callable may still return an awaitable (a lambda wrapping a coroutine).
    return await _maybe_await(await asyncio.to_thread(step.handler, input_data))


async def _call_with_timeout(step: TaskStep, input_data: Any) -> Any:
    timeout = _attempt_timeout(step)
    if timeout is None:
        return await _call_handler(step, input_data)
    scope = asyncio.timeout(timeout)
    try:
        async with scope:
            return await _call_handler(step, input_data)
    except TimeoutError:
        if not scope.expired():
            raise  # the handler's own TimeoutError, not ours
        whose = "TaskStep.timeout" if step.timeout is not None else "the task's @task(timeout=...)"
        msg = (
            f"Step {step.name!r} did not finish within its timeout of {timeout} s. "
            f"Raise {whose} or make the step faster."
        )
        raise TaskTimeoutError(msg) from None


# The worker's backoff with the task's own settings; a task that sets none retries its
# step at once (the configured retry policy is for jobs, not for in-process steps).
_STEP_RETRY = RetrySettings(initial_delay=0.0, max_delay=math.inf, jitter=0.0)


def _retry_delay(step: TaskStep, exc: Exception, retry: int) -> float | None:
    """Seconds before retry number `retry` (from 1) after `exc`, or None: no retry."""
    options = _task_options(step)
    if retry > _retries(step) or isinstance(exc, Reject) or not options.retries(exc):
        return None
    if isinstance(exc, Retry) and exc.delay is not None:
        return exc.delay
    return retry_delay(retry - 1, options, _STEP_RETRY, None, logger)


async def _attempts(step: TaskStep, input_data: Any) -> Any:
    retry = 0
    while True:
        try:
            return await _call_with_timeout(step, input_data)
        except Exception as exc:
            retry += 1
            delay = _retry_delay(step, exc, retry)
            if delay is None:
                raise
            logger.info(
                "Workflow step %r failed (%s); retry %d of %d in %.3g s.",
                step.name,
                describe(exc),
                retry,
                _retries(step),
                delay,
            )
            await asyncio.sleep(delay)


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
        data = await _attempts(step, input_data)
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


def refuse_repeated_names(kind: str, workflow_id: str, steps: Sequence[TaskStep]) -> None:
    """Refuse steps sharing a name in a workflow that resumes from a state store.

    A resumed run skips the steps saved as done, found by name: two steps of one name
    would share one saved output, and one of them would never run again.

    Raises:
        ValueError: Two steps have the same name.
    """
    repeated = [name for name, n in Counter(step.name for step in steps).items() if n > 1]
    if repeated:
        msg = (
            f"{kind} {workflow_id!r} has several steps named {quoted(repeated)}; a "
            f"{kind} with a state_store resumes by step name, so give each step a unique name."
        )
        raise ValueError(msg)


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
