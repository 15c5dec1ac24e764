"""`JobProtocol` and `JobTemplateProtocol`: the job protocols, callable as in the published API.

Each is the structural protocol of the contracts (``isinstance(obj, JobProtocol)`` holds
for any job-like object), and calling it builds its standard implementation, as the
published examples do: ``JobTemplateProtocol(name="cleanup", args=())`` returns a
`JobTemplate`, ``JobProtocol(name="x")`` a `Job`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from lexigram.contracts.tasks import Job, JobResult, JobStatus, JobTemplate
from lexigram.contracts.tasks import JobProtocol as _JobShape
from lexigram.contracts.tasks import JobTemplateProtocol as _JobTemplateShape

_ProtocolMeta: type = type(Protocol)


class BuildsDefault(_ProtocolMeta):  # type: ignore[misc]
    """Metaclass of a protocol that, when called, builds its standard implementation.

    A plain protocol cannot be instantiated; one of these passes the call on to the
    class registered for it in `BuildsDefault.defaults`.
    """

    defaults: dict[type, type] = {}  # noqa: RUF012 - one registry, shared on purpose

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Build the standard implementation of this protocol (`self` is the protocol)."""
        return BuildsDefault.defaults[self](*args, **kwargs)


@runtime_checkable
class JobProtocol(_JobShape, Protocol, metaclass=BuildsDefault):
    """A job: what any job-like object exposes; calling it builds a `Job`."""


@runtime_checkable
class JobTemplateProtocol(_JobTemplateShape, Protocol, metaclass=BuildsDefault):
    """A job template; calling it builds a `JobTemplate`."""


BuildsDefault.defaults[JobProtocol] = Job
BuildsDefault.defaults[JobTemplateProtocol] = JobTemplate

__all__ = [
    "BuildsDefault",
    "Job",
    "JobProtocol",
    "JobResult",
    "JobStatus",
    "JobTemplate",
    "JobTemplateProtocol",
]
