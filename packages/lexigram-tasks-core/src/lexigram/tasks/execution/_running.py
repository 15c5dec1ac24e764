"""What the run path shares about one in-flight job: `Running`, and why a job ends early.

`Running` is the worker's book-keeping of a job from its lease to its settling; the
worker, the `JobRunner` and the `Settler` all read and change it. `TIMEOUT`,
`LEASE_LOST`, `STOP` and `CANCEL` say why the worker itself cancelled a job's task; the
``REASON_*`` values why a job failed for good or was retried (`JobEvent.reason`, the
dead-letter record). `Unrunnable` carries such a reason for a job that cannot run, and
`describe` is how an error reads in a result, an event or a log line.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from lexigram.contracts.tasks import Job, TaskQueueError
from lexigram.tasks.execution._options import Reject, Retry, TaskOptions
from lexigram.tasks.progress import ProgressTracker

# Why the worker itself cancelled a job's task (None: it did not).
TIMEOUT = "timeout"
LEASE_LOST = "lease_lost"
STOP = "stop"
CANCEL = "cancel"

REASON_MAX_RETRIES = "max_retries"
REASON_NOT_RETRIED = "not_retried"
REASON_REJECTED = "rejected"
REASON_BAD_ARGUMENTS = "bad_arguments"
REASON_UNKNOWN_TASK = "unknown_task"
REASON_POISON = "poison"
REASON_CRASH_LOOP = "crash_loop"
REASON_RETRY_REQUESTED = "retry_requested"
# Reasons for which the handler never ran on this delivery (no attempt is counted).
NOT_ATTEMPTED = frozenset({REASON_UNKNOWN_TASK, REASON_POISON, REASON_CRASH_LOOP})


class Running:
    """Book-keeping of one in-flight job (slots: this is created per job)."""

    __slots__ = (
        "deadline",
        "deferred",
        "job",
        "options",
        "pristine",
        "reason",
        "renewed",
        "settling",
        "shield",
        "slot_released",
        "started_at",
        "task",
        "timeout",
        "tracker",
    )

    def __init__(self, job: Job, now: float, deadline: float = math.inf) -> None:
        self.job = job
        self.deadline = deadline
        self.renewed = now
        self.reason: str | None = None
        self.started_at = 0.0  # epoch seconds once its run began (0.0: not yet)
        self.settling = False
        self.task: asyncio.Task[None] | None = None
        self.tracker: ProgressTracker | None = None
        self.options: TaskOptions | None = None
        self.timeout: float | None = None
        # Depth of `shield_cancellation` blocks, and whether an interrupt waits for them.
        self.shield = 0
        self.deferred = False
        # The handler succeeded and the slot went to the next job (see Settler.released).
        self.slot_released = False
        # The job's arguments as delivered, when they hold lists or dicts a handler may
        # change in place: a retry or a dead letter carries these (see `pristine_copy`).
        self.pristine: tuple[tuple[Any, ...], dict[str, Any]] | None = None

    def interrupted(self) -> bool:
        """Whether the worker is stopping this attempt (`reason` is set: stop, cancel, ...)."""
        return self.reason is not None


_SCALARS = frozenset((str, int, float, bool, type(None)))


def pristine_copy(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """A copy of a job's arguments when a handler could change them in place, else None.

    A handler gets the job's own argument objects; one that appends to a list it was
    given would otherwise have its retry, and its dead letter, carry the changed list
    instead of what was enqueued. Arguments of scalars only (the usual case) need no
    copy, and the check is a type lookup per argument.
    """
    scalars = _SCALARS
    for value in args:  # a plain loop: a generator costs more than the check itself
        if type(value) not in scalars:
            break
    else:
        if not kwargs:
            return None
        for value in kwargs.values():
            if type(value) not in scalars:
                break
        else:
            return None
    return tuple(_copy(value) for value in args), {k: _copy(v) for k, v in kwargs.items()}


def _copy(value: Any) -> Any:
    """A copy of the lists, tuples and dicts in `value` (what a decoded job holds)."""
    kind = type(value)
    if kind is list:
        return [_copy(item) for item in value]
    if kind is dict:
        return {key: _copy(item) for key, item in value.items()}
    if kind is tuple:
        return tuple(_copy(item) for item in value)
    return value


class Unrunnable(Exception):  # noqa: N818 - internal signal, never escapes the worker
    """A job that cannot run (again): it goes straight to the DLQ without retries."""

    def __init__(self, reason: str, error: BaseException | str) -> None:
        described = error if isinstance(error, str) else describe(error)
        super().__init__(described)
        self.reason = reason
        self.error = described


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception a handler raised, for its result and the logs.

    Never raises: a handler's exception whose ``__str__`` fails is described by its type,
    so the job is still settled (retried, dead-lettered) instead of left to its lease.
    """
    try:
        if isinstance(exc, TaskQueueError):
            return f"{type(exc).__name__}: {exc.message}"
        if isinstance(exc, Reject | Retry):
            return f"{type(exc).__name__}: {exc.reason}"
        return f"{type(exc).__name__}: {exc}"
    except Exception as failed:  # any failure of a third-party __str__
        return f"{type(exc).__name__}: <its message could not be read: {type(failed).__name__}>"
