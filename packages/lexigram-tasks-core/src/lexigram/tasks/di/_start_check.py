"""`TaskProvider`'s start-up check: every backend answers before anything starts.

The same `probe` as every command of the command line makes, so a wrong URL or password
ends an application's boot with the backend's own one-line error, as it ends a command.
"""

from __future__ import annotations

from collections.abc import Iterable

from lexigram.contracts.tasks import TaskQueueProtocol
from lexigram.tasks._backends import (
    DEFAULT_CONNECT_TIMEOUT,
    ProbeWords,
    QueueCheck,
    TaskBackendRegistry,
    probe_all,
)
from lexigram.tasks.di._stack import BackendStack

BACKEND_LOGGERS = "lexigram.tasks.backends"
"""Where the backends shipped with lexigram-tasks log (quiet during the check)."""


async def check_stacks(
    stacks: Iterable[BackendStack],
    registry: TaskBackendRegistry,
    given_queue: TaskQueueProtocol | None = None,
) -> None:
    """Make the start-up connection check of every stack's queue, all at once (`probe_all`).

    Each check waits at least `DEFAULT_CONNECT_TIMEOUT` seconds, as the command line
    does, and a margin past the backend's own first-answer deadlines (the configured
    ones, else the backend's defaults), which are left as configured. Meanwhile only the
    backends' loggers are quiet: the rest of the application keeps logging, unlike a
    command, which quiets its whole process.

    Args:
        stacks: The provider's backend stacks.
        registry: The provider's backend registry (backends registered in code).
        given_queue: The queue object passed to `TaskProvider`, if any: a failure of its
            check names it instead of a configured URL.

    Raises:
        TaskQueueError: A backend is unreachable, refuses the connection or never answers.
    """
    await probe_all(
        [QueueCheck(stack.queue, stack.spec, _words(stack, given_queue)) for stack in stacks],
        DEFAULT_CONNECT_TIMEOUT,
        registry=registry,
        within=BACKEND_LOGGERS,
    )


def _words(stack: BackendStack, given_queue: TaskQueueProtocol | None) -> ProbeWords:
    """How a failed check names what to fix: the configured URL, or the given queue."""
    if given_queue is not None and stack.queue is given_queue:
        return ProbeWords(timeout="the start-up check's", address="the queue given to TaskProvider")
    return ProbeWords(timeout="the start-up check's", address=f"the URL of {stack.path}")
