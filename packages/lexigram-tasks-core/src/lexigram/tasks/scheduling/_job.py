"""`ScheduledJob`: one cron schedule of a job template, with its next fire time and state."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from lexigram.contracts.tasks import JobTemplate
from lexigram.tasks.scheduling._cron import CronExpression

STATE_FIELDS = frozenset(
    {"enabled", "next_run", "last_run", "last_outcome", "last_error", "last_job_id"}
)
"""Record fields that change while a schedule runs (written with `update_fields`)."""


class ScheduleOutcome(StrEnum):
    """What happened to the last occurrence of a schedule (`ScheduledJob.last_outcome`).

    Attributes:
        ENQUEUED: The job was handed to the queue (or a scheduler process already had).
        FAILED: Enqueueing failed (`ScheduledJob.last_error` says why).
        SKIPPED: The misfire policy dropped the occurrence (it was too late).
    """

    ENQUEUED = "enqueued"
    FAILED = "failed"
    SKIPPED = "skipped"


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def storage_key(namespace: str | None, schedule_id: str) -> str:
    """Return the key a schedule is stored under: ``"<namespace>/<id>"``.

    Two applications may both declare a schedule ``cli:cleanup``; the namespace in the
    key keeps their records apart in one store. A record without a namespace (written
    before schedules had owners) is keyed by its bare id.

    Args:
        namespace: The owning application's namespace, or None for an unowned record.
        schedule_id: The schedule's id.

    Returns:
        The store key.
    """
    return schedule_id if namespace is None else f"{namespace}/{schedule_id}"


@dataclass
class ScheduledJob:
    """Represents a scheduled job with cron expression.

    Attributes:
        job_template: Template for creating job instances.
        cron_expression: Cron expression string.
        next_run: Unix timestamp of next execution.
        enabled: Whether job is enabled for execution.
        timezone: IANA timezone the cron expression is evaluated in.
        job_id: The schedule's id (set by `TaskScheduler`).
        last_run: Fire time of the last occurrence handled (enqueued, failed or
            skipped), if any.
        namespace: The application that owns the schedule (only its schedulers restore
            and fire it); None for a record written before schedules had owners.
        queue_name: The queue the schedule's jobs go to (None: the scheduler's queue).
        last_outcome: What happened to the occurrence at `last_run` (a `ScheduleOutcome`
            value).
        last_error: Why the last enqueue failed, when it did.
        last_job_id: Id of the job the last occurrence enqueued.
    """

    job_template: JobTemplate
    cron_expression: str
    next_run: float
    enabled: bool = True
    timezone: str = "UTC"
    job_id: str = ""
    last_run: float | None = None
    namespace: str | None = None
    queue_name: str | None = None
    last_outcome: str | None = None
    last_error: str | None = None
    last_job_id: str | None = None
    _cron: CronExpression | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def cron(self) -> CronExpression:
        """The parsed cron expression (rebuilt if the expression or timezone changed)."""
        cron = self._cron
        if (
            cron is None
            or cron.expression != " ".join(self.cron_expression.split())
            or cron.timezone != self.timezone
        ):
            cron = CronExpression(self.cron_expression, timezone=self.timezone)
            self._cron = cron
        return cron

    @property
    def key(self) -> str:
        """The key this schedule is stored under (see `storage_key`)."""
        return storage_key(self.namespace, self.job_id)

    def state(self) -> dict[str, Any]:
        """Return the fields that change while the schedule runs (see `STATE_FIELDS`)."""
        record = self.to_dict()
        return {name: record[name] for name in STATE_FIELDS}

    def apply_state(self, fields: Mapping[str, Any]) -> None:
        """Set the state fields present in `fields` (others are ignored).

        Args:
            fields: Some of `STATE_FIELDS` with their new values.
        """
        if "enabled" in fields:
            self.enabled = bool(fields["enabled"])
        if fields.get("next_run") is not None:
            self.next_run = float(fields["next_run"])
        if "last_run" in fields:
            self.last_run = _opt_float(fields["last_run"])
        for name in ("last_outcome", "last_error", "last_job_id"):
            if name in fields:
                setattr(self, name, _opt_str(fields[name]))

    def calculate_next_run(self, base_time: float | None = None) -> float:
        """Calculate the next run time based on cron expression.

        Args:
            base_time: Time to count from (defaults to now); the result is strictly later.

        Returns:
            Unix timestamp of next execution.
        """
        return self.cron.get_next(time.time() if base_time is None else base_time)

    def to_dict(self) -> dict[str, Any]:
        """Convert the schedule to a JSON-serializable record (what dict-based stores keep)."""
        return {
            "job_id": self.job_id,
            "job_template": self.job_template.to_dict(),
            "cron_expression": self.cron_expression,
            "next_run": self.next_run,
            "enabled": self.enabled,
            "timezone": self.timezone,
            "last_run": self.last_run,
            "namespace": self.namespace,
            "queue_name": self.queue_name,
            "last_outcome": self.last_outcome,
            "last_error": self.last_error,
            "last_job_id": self.last_job_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScheduledJob:
        """Create a schedule from a record produced by `to_dict`.

        Args:
            data: The record.

        Returns:
            The schedule.
        """
        return cls(
            job_template=JobTemplate.from_dict(data["job_template"]),
            cron_expression=str(data["cron_expression"]),
            next_run=float(data["next_run"]),
            enabled=bool(data.get("enabled", True)),
            timezone=str(data.get("timezone") or "UTC"),
            job_id=str(data.get("job_id") or ""),
            last_run=_opt_float(data.get("last_run")),
            namespace=_opt_str(data.get("namespace")),
            queue_name=_opt_str(data.get("queue_name")),
            last_outcome=_opt_str(data.get("last_outcome")),
            last_error=_opt_str(data.get("last_error")),
            last_job_id=_opt_str(data.get("last_job_id")),
        )
