from __future__ import annotations

import threading

import pytest

from lexigram.tasks.hooks import HookRegistry, TaskCompletedHook, TaskEnqueuedHook, TaskFailedHook
from lexigram.tasks.observability import (
    ExecutionRecord,
    TaskDashboard,
    TaskHealth,
    TaskMetricsCollector,
)
from lexigram.tasks.observability._dashboard import percentile


class FakeClock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


def test_execution_record_to_dict_has_the_seven_fields():
    record = ExecutionRecord(job_id="j", task_name="t", success=False, duration_ms=1.5, error="e")
    data = record.to_dict()
    assert set(data) == {
        "job_id",
        "task_name",
        "success",
        "duration_ms",
        "error",
        "timestamp",
        "worker_id",
    }
    assert data["error"] == "e"
    assert data["worker_id"] is None


def test_summary_counts_error_rate_throughput_and_window():
    clock = FakeClock()
    dashboard = TaskDashboard(window_seconds=10, clock=clock)
    for i in range(8):
        dashboard.record_execution("email", job_id=f"e{i}", duration_ms=10.0)
    dashboard.record_execution("report", job_id="r1", success=False, error="boom")
    dashboard.record_execution("report", job_id="r2", success=False, error="bang")
    clock.now += 20.0  # 20 s uptime, all 10 executions fell out of the 10 s window
    summary = dashboard.get_summary()
    assert summary["total_executed"] == 10
    assert summary["total_failed"] == 2
    assert summary["error_rate_pct"] == pytest.approx(20.0)
    assert summary["throughput_per_sec"] == pytest.approx(0.5)
    assert summary["window_throughput_per_sec"] == 0.0
    assert summary["uptime_seconds"] == pytest.approx(20.0)
    assert summary["task_types"] == 2
    for _ in range(5):
        dashboard.record_execution("email")
    assert dashboard.get_summary()["window_throughput_per_sec"] == pytest.approx(0.5)


def test_per_task_stats_have_latency_percentiles():
    dashboard = TaskDashboard()
    for ms in range(1, 101):  # 1..100 ms
        dashboard.record_execution("resize", duration_ms=float(ms), success=ms % 10 != 0)
    stats = dashboard.get_per_task_stats()["resize"]
    assert stats["count"] == 100
    assert stats["failures"] == 10
    assert stats["error_rate_pct"] == pytest.approx(10.0)
    latency = stats["latency"]
    assert latency["min_ms"] == 1.0
    assert latency["max_ms"] == 100.0
    assert latency["avg_ms"] == pytest.approx(50.5)
    assert latency["p50_ms"] == pytest.approx(50.5)
    assert latency["p95_ms"] == pytest.approx(95.05)
    assert latency["p99_ms"] == pytest.approx(99.01)


def test_percentile_edges():
    assert percentile([], 50) == 0.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([1.0, 2.0], 0) == 1.0
    assert percentile([1.0, 2.0], 100) == 2.0


def test_history_is_bounded_and_recent_executions_are_newest_first():
    dashboard = TaskDashboard(history_size=5)
    for i in range(12):
        dashboard.record_execution("a" if i % 2 else "b", job_id=str(i), duration_ms=float(i))
    recent = dashboard.get_recent_executions()
    assert [r["job_id"] for r in recent] == ["11", "10", "9", "8", "7"]
    assert [r["job_id"] for r in dashboard.get_recent_executions(limit=2)] == ["11", "10"]
    assert [r["job_id"] for r in dashboard.get_recent_executions(task_name="a")] == [
        "11",
        "9",
        "7",
    ]
    # latency samples are bounded too, counters are not
    per_task = dashboard.get_per_task_stats()["a"]
    assert per_task["count"] == 6
    assert per_task["latency"]["min_ms"] == 3.0


def test_error_breakdown_groups_recent_errors_by_task():
    dashboard = TaskDashboard()
    dashboard.record_execution("ok-task")
    dashboard.record_execution("pay", job_id="p1", success=False, error="card declined")
    dashboard.record_execution("pay", job_id="p2", success=False, error="timeout")
    breakdown = dashboard.get_error_breakdown()
    assert list(breakdown) == ["pay"]
    assert [(e["job_id"], e["error"]) for e in breakdown["pay"]] == [
        ("p2", "timeout"),
        ("p1", "card declined"),
    ]
    assert set(breakdown["pay"][0]) == {"job_id", "error", "timestamp"}


def test_reset_clears_everything():
    dashboard = TaskDashboard()
    dashboard.record_execution("x", success=False, error="e")
    dashboard.reset()
    assert dashboard.get_summary()["total_executed"] == 0
    assert dashboard.get_per_task_stats() == {}
    assert dashboard.get_recent_executions() == []
    assert dashboard.get_error_breakdown() == {}


def test_record_execution_is_thread_safe():
    dashboard = TaskDashboard(history_size=10)

    def record() -> None:
        for _ in range(500):
            dashboard.record_execution("t", duration_ms=1.0)

    threads = [threading.Thread(target=record) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert dashboard.get_summary()["total_executed"] == 2000


def test_dashboard_rejects_bad_settings():
    with pytest.raises(ValueError, match="history_size=0"):
        TaskDashboard(history_size=0)
    with pytest.raises(ValueError, match="window_seconds=0"):
        TaskDashboard(window_seconds=0)


def test_task_health_properties_and_to_dict():
    health = TaskHealth(
        status="healthy",
        message="ok",
        queue_size=3,
        worker_count=2,
        active_workers=2,
        total_jobs_processed=8,
        total_jobs_succeeded=6,
        total_jobs_failed=2,
        scheduler_enabled=True,
        details={"backend": "memory"},
    )
    assert health.is_healthy
    assert health.success_rate == pytest.approx(75.0)
    data = health.to_dict()
    assert data["status"] == "healthy"
    assert data["scheduler_enabled"] is True
    assert data["details"] == {"backend": "memory"}
    assert data["metrics"]["queue_size"] == 3
    assert data["metrics"]["total_jobs_failed"] == 2
    assert data["metrics"]["success_rate"] == pytest.approx(75.0)
    assert not TaskHealth(status="degraded", message="slow").is_healthy
    assert TaskHealth(status="healthy", message="idle").success_rate == 100.0


async def test_metrics_collector_counts_hook_actions_per_task_and_status():
    hooks = HookRegistry()
    metrics = TaskMetricsCollector()
    metrics.attach(hooks)
    await hooks.emit("task.queued", TaskEnqueuedHook(task_name="email", queue_name="q"))
    await hooks.emit("task.queued", TaskEnqueuedHook(task_name="email", queue_name="q"))
    await hooks.emit("task.completed", TaskCompletedHook(task_name="email", task_id="1"))
    await hooks.emit("task.failed", TaskFailedHook(task_name="pdf", task_id="2", reason="x"))
    metrics.record("pdf", "retried", 3)
    snap = metrics.snapshot()
    assert snap["tasks"] == {
        "email": {"queued": 2, "completed": 1},
        "pdf": {"failed": 1, "retried": 3},
    }
    assert snap["totals"] == {"queued": 2, "completed": 1, "failed": 1, "retried": 3}
    assert metrics.get("email", "queued") == 2
    assert metrics.get("nope", "queued") == 0
    metrics.detach()
    assert hooks.observer_count == 0
    await hooks.emit("task.queued", TaskEnqueuedHook(task_name="email", queue_name="q"))
    assert metrics.get("email", "queued") == 2
    metrics.reset()
    assert metrics.snapshot()["tasks"] == {}
