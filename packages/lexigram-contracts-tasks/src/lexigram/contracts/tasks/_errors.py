"""The lexigram-tasks error tree.

Every error a backend or the core raises derives from `TaskQueueError`, so callers
never import a client library (redis, asyncpg, aio-pika) to catch failures::

    TaskQueueError                      LEX_ERR_TASK_001
    ├── QueueFullError                  LEX_ERR_TASK_002
    ├── TaskError                       LEX_ERR_TASK_003
    │   ├── TaskNotFoundError           LEX_ERR_TASK_004
    │   ├── TaskTimeoutError            LEX_ERR_TASK_005
    │   ├── TaskCancelledError          LEX_ERR_TASK_006
    │   ├── TaskExecutionError          LEX_ERR_TASK_007
    │   ├── TaskValidationError         LEX_ERR_TASK_008
    │   │   └── TaskDecodeError         LEX_ERR_TASK_012
    │   ├── DuplicateTaskError          LEX_ERR_TASK_009
    │   └── TaskDependencyCycleError    LEX_ERR_TASK_010
    ├── TaskRegistrationError           LEX_ERR_TASK_011
    ├── TaskConfigurationError          LEX_ERR_TASK_013
    └── BackendError                    LEX_ERR_TASK_020
        ├── BackendNotFoundError        LEX_ERR_TASK_021
        ├── BackendConflictError        LEX_ERR_TASK_022
        ├── BackendImportError          LEX_ERR_TASK_023
        └── BackendConnectionError      LEX_ERR_TASK_024
    WorkflowError (Exception)           LEX_ERR_TASK_030

Messages follow one shape: what happened, with the offending value, then what to do.
"""

from __future__ import annotations

from typing import Any, Self

_DOCS_BASE = "https://lexigram-tasks.readthedocs.io/en/latest/errors/"


class TaskQueueError(Exception):
    """Raised when a task-queue operation fails; the base of every lexigram-tasks error.

    Args:
        message: What happened and what to do about it.
        details: Structured context (values, ids) for logs and APIs.
        hint: A short suggestion for fixing the problem.
    """

    code: str = "LEX_ERR_TASK_001"
    default_message: str = "Task queue operation failed."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        hint: str | None = None,
        **extra: Any,
    ) -> None:
        self.message = message if message is not None else self.default_message
        self.details: dict[str, Any] = {**(details or {}), **extra}
        self.hint = hint
        super().__init__(self.message)

    @property
    def docs_url(self) -> str:
        """Return the documentation page for this error code."""
        return f"{_DOCS_BASE}{self.code.lower()}"

    def to_dict(self) -> dict[str, Any]:
        """Serialize the error to a JSON-friendly dictionary."""
        return {
            "code": self.code,
            "type": type(self).__name__,
            "message": self.message,
            "details": dict(self.details),
            "hint": self.hint,
        }

    def with_details(self, **details: Any) -> Self:
        """Add structured details and return self (for chaining)."""
        self.details.update(details)
        return self

    def with_hint(self, hint: str) -> Self:
        """Set the hint and return self (for chaining)."""
        self.hint = hint
        return self

    def with_cause(self, cause: BaseException) -> Self:
        """Record `cause` as the explicit cause and return self."""
        self.__cause__ = cause
        return self

    def format(self) -> str:
        """Return a one-paragraph human-readable rendering with code and hint."""
        text = f"[{self.code}] {self.message}"
        if self.hint:
            text += f" Hint: {self.hint}"
        return text


