"""`ScheduledJob`: one cron schedule of a job template, with its next fire time."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lexigram.contracts.tasks import JobTemplate
from lexigram.tasks.scheduling._cron import CronExpression


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


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
        last_run: Fire time of the last occurrence this scheduler enqueued, if any.
    """

    job_template: JobTemplate
    cron_expression: str
    next_run: float
    enabled: bool = True
    timezone: str = "UTC"
    job_id: str = ""
    last_run: float | None = None
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
        )
