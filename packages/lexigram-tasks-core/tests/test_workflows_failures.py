"""Failure matrix: chain, group, chord, branch by step raises, times out, on_error recovers."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from lexigram.contracts.tasks import Err, Ok
from lexigram.tasks.workflows import (
    BranchStep,
    TaskChain,
    TaskChord,
    TaskGroup,
    TaskStep,
    WorkflowError,
    WorkflowResult,
    WorkflowStatus,
)

RAISES = "raises"
TIMES_OUT = "times_out"
RECOVERS = "recovers"
MODES = [RAISES, TIMES_OUT, RECOVERS]
TIMEOUT = 0.05


def ok(name: str) -> TaskStep:
    async def handler(data: Any) -> str:
        return f"{name}({data})"

    return TaskStep(name, handler)


async def _raise(_: Any) -> None:
    msg = "boom"
    raise ValueError(msg)


async def _hang(_: Any) -> None:
    await asyncio.Event().wait()  # never set: only the step timeout ends it


def bad(mode: str, name: str = "bad") -> TaskStep:
    """A failing step: raises, hangs past its timeout, or raises but recovers."""
    if mode == RAISES:
        return TaskStep(name, _raise)
    if mode == TIMES_OUT:
        return TaskStep(name, _hang, timeout=TIMEOUT)
    return TaskStep(name, _raise, on_error=lambda exc: f"fallback<{type(exc).__name__}>")


def expected_error(mode: str, name: str = "bad") -> str:
    if mode == TIMES_OUT:
        return (
            f"TaskTimeoutError: Step {name!r} did not finish within its timeout of {TIMEOUT} s. "
            "Raise TaskStep.timeout or make the step faster."
        )
    return "ValueError: boom"


def unwrap_err(result: Any) -> tuple[WorkflowError, WorkflowResult]:
    assert isinstance(result, Err), result
    error = result.error
    assert isinstance(error, WorkflowError)
    assert isinstance(error.result, WorkflowResult)
    return error, error.result


def table(workflow: WorkflowResult) -> list[tuple[str, bool, Any, str | None]]:
    return [(s.step_name, s.success, s.data, s.error) for s in workflow.steps]


# --------------------------------------------------------------------------- chain


@pytest.mark.parametrize("mode", MODES)
async def test_chain_failure_matrix_stop_on_error(mode: str) -> None:
    result = await TaskChain([ok("a"), bad(mode), ok("c")], workflow_id="ch").execute("in")
    if mode == RECOVERS:
        assert isinstance(result, Ok)
        workflow = result.value
        assert workflow.status is WorkflowStatus.COMPLETED
        assert workflow.final_result == "c(fallback<ValueError>)"
        assert table(workflow) == [
            ("a", True, "a(in)", None),
            ("bad", True, "fallback<ValueError>", "ValueError: boom"),
            ("c", True, "c(fallback<ValueError>)", None),
        ]
        return
    error, workflow = unwrap_err(result)
    assert workflow.status is WorkflowStatus.FAILED
    assert workflow.final_result is None
    assert table(workflow) == [
        ("a", True, "a(in)", None),
        ("bad", False, None, expected_error(mode)),
    ]
    assert error.step_name == "bad"
    assert str(error).startswith(
        f"Chain 'ch' stopped at step 'bad': {expected_error(mode).rstrip('.')}"
    )
    assert ".." not in str(error)  # a step's error ending in a period is not doubled
    assert workflow.error == str(error)


@pytest.mark.parametrize("mode", [RAISES, TIMES_OUT])
async def test_chain_failure_matrix_continue_on_error(mode: str) -> None:
    chain = TaskChain([ok("a"), bad(mode), ok("c")], stop_on_error=False, workflow_id="ch")
    error, workflow = unwrap_err(await chain.execute("in"))
    assert workflow.status is WorkflowStatus.PARTIALLY_COMPLETED
    # The failed step's input goes on to the next step.
    assert workflow.final_result == "c(a(in))"
    assert table(workflow) == [
        ("a", True, "a(in)", None),
        ("bad", False, None, expected_error(mode)),
        ("c", True, "c(a(in))", None),
    ]
    assert "step(s) 'bad' failed" in str(error)


async def test_chain_every_step_failing_without_stop_is_failed() -> None:
    chain = TaskChain([bad(RAISES, "x"), bad(TIMES_OUT, "y")], stop_on_error=False)
    error, workflow = unwrap_err(await chain.execute())
    assert workflow.status is WorkflowStatus.FAILED
    assert workflow.final_result is None
    assert error.step_name == "x"
    assert "'x', 'y'" in str(error)


# --------------------------------------------------------------------------- group


@pytest.mark.parametrize("mode", MODES)
async def test_group_failure_matrix(mode: str) -> None:
    result = await TaskGroup([ok("a"), bad(mode), ok("c")], workflow_id="gr").execute("in")
    if mode == RECOVERS:
        workflow = result.unwrap()
        assert workflow.status is WorkflowStatus.COMPLETED
        assert workflow.final_result == ["a(in)", "fallback<ValueError>", "c(in)"]
        assert table(workflow)[1] == ("bad", True, "fallback<ValueError>", "ValueError: boom")
        return
    error, workflow = unwrap_err(result)
    assert workflow.status is WorkflowStatus.PARTIALLY_COMPLETED
    assert workflow.final_result == ["a(in)", None, "c(in)"]
    assert table(workflow) == [
        ("a", True, "a(in)", None),
        ("bad", False, None, expected_error(mode)),
        ("c", True, "c(in)", None),
    ]
    assert error.step_name == "bad"
    assert str(error).startswith("Group 'gr': step(s) 'bad' failed, the others succeeded.")


async def test_group_every_step_failing_is_failed() -> None:
    error, workflow = unwrap_err(await TaskGroup([bad(RAISES, "x"), bad(TIMES_OUT, "y")]).execute())
    assert workflow.status is WorkflowStatus.FAILED
    assert workflow.final_result is None
    assert [s.success for s in workflow.steps] == [False, False]
    assert "every step failed ('x', 'y')" in str(error)


async def test_group_honours_each_steps_own_timeout() -> None:
    release = asyncio.Event()

    async def slow_but_allowed(_: Any) -> str:
        await release.wait()
        return "done"

    async def releaser(_: Any) -> str:
        await asyncio.sleep(TIMEOUT * 3)  # outlives the short step's timeout on purpose
        release.set()
        return "released"

    group = TaskGroup(
        [
            TaskStep("short", _hang, timeout=TIMEOUT),
            TaskStep("long", slow_but_allowed, timeout=5.0),
            TaskStep("releaser", releaser),
        ]
    )
    _, workflow = unwrap_err(await group.execute())
    assert table(workflow) == [
        ("short", False, None, expected_error(TIMES_OUT, "short")),
        ("long", True, "done", None),
        ("releaser", True, "released", None),
    ]


async def test_group_on_error_recovers_a_timeout() -> None:
    step = TaskStep("t", _hang, timeout=TIMEOUT, on_error=lambda exc: type(exc).__name__)
    workflow = (await TaskGroup([step]).execute()).unwrap()
    assert table(workflow) == [("t", True, "TaskTimeoutError", expected_error(TIMES_OUT, "t"))]


# --------------------------------------------------------------------------- chord


async def _merge(results: list[Any]) -> str:
    return "+".join(str(r) for r in results)


@pytest.mark.parametrize("mode", MODES)
async def test_chord_failure_matrix_in_the_parallel_steps(mode: str) -> None:
    chord = TaskChord([ok("a"), bad(mode)], TaskStep("merge", _merge), workflow_id="cd")
    result = await chord.execute("in")
    if mode == RECOVERS:
        workflow = result.unwrap()
        assert workflow.status is WorkflowStatus.COMPLETED
        assert workflow.final_result == "a(in)+fallback<ValueError>"
        assert [s.step_name for s in workflow.steps] == ["a", "bad", "merge"]
        return
    error, workflow = unwrap_err(result)
    assert workflow.status is WorkflowStatus.PARTIALLY_COMPLETED
    assert workflow.final_result is None
    # The callback did not run.
    assert table(workflow) == [
        ("a", True, "a(in)", None),
        ("bad", False, None, expected_error(mode)),
    ]
    assert error.step_name == "bad"
    assert str(error).startswith(
        "Chord 'cd': step(s) 'bad' failed, so callback 'merge' did not run."
    )


async def test_chord_every_parallel_step_failing_is_failed() -> None:
    chord = TaskChord([bad(RAISES, "x"), bad(TIMES_OUT, "y")], TaskStep("merge", _merge))
    error, workflow = unwrap_err(await chord.execute())
    assert workflow.status is WorkflowStatus.FAILED
    assert "step(s) 'x', 'y' failed" in str(error)


@pytest.mark.parametrize("mode", MODES)
async def test_chord_failure_matrix_in_the_callback(mode: str) -> None:
    callback = bad(mode, "merge")
    chord = TaskChord([ok("a"), ok("b")], callback, workflow_id="cd")
    result = await chord.execute("in")
    if mode == RECOVERS:
        workflow = result.unwrap()
        assert workflow.final_result == "fallback<ValueError>"
        assert table(workflow)[-1] == ("merge", True, "fallback<ValueError>", "ValueError: boom")
        return
    error, workflow = unwrap_err(result)
    assert workflow.status is WorkflowStatus.FAILED
    assert table(workflow) == [
        ("a", True, "a(in)", None),
        ("b", True, "b(in)", None),
        ("merge", False, None, expected_error(mode, "merge")),
    ]
    assert error.step_name == "merge"
    assert str(error).startswith(
        f"Chord 'cd': callback 'merge' failed: {expected_error(mode, 'merge')}"
    )


# --------------------------------------------------------------------------- branch


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("take_true", [True, False])
async def test_branch_failure_matrix(mode: str, take_true: bool) -> None:
    failing = bad(mode, "chosen")
    other = ok("other")
    branch = BranchStep(
        condition=lambda _: take_true,
        if_true=failing if take_true else other,
        if_false=other if take_true else failing,
        workflow_id="br",
    )
    result = await branch.execute("in")
    if mode == RECOVERS:
        workflow = result.unwrap()
        assert workflow.status is WorkflowStatus.COMPLETED
        assert workflow.final_result == "fallback<ValueError>"
        assert table(workflow) == [("chosen", True, "fallback<ValueError>", "ValueError: boom")]
        return
    error, workflow = unwrap_err(result)
    assert workflow.status is WorkflowStatus.FAILED
    assert table(workflow) == [("chosen", False, None, expected_error(mode, "chosen"))]
    assert error.step_name == "chosen"
    assert str(error) == f"Branch 'br': step 'chosen' failed: {expected_error(mode, 'chosen')}."


async def test_branch_condition_raising_is_failed() -> None:
    branch = BranchStep(lambda data: data["missing"], ok("t"), ok("f"), workflow_id="br")
    error, workflow = unwrap_err(await branch.execute({}))
    assert workflow.status is WorkflowStatus.FAILED
    assert table(workflow) == [("condition", False, None, "KeyError: 'missing'")]
    assert error.step_name == "condition"
    assert "neither 't' nor 'f' ran" in str(error)


# --------------------------------------------------------------------------- on_error


async def test_on_error_receives_the_exception_and_may_be_async() -> None:
    seen: list[BaseException] = []

    async def handle(exc: Exception) -> str:
        seen.append(exc)
        return "recovered"

    workflow = (await TaskChain([TaskStep("s", _raise, on_error=handle)]).execute()).unwrap()
    assert workflow.final_result == "recovered"
    assert isinstance(seen[0], ValueError)
    assert str(seen[0]) == "boom"


async def test_on_error_that_raises_keeps_the_step_failed() -> None:
    def reraise(exc: Exception) -> None:
        msg = "cannot recover"
        raise RuntimeError(msg) from exc

    error, workflow = unwrap_err(
        await TaskChain([TaskStep("s", _raise, on_error=reraise)]).execute()
    )
    assert error.step_name == "s"
    assert workflow.status is WorkflowStatus.FAILED
    assert table(workflow) == [
        ("s", False, None, "ValueError: boom (on_error raised RuntimeError: cannot recover)")
    ]


async def test_handler_raising_timeout_error_itself_is_not_reported_as_step_timeout() -> None:
    async def own_timeout(_: Any) -> None:
        msg = "upstream timed out"
        raise TimeoutError(msg)

    _, workflow = unwrap_err(await TaskChain([TaskStep("s", own_timeout, timeout=5.0)]).execute())
    assert table(workflow) == [("s", False, None, "TimeoutError: upstream timed out")]


async def test_sync_handler_timeout_is_honoured() -> None:
    release = threading.Event()

    def blocking(_: Any) -> str:
        release.wait(timeout=5.0)
        return "late"

    try:
        _, workflow = unwrap_err(
            await TaskChain([TaskStep("sync", blocking, timeout=TIMEOUT)]).execute()
        )
    finally:
        release.set()  # let the worker thread finish
    assert table(workflow) == [("sync", False, None, expected_error(TIMES_OUT, "sync"))]


async def test_cancellation_propagates_out_of_a_group() -> None:
    started = asyncio.Event()

    async def waits(_: Any) -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(TaskGroup([TaskStep("w", waits), TaskStep("v", waits)]).execute())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
