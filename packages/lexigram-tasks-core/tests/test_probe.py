"""The CLI's connection probe reports a backend's own error, not a generic line of its own.

`probe` waits for the backend's first answer a margin past the backend's own deadlines,
so that the backend's error (naming the cause and what to do) is the one shown. A
backend's error that is also a `TimeoutError`, or a `TimeoutError` the backend raised at
a deadline of its own, used to be taken for the probe's deadline and replaced by
"did not answer within ... Check that the server is running".
"""

from __future__ import annotations

import asyncio

import pytest

from lexigram.contracts.tasks import BackendConnectionError, TaskBackendSpec
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.cli._context import probe
from lexigram.tasks.cli._errors import CLIError


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
    with pytest.raises(CLIError) as raised:
        await probe(Answering(error), SPEC, timeout=2.0)
    text = str(raised.value)
    assert "handshake not finished within handshake_timeout=0.1 s" in text
    assert "did not answer within" not in text


async def test_a_backend_that_never_answers_gets_the_probes_own_line() -> None:
    with pytest.raises(CLIError, match=r"did not answer within 1\.05 s"):
        await probe(Answering(None), SPEC, timeout=0.05)
