"""The start-up connection check reports a backend's own error, not a generic line of its own.

`probe` (which the commands and `TaskProvider.boot` both call) waits for the backend's
first answer a margin past the backend's own deadlines, so that the backend's error
(naming the cause and what to do) is the one shown. A backend's error that is also a
`TimeoutError`, or a `TimeoutError` the backend raised at a deadline of its own, used to
be taken for the probe's deadline and replaced by "did not answer within ... Check that
the server is running". Its own errors are `BackendConnectionError`s, which the command
line reports as one line like any backend's.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from lexigram.contracts.tasks import BackendConnectionError, TaskBackendSpec
from lexigram.tasks._backends import COMMAND_LINE, ProbeWords, probe, quiet_logging
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.cli._errors import message_for


class LockWaitTimeoutError(BackendConnectionError, TimeoutError):
    """A backend's own error that is a timeout too (its lock wait ran out)."""


class Answering(MemoryTaskQueue):
    """A queue whose connection check ends with a given error, or never (None)."""

    def __init__(self, error: BaseException | None) -> None:
        super().__init__()
        self.error = error

    async def check_connection(self) -> None:
        if self.error is None:
            await asyncio.sleep(3600)
        raise self.error  # type: ignore[misc]


SPEC = TaskBackendSpec(type="memory")


async def test_a_backend_error_that_is_a_timeout_too_is_raised_as_it_is() -> None:
    error = LockWaitTimeoutError("The file stayed locked by process 42: end its transaction.")
    with pytest.raises(LockWaitTimeoutError) as raised:
        await probe(Answering(error), SPEC, timeout=2.0)
    assert raised.value is error


async def test_a_timeout_the_backend_raised_itself_is_reported_with_its_words() -> None:
    error = TimeoutError("handshake not finished within handshake_timeout=0.1 s")
    with pytest.raises(BackendConnectionError) as raised:
        await probe(Answering(error), SPEC, timeout=2.0)
    text = str(raised.value)
    assert "handshake not finished within handshake_timeout=0.1 s" in text
    assert "did not answer within" not in text
    assert raised.value.__cause__ is error


async def test_a_backend_that_never_answers_gets_the_probes_own_line() -> None:
    with pytest.raises(BackendConnectionError) as raised:
        await probe(Answering(None), SPEC, timeout=0.05)
    # The command line's words by default, and the same one line as before.
    assert message_for(raised.value) == (
        "The memory backend did not answer within 1.05 s (--connect-timeout 0.05 s and a 1 s "
        "margin). Check that the server is running and reachable, and that --backend (or the "
        "config's url) is right."
    )
    assert COMMAND_LINE.timeout == "--connect-timeout"


async def test_the_caller_names_what_set_the_timeout_and_the_address() -> None:
    words = ProbeWords(timeout="the start-up check's", address="the URL of tasks.backend")
    with pytest.raises(BackendConnectionError, match=r"within 1\.05 s \(the start-up check's "):
        await probe(Answering(None), SPEC, timeout=0.05, words=words)


async def test_an_os_error_is_one_connection_error_naming_the_backend() -> None:
    cause = ConnectionRefusedError(111, "Connect call failed")
    with pytest.raises(BackendConnectionError) as raised:
        await probe(Answering(cause), SPEC, timeout=2.0)
    assert str(raised.value).startswith(
        "Cannot reach the memory backend (ConnectionRefusedError: [Errno 111] Connect call failed)."
    )
    assert raised.value.__cause__ is cause


async def test_a_queue_without_a_connection_check_answers_a_count() -> None:
    class Counting(MemoryTaskQueue):
        def __init__(self) -> None:
            super().__init__()
            self.counted: list[str] = []

        async def count(self, queue_name: str, status: object = None) -> int:
            self.counted.append(queue_name)
            return 0

    queue = Counting()
    await probe(queue, SPEC, timeout=2.0)
    assert queue.counted == [queue.queue_name]


def test_quiet_logging_keeps_what_the_process_disabled_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(logging.getLogger(), "level", logging.WARNING)
    try:
        with quiet_logging():
            assert logging.root.manager.disable == logging.ERROR
        assert logging.root.manager.disable == logging.NOTSET
        logging.disable(logging.CRITICAL)  # as a test suite or an application may
        with quiet_logging():
            assert logging.root.manager.disable == logging.CRITICAL
        assert logging.root.manager.disable == logging.CRITICAL
    finally:
        logging.disable(logging.NOTSET)


def test_quiet_logging_is_off_when_debugging(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging.getLogger(), "level", logging.DEBUG)
    with quiet_logging():
        assert logging.root.manager.disable == logging.NOTSET


def test_quiet_logging_within_a_logger_leaves_the_rest_of_the_process_logging(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # An application's start: its backends' retries are quiet, its own lines are not.
    monkeypatch.setattr(logging.getLogger(), "level", logging.WARNING)
    backend = logging.getLogger("lexigram.tasks.backends.example")
    elsewhere = logging.getLogger("an.application")
    with caplog.at_level(logging.WARNING), quiet_logging(within="lexigram.tasks.backends"):
        backend.error("retrying the connection")
        elsewhere.error("the application's own error")
        assert logging.root.manager.disable == logging.NOTSET
    backend.warning("after the check")
    assert [r.getMessage() for r in caplog.records] == [
        "the application's own error",
        "after the check",
    ]
    assert logging.getLogger("lexigram.tasks.backends").level == logging.NOTSET
