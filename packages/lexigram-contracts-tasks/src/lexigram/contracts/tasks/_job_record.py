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


def opt_float(value: Any) -> float | None:
    """`value` as a float, None kept (the conversion of every optional time and length)."""
    if type(value) is float or value is None:
        return value
    return float(value)


def opt_int(value: Any) -> int | None:
    """`value` as an int, None kept."""
    if type(value) is int or value is None:
        return value
    return int(value)


def _int_or_zero(value: Any) -> int:
    return value if type(value) is int else int(value or 0)


def _as_is(value: Any) -> Any:
    return value


def _status(value: Any) -> JobStatus:
    status = _STATUSES.get(value) if type(value) is str else None
    return status if status is not None else JobStatus(value or _PENDING.value)


def _result(value: Any) -> Any:
    from lexigram.contracts.tasks._job_result import JobResult  # noqa: PLC0415 - import cycle

    return JobResult.from_dict(value) if value else None


# How each field but the six the decoder reads itself is made from its record value.
_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "priority": _int_or_zero,
    "max_retries": opt_int,
    "timeout": opt_float,
    "depends_on": lambda value: list(value) if value else [],
    "idempotency_key": _as_is,
    "correlation_id": _as_is,
    "causation_id": _as_is,
    "status": _status,
    "started_at": opt_float,
    "completed_at": opt_float,
    "retry_count": _int_or_zero,
    "last_error": _as_is,
    "result": _result,
    "scheduled_at": opt_float,
    "cron_expression": _as_is,
    "delivery_count": _int_or_zero,
    "metadata": lambda value: dict(value) if value else {},
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
        converters = _CONVERTERS
        for key, value in data.items():
            convert = converters.get(key)
            if convert is not None:
                setattr(job, key, convert(value))
