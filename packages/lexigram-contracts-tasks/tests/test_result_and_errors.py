from __future__ import annotations

import pytest

from lexigram.contracts.tasks import (
    Err,
    Ok,
    QueueFullError,
    Result,
    TaskDependencyCycleError,
    TaskError,
    TaskExecutionError,
    TaskQueueError,
    UnwrapError,
)


def _parse(text: str) -> Result[int, str]:
    return Ok(int(text)) if text.isdigit() else Err(f"not a number: {text}")


def test_ok_and_err_basic_api() -> None:
    ok, err = _parse("3"), _parse("x")
    assert ok.is_ok()
    assert not ok.is_err()
    assert ok.unwrap() == 3
    assert err.is_err()
    assert err.unwrap_err() == "not a number: x"
    assert err.unwrap_or(0) == 0
    assert ok.unwrap_or(0) == 3
    assert ok.map_sync(lambda v: v * 2) == Ok(6)
    assert err.map_sync(lambda v: v * 2) == err
    assert err.map_err_sync(str.upper) == Err("NOT A NUMBER: X")
    assert ok.and_then_sync(lambda v: Ok(v + 1)) == Ok(4)
    assert ok.match(ok=lambda v: f"ok {v}", err=lambda e: e) == "ok 3"
    assert err.match(ok=lambda v: f"ok {v}", err=lambda e: f"err {e}").startswith("err")


def test_unwrap_errors() -> None:
    with pytest.raises(UnwrapError):
        Ok(1).unwrap_err()
    with pytest.raises(UnwrapError, match="expected a number"):
        Err("e").expect("expected a number")
    with pytest.raises(QueueFullError):
        Err(QueueFullError()).unwrap()


def test_pattern_matching_on_result() -> None:
    match _parse("7"):
        case Ok(value):
            assert value == 7
        case Err(_):
            pytest.fail("expected Ok")


async def test_async_map_and_then_accept_sync_and_async_functions() -> None:
    async def double(v: int) -> int:
        return v * 2

    assert await Ok(2).map(double) == Ok(4)
    assert await Ok(2).map(lambda v: v + 1) == Ok(3)
    assert await Ok(2).and_then(Ok) == Ok(2)
    assert await Err("e").map(double) == Err("e")


def test_error_tree_and_helpers() -> None:
    error = QueueFullError(queue_name="q", capacity=10).with_hint("Back off.")
    assert isinstance(error, TaskQueueError)
    assert error.capacity == 10
    assert error.code == "LEX_ERR_TASK_002"
    assert "Back off." in error.format()
    assert error.to_dict()["type"] == "QueueFullError"
    assert error.docs_url.endswith("lex_err_task_002")
    assert issubclass(TaskExecutionError, TaskError)
    cause = ValueError("x")
    wrapped = TaskExecutionError("failed", original_error=cause)
    assert wrapped.__cause__ is cause
    cycle = TaskDependencyCycleError(["a", "b", "a"])
    assert "a -> b -> a" in str(cycle)
    assert error.with_details(extra=1).details["extra"] == 1
