"""Health reporting shared by providers and the application."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["HealthCheckResult", "HealthStatus"]


class HealthStatus(StrEnum):
    """How well a component works, from best to worst."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"

    @property
    def severity(self) -> int:
        """Rank for comparisons: 0 for healthy, 1 for degraded, 2 for unhealthy."""
        return _SEVERITY[self]

    @classmethod
    def worst(cls, statuses: Iterable[HealthStatus]) -> HealthStatus:
        """Return the worst of ``statuses``.

        Args:
            statuses: Any number of statuses.

        Returns:
            The most severe status, or ``HEALTHY`` when there are none.
        """
        return max(statuses, key=_SEVERITY.__getitem__, default=cls.HEALTHY)


_SEVERITY = {HealthStatus.HEALTHY: 0, HealthStatus.DEGRADED: 1, HealthStatus.UNHEALTHY: 2}


@dataclass(frozen=True, slots=True)
class HealthCheckResult:
    """The outcome of one health check.

    Attributes:
        status: The overall status.
        message: A sentence for operators; empty when there is nothing to say.
        details: Extra facts (counts, latencies, the results of sub-checks).
        component: The name of the component that was checked.
    """

    status: HealthStatus
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    component: str | None = None

    @property
    def is_healthy(self) -> bool:
        """Whether ``status`` is ``HEALTHY``."""
        return self.status is HealthStatus.HEALTHY

    @classmethod
    def combine(
        cls, results: Mapping[str, HealthCheckResult], *, component: str | None = None
    ) -> HealthCheckResult:
        """Merge the results of several sub-checks into one.

        The status is the worst of the parts; the message names the parts that are not healthy;
        ``details`` maps each part's key to its result.

        Args:
            results: Sub-check results keyed by the part's name.
            component: The name of the whole.

        Returns:
            The combined result (``HEALTHY`` with no parts).
        """
        status = HealthStatus.worst(result.status for result in results.values())
        failing = [
            f"{key} is {result.status.value}" + (f" ({result.message})" if result.message else "")
            for key, result in results.items()
            if not result.is_healthy
        ]
        message = "; ".join(failing) + "." if failing else f"All {len(results)} checks are healthy."
        return cls(status=status, message=message, details=dict(results), component=component)
