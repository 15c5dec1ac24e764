"""The figures a `PrometheusObserver` keeps, and the metric families a scrape makes of them.

Split from the observer so that the supervisor's collector (``_prometheus_processes``),
which serves the figures its worker processes write, uses the same series and families
without the observer's event handling. Needs ``prometheus-client``, like the observer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from lexigram.tasks.events import COMPLETED, OUTCOME_LABELS

NAMESPACE = "lexigram_tasks"
"""Prefix of every metric name."""

OUTCOMES: dict[str, str] = OUTCOME_LABELS
"""`JobEvent.kind` -> the ``outcome`` label of ``lexigram_tasks_jobs_total``."""

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
"""Buckets (seconds) of the run-time and queue-wait histograms."""


class Series:
    """The figures of one (task, queue); the scrape turns them into metric families.

    Histogram counts are per bucket (the last one is +Inf), made cumulative on scrape.
    Completed jobs handed over as figures are counted in ``completed`` (a slot is cheaper
    to add to than a dictionary entry on every job), the other outcomes in ``outcomes``.
    """

    __slots__ = (
        "completed",
        "duration_counts",
        "duration_sum",
        "in_progress",
        "outcomes",
        "wait_counts",
        "wait_sum",
    )

    def __init__(self, buckets: int) -> None:
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.completed = 0
        self.in_progress = 0
        self.duration_counts = [0] * (buckets + 1)
        self.duration_sum = 0.0
        self.wait_counts = [0] * (buckets + 1)
        self.wait_sum = 0.0

    def add(self, other: Series, *, in_progress: bool = True) -> None:
        """Add `other`'s figures to these (its in-progress gauge too, unless told not to)."""
        for kind, count in other.outcomes.items():
            self.outcomes[kind] = self.outcomes.get(kind, 0) + count
        self.completed += other.completed
        if in_progress:
            self.in_progress += other.in_progress
        self.duration_sum += other.duration_sum
        self.wait_sum += other.wait_sum
        for index, count in enumerate(other.duration_counts):
            self.duration_counts[index] += count
        for index, count in enumerate(other.wait_counts):
            self.wait_counts[index] += count

    def outcome_counts(self) -> dict[str, int]:
        """Attempts by outcome (`JobEvent.kind`), completed jobs counted either way."""
        counts = dict(self.outcomes)
        counts[COMPLETED] = counts.get(COMPLETED, 0) + self.completed
        return counts

    def to_json(self) -> dict[str, Any]:
        """The figures as JSON values (what a worker process hands its supervisor)."""
        return {
            "outcomes": self.outcome_counts(),
            "in_progress": self.in_progress,
            "duration_counts": list(self.duration_counts),
            "duration_sum": self.duration_sum,
            "wait_counts": list(self.wait_counts),
            "wait_sum": self.wait_sum,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], buckets: int) -> Series:
        """Rebuild figures written by `to_json` (with the same number of buckets)."""
        series = cls(buckets)
        series.outcomes.update({str(k): int(v) for k, v in data["outcomes"].items()})
        series.in_progress = int(data["in_progress"])
        series.duration_counts = [int(c) for c in data["duration_counts"]]
        series.duration_sum = float(data["duration_sum"])
        series.wait_counts = [int(c) for c in data["wait_counts"]]
        series.wait_sum = float(data["wait_sum"])
        if len(series.duration_counts) != buckets + 1 or len(series.wait_counts) != buckets + 1:
            msg = "metrics snapshot has other histogram buckets"
            raise ValueError(msg)
        return series


def families(
    buckets: Sequence[float],
    series: dict[tuple[str, str], Series],
    depths: dict[str, float] | None,
    lag: float | None,
) -> Iterator[Metric]:
    """The metric families of a scrape: job figures by (task, queue), then the gauges.

    The queue-depth family is served only when `depths` is not None (someone watches
    queues), the loop-lag gauge only when `lag` is not None.
    """
    jobs, duration, wait, running = job_families()
    for (task, queue), figures in sorted(series.items()):
        for kind, count in figures.outcome_counts().items():
            jobs.add_metric((task, queue, OUTCOMES[kind]), count)
        duration.add_metric(
            (task, queue), cumulative(buckets, figures.duration_counts), figures.duration_sum
        )
        wait.add_metric((task, queue), cumulative(buckets, figures.wait_counts), figures.wait_sum)
        running.add_metric((task, queue), figures.in_progress)
    yield from (jobs, duration, wait, running)
    if depths is not None:
        depth = GaugeMetricFamily(
            f"{NAMESPACE}_queue_depth",
            "Jobs waiting in the queue (read with queue.count at most once per interval).",
            labels=("queue",),
        )
        for name, value in sorted(depths.items()):
            depth.add_metric((name,), value)
        yield depth
    if lag is not None:
        yield GaugeMetricFamily(
            f"{NAMESPACE}_event_loop_lag_seconds",
            "How late the worker's event loop woke at its last lag measurement.",
            value=lag,
        )


def cumulative(bounds: Sequence[float], counts: list[int]) -> list[tuple[str, float]]:
    total = 0
    out: list[tuple[str, float]] = []
    for bound, count in zip((*bounds, float("inf")), counts, strict=True):
        total += count
        out.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(total)))
    return out


def job_families() -> tuple[
    CounterMetricFamily, HistogramMetricFamily, HistogramMetricFamily, GaugeMetricFamily
]:
    jobs = CounterMetricFamily(
        f"{NAMESPACE}_jobs",
        "Job attempts by outcome: succeeded, retried (failed, retry scheduled), "
        "dead_lettered (failed for good), lost (lease lost), released (requeued on stop).",
        labels=("task", "queue", "outcome"),
    )
    duration = HistogramMetricFamily(
        f"{NAMESPACE}_job_duration_seconds",
        "Seconds each attempt's handler ran.",
        labels=("task", "queue"),
    )
    wait = HistogramMetricFamily(
        f"{NAMESPACE}_queue_wait_seconds",
        "Seconds from enqueue to the start of the first attempt.",
        labels=("task", "queue"),
    )
    running = GaugeMetricFamily(
        f"{NAMESPACE}_jobs_in_progress",
        "Jobs running now in this process.",
        labels=("task", "queue"),
    )
    return jobs, duration, wait, running


__all__ = [
    "DURATION_BUCKETS",
    "NAMESPACE",
    "OUTCOMES",
    "Series",
    "cumulative",
    "families",
    "job_families",
]