class QueueFullError(TaskQueueError):
    """Raised when a queue has reached its capacity and cannot accept a new job."""

    code = "LEX_ERR_TASK_002"
    default_message = "Task queue is full."

    def __init__(
        self,
        message: str | None = None,
        *,
        queue_name: str | None = None,
        capacity: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.queue_name = queue_name
        self.capacity = capacity


class TaskError(TaskQueueError):
    """Raised when a task-level operation fails (the base of job errors)."""

    code = "LEX_ERR_TASK_003"
    default_message = "Task operation failed."


class TaskNotFoundError(TaskError):
    """Raised when no handler is registered for a task name, or a job id is unknown."""

    code = "LEX_ERR_TASK_004"
    default_message = "Task not found."


class TaskTimeoutError(TaskError):
    """Raised when a task's execution exceeds its timeout."""

    code = "LEX_ERR_TASK_005"
    default_message = "Task timed out."


class TaskCancelledError(TaskError):
    """Raised when a task is cancelled before or while it runs."""

    code = "LEX_ERR_TASK_006"
    default_message = "Task was cancelled."


class TaskExecutionError(TaskError):
    """Raised when a task handler fails; `original_error` holds the handler's exception."""

    code = "LEX_ERR_TASK_007"
    default_message = "Task execution failed."

    def __init__(
        self,
        message: str | None = None,
        original_error: BaseException | None = None,
        details: dict[str, Any] | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, details=details, hint=hint)
        self.original_error = original_error
        if original_error is not None:
            self.__cause__ = original_error


class TaskValidationError(TaskError):
    """Raised when a job's parameters are invalid (e.g. arguments that cannot be serialized)."""

    code = "LEX_ERR_TASK_008"
    default_message = "Task parameters are invalid."


class TaskDecodeError(TaskValidationError):
    """Raised when a stored or received job cannot be decoded (a poison message)."""

    code = "LEX_ERR_TASK_012"
    default_message = "Job payload could not be decoded."


class DuplicateTaskError(TaskError):
    """Raised when a job with the same id or unique key already exists."""

    code = "LEX_ERR_TASK_009"
    default_message = "Task already exists."


class TaskDependencyCycleError(TaskError):
    """Raised when job dependencies (`depends_on`) form a cycle."""

    code = "LEX_ERR_TASK_010"

    def __init__(
        self,
        cycle: list[str],
        details: dict[str, Any] | None = None,
        hint: str | None = None,
    ) -> None:
        self.cycle = list(cycle)
        path = " -> ".join(self.cycle)
        msg = f"Job dependencies form a cycle: {path}. Remove one of these depends_on links."
        super().__init__(msg, details={"cycle": self.cycle, **(details or {})}, hint=hint)


class TaskRegistrationError(TaskQueueError):
    """Raised when a task or scheduled task cannot be registered."""

    code = "LEX_ERR_TASK_011"
    default_message = "Task registration failed."


class TaskConfigurationError(TaskQueueError, ValueError):
    """Raised when task configuration is invalid (bad value, unknown key, bad cron)."""

    code = "LEX_ERR_TASK_013"
    default_message = "Task configuration is invalid."


class BackendError(TaskQueueError):
    """Raised when a task backend cannot be found, loaded or reached."""

    code = "LEX_ERR_TASK_020"
    default_message = "Task backend error."


class BackendNotFoundError(BackendError, LookupError):
    """Raised when no installed distribution provides the requested backend type."""

    code = "LEX_ERR_TASK_021"


class BackendConflictError(BackendError):
    """Raised when two installed distributions register the same backend type."""

    code = "LEX_ERR_TASK_022"


class BackendImportError(BackendError, ImportError):
    """Raised when a backend's entry point fails to import (usually a missing dependency)."""

    code = "LEX_ERR_TASK_023"


class BackendConnectionError(BackendError, ConnectionError):
    """Raised when a backend cannot reach its server; the client's exception is chained."""

    code = "LEX_ERR_TASK_024"
    default_message = "Could not reach the task backend."


class WorkflowError(Exception):
    """Raised, or returned in `Err`, when a workflow (chain, group, chord, branch) fails.

    Args:
        message: What failed and why.
        step_name: The step that failed, when one did.
        result: The partial `WorkflowResult`, when there is one.
    """

    code: str = "LEX_ERR_TASK_030"

    def __init__(
        self,
        message: str = "Workflow failed.",
        *,
        step_name: str | None = None,
        result: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.step_name = step_name
        self.result = result


# -- reading the errors of client libraries (for backend authors) ------------------------

CLIENT_CERTIFICATE_REFUSED = frozenset(
    {
        "TLSV1_ALERT_UNKNOWN_CA",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
    }
)
"""TLS alerts (OpenSSL's ``SSLError.reason``) a server sends about a client certificate it
refuses. Under TLS 1.3 they arrive after the client finished its side of the handshake, so
a client sees either the alert or only the connection reset that follows it: a backend
reads both as the same refusal."""


def error_chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the errors it was raised from, outermost first.

    Follows ``__cause__``, else ``__context__``; each error once, so a cycle ends the chain.
    """
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain
