"""`job_from_record`: the `Job` a record of `Job.to_dict` (or a compact envelope's) holds.

A worker decodes every job it runs, and the envelope leaves out the fields at their
defaults (see `_codec._envelope_record`): a fresh job's record is its id, name,
creation time, queue and arguments. So the decoder reads those six, sets every other
field's default at once, and converts only the other fields the record holds, each as
the plain conversion would (the same values, and the same errors for bad ones). Looking
every field up instead cost half as much again per job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from lexigram.contracts.tasks._enums import JobStatus
from lexigram.contracts.tasks._ids import new_job_id

if TYPE_CHECKING:
    from lexigram.contracts.tasks._models import Job

_PENDING = JobStatus.PENDING
_STATUSES = {status.value: status for status in JobStatus}


def _priority(job: Job, value: Any) -> None:
    job.priority = value if type(value) is int else int(value or 0)


def _max_retries(job: Job, value: Any) -> None:
    job.max_retries = value if value is None or type(value) is int else int(value)


def _timeout(job: Job, value: Any) -> None:
    job.timeout = value if value is None or type(value) is float else float(value)


def _depends_on(job: Job, value: Any) -> None:
    job.depends_on = list(value) if value else []


def _idempotency_key(job: Job, value: Any) -> None:
    job.idempotency_key = value


def _correlation_id(job: Job, value: Any) -> None:
    job.correlation_id = value


def _causation_id(job: Job, value: Any) -> None:
    job.causation_id = value


def _status(job: Job, value: Any) -> None:
    status = _STATUSES.get(value) if type(value) is str else None
    job.status = status if status is not None else JobStatus(value or _PENDING.value)


def _started_at(job: Job, value: Any) -> None:
    job.started_at = value if value is None or type(value) is float else float(value)


def _completed_at(job: Job, value: Any) -> None:
    job.completed_at = value if value is None or type(value) is float else float(value)


def _retry_count(job: Job, value: Any) -> None:
    job.retry_count = value if type(value) is int else int(value or 0)


def _last_error(job: Job, value: Any) -> None:
    job.last_error = value


def _result(job: Job, value: Any) -> None:
    from lexigram.contracts.tasks._models import JobResult  # noqa: PLC0415 - import cycle

    job.result = JobResult.from_dict(value) if value else None


def _scheduled_at(job: Job, value: Any) -> None:
    job.scheduled_at = value if value is None or type(value) is float else float(value)


def _cron_expression(job: Job, value: Any) -> None:
    job.cron_expression = value


def _delivery_count(job: Job, value: Any) -> None:
    job.delivery_count = value if type(value) is int else int(value or 0)


def _metadata(job: Job, value: Any) -> None:
    job.metadata = dict(value) if value else {}


# Every field but the six the decoder reads itself.
_FIELD_SETTERS: dict[str, Callable[[Job, Any], None]] = {
    "priority": _priority,
    "max_retries": _max_retries,
    "timeout": _timeout,
    "depends_on": _depends_on,
    "idempotency_key": _idempotency_key,
    "correlation_id": _correlation_id,
    "causation_id": _causation_id,
    "status": _status,
    "started_at": _started_at,
    "completed_at": _completed_at,
    "retry_count": _retry_count,
    "last_error": _last_error,
    "result": _result,
    "scheduled_at": _scheduled_at,
    "cron_expression": _cron_expression,
    "delivery_count": _delivery_count,
    "metadata": _metadata,
}


def job_from_record(job: Job, data: Mapping[str, Any]) -> None:
    """Fill `job` (made with ``object.__new__``) from the record `data`.

    Raises:
        KeyError: The record has no ``name``.
        TypeError, ValueError: A field holds a value its type cannot be made from.
    """
    get = data.get
    job_id = get("id")
    job.id = job_id if type(job_id) is str and job_id else str(job_id or "") or new_job_id()
    value = data["name"]
    job.name = value if type(value) is str else str(value)
    created_at = get("created_at")
    job.created_at = (
        created_at if type(created_at) is float and created_at else float(created_at or time.time())
    )
    queue_name = job.queue_name = get("queue_name")
    args = get("args")
    job.args = tuple(args) if args else ()
    kwargs = get("kwargs")
    job.kwargs = dict(kwargs) if kwargs else {}
    job.priority = 0
    job.max_retries = None
    job.timeout = None
    job.depends_on = []
    job.idempotency_key = None
    job.correlation_id = None
    job.causation_id = None
    job.status = _PENDING
    job.started_at = None
    job.completed_at = None
    job.retry_count = 0
    job.last_error = None
    job.result = None
    job.scheduled_at = None
    job.cron_expression = None
    job.delivery_count = 0
    job.metadata = {}
    job.lease_token = None
    # Any key beyond those six is converted. (One held as null counts as beyond them:
    # the loop then runs for nothing, which only costs time.)
    read = 1 + (job_id is not None) + (created_at is not None) + (queue_name is not None)
    read += (args is not None) + (kwargs is not None)
    if len(data) > read:
        setters = _FIELD_SETTERS
        for key, value in data.items():
            setter = setters.get(key)
            if setter is not None:
                setter(job, value)
