"""`JobResult`: what a job's run produced, and the record a result store keeps of it."""

from __future__ import annotations

import json
import json.encoder
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lexigram.contracts.tasks._enums import JobStatus
from lexigram.contracts.tasks._job_record import opt_float as _opt_float
from lexigram.contracts.tasks._json import json_number, sendable_json, storage_json

_json_string: Callable[[str], str] = json.encoder.encode_basestring  # C when available


@dataclass(slots=True)
class JobResult:
    """Result of a job execution: success, returned data or error, and timing."""

    success: bool
    data: Any = None
    error: str | None = None
    duration: float = 0.0
    retry_count: int = 0
    id: str | None = None
    name: str | None = None
    completed_at: float | None = None
    failed_at: float | None = None
    cancelled: bool = False

    @property
    def status(self) -> JobStatus:
        """COMPLETED, FAILED or CANCELLED (a cancelled job's result is not a success)."""
        if self.success:
            return JobStatus.COMPLETED
        return JobStatus.CANCELLED if self.cancelled else JobStatus.FAILED

    @classmethod
    def ok(cls, data: Any = None, duration: float = 0.0) -> JobResult:
        """Create a successful result.

        Args:
            data: Return value from the job.
            duration: Execution duration in seconds.

        Returns:
            JobResult with success=True.
        """
        return cls(success=True, data=data, duration=duration, completed_at=time.time())

    @classmethod
    def fail(cls, error: str, retry_count: int = 0, duration: float = 0.0) -> JobResult:
        """Create a failure result.

        Args:
            error: Error message describing the failure.
            retry_count: Number of retry attempts made.
            duration: Execution duration in seconds.

        Returns:
            JobResult with success=False.
        """
        return cls(
            success=False,
            error=error,
            retry_count=retry_count,
            duration=duration,
            failed_at=time.time(),
        )

    def to_dict(self) -> dict[str, Any]:
        """Convert the result to a dictionary for serialization."""
        return {
            "success": self.success,
            "data": self.data,
            "error": self.error,
            "duration": self.duration,
            "retry_count": self.retry_count,
            "id": self.id,
            "name": self.name,
            "completed_at": self.completed_at,
            "failed_at": self.failed_at,
            "cancelled": self.cancelled,
        }

    def to_json(self, *, of: str = "") -> str:
        """The result as a store keeps it: `to_dict`'s record in compact JSON, fast.

        Stores write one of these per job, so it is written directly rather than through
        a general encoder: ``data`` goes through `storage_json` (a part JSON cannot
        carry is stored as its ``repr``, with a warning naming the job `of`), the
        strings are escaped by the json module's C function, and the numbers are written
        exactly (`json_number`). It reads back as what ``json_for_storage(self.to_dict())``
        writes, at a fraction of its cost, and `from_dict` makes a result equal to this one.
        """
        data = self.data
        error = self.error
        stored = "null" if data is None else storage_json(data, what="result of job", of=of)
        return sendable_json(
            f'{{"success":{"true" if self.success else "false"},"data":{stored},'
            f'"error":{"null" if error is None else _json_string(error)},'
            f'"duration":{json_number(self.duration)},"retry_count":{int(self.retry_count)},'
            f'"id":{"null" if self.id is None else _json_string(self.id)},'
            f'"name":{"null" if self.name is None else _json_string(self.name)},'
            f'"completed_at":{json_number(self.completed_at)},'
            f'"failed_at":{json_number(self.failed_at)},'
            f'"cancelled":{"true" if self.cancelled else "false"}}}'
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobResult:
        """Create a result from a dictionary produced by `to_dict`."""
        return cls(
            success=bool(data["success"]),
            data=data.get("data"),
            error=data.get("error"),
            duration=float(data.get("duration") or 0.0),
            retry_count=int(data.get("retry_count") or 0),
            id=data.get("id"),
            name=data.get("name"),
            completed_at=_opt_float(data.get("completed_at")),
            failed_at=_opt_float(data.get("failed_at")),
            cancelled=bool(data.get("cancelled", False)),
        )


__all__ = ["JobResult"]
