from __future__ import annotations

from lexigram.di import HealthCheckResult, HealthStatus


def test_health_status_worst_picks_the_most_severe():
    assert HealthStatus.worst([]) is HealthStatus.HEALTHY
    degraded = HealthStatus.worst([HealthStatus.HEALTHY, HealthStatus.DEGRADED])
    assert degraded is HealthStatus.DEGRADED
    assert (
        HealthStatus.worst([HealthStatus.UNHEALTHY, HealthStatus.DEGRADED, HealthStatus.HEALTHY])
        is HealthStatus.UNHEALTHY
    )


def test_health_combine_reports_the_worst_and_names_failing_parts():
    combined = HealthCheckResult.combine(
        {
            "db": HealthCheckResult(HealthStatus.HEALTHY),
            "queue": HealthCheckResult(HealthStatus.DEGRADED, "slow"),
        },
        component="app",
    )
    assert combined.status is HealthStatus.DEGRADED
    assert combined.message == "queue is degraded (slow)."
    assert combined.component == "app"
    assert set(combined.details) == {"db", "queue"}


def test_health_combine_of_healthy_parts_is_healthy():
    combined = HealthCheckResult.combine({"a": HealthCheckResult(HealthStatus.HEALTHY)})
    assert combined.is_healthy
    assert combined.message == "All 1 checks are healthy."
