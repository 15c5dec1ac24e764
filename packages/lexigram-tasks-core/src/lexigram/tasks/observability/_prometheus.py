"""`PrometheusObserver`: the job event stream as Prometheus metrics.

Needs the optional ``prometheus-client`` package (``pip install
'lexigram-tasks[prometheus]'``); importing this module without it raises an
`ImportError` that says so. The rest of the core never imports it.

The observer turns each `JobEvent` into counter, histogram and gauge updates (a few
dictionary look-ups per event, no I/O). Queue depths are not updated per job: they are
read with ``queue.count`` when the registry is scraped, at most once every
``depth_interval`` seconds, and the last figures are served in between.

Example:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    metrics = PrometheusObserver(registry)
    worker = TaskWorker("w1", queue, handlers, services=TaskWorkerServices(observers=[metrics]))
    ...
    print(generate_latest(registry).decode())
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.core import GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    msg = (
        "PrometheusObserver needs the prometheus-client package: "
        "pip install 'lexigram-tasks[prometheus]'."
    )
    raise ImportError(msg) from exc

from lexigram.tasks.events import COMPLETED, FAILED, LOST, RELEASED, RETRYING, STARTED, JobEvent

if TYPE_CHECKING:
    from lexigram.contracts.tasks import TaskQueueProtocol

logger = logging.getLogger(__name__)

NAMESPACE = "lexigram_tasks"
"""Prefix of every metric name."""

OUTCOMES: dict[str, str] = {
    COMPLETED: "succeeded",
    RETRYING: "retried",
    FAILED: "dead_lettered",
    LOST: "lost",
    RELEASED: "released",
}
"""`JobEvent.kind` -> the ``outcome`` label of ``lexigram_tasks_jobs_total``."""

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
"""Buckets (seconds) of the run-time and queue-wait histograms."""

_RAN = frozenset({COMPLETED, RETRYING, FAILED})
_NOT_RUN_REASONS = frozenset({"unknown_task", "poison", "crash_loop"})


class PrometheusObserver:
    """An `EventObserver` that exports job outcomes, run times and queue waits.

    Metrics (names follow Prometheus conventions; see ``docs/operations.md``):
    ``lexigram_tasks_jobs_total{task,queue,outcome}``,
    ``lexigram_tasks_job_duration_seconds{task,queue}`` (histogram),
    ``lexigram_tasks_queue_wait_seconds{task,queue}`` (histogram),
    ``lexigram_tasks_jobs_in_progress{task,queue}`` (gauge), and once watched
    ``lexigram_tasks_queue_depth{queue}`` and ``lexigram_tasks_event_loop_lag_seconds``.

    Args:
        registry: Where the metrics are registered (default: prometheus_client's
            global ``REGISTRY``, which ``start_http_server`` serves).
        buckets: Histogram buckets in seconds.
        depth_interval: Queue depths are read at most once per this many seconds.
    """

    listening = True

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        buckets: Sequence[float] = DURATION_BUCKETS,
        depth_interval: float = 5.0,
    ) -> None:
        self.registry = registry if registry is not None else REGISTRY
        self.depth_interval = depth_interval
        reg = self.registry
        self.jobs = Counter(
            "jobs",
            "Job attempts by outcome: succeeded, retried (failed, retry scheduled), "
            "dead_lettered (failed for good), lost (lease lost), released (requeued on stop).",
            ("task", "queue", "outcome"),
            namespace=NAMESPACE,
            registry=reg,
        )
        self.duration = Histogram(
            "job_duration_seconds",
            "Seconds each attempt's handler ran.",
            ("task", "queue"),
            namespace=NAMESPACE,
            buckets=buckets,
            registry=reg,
        )
        self.queue_wait = Histogram(
            "queue_wait_seconds",
            "Seconds from enqueue to the start of the first attempt.",
            ("task", "queue"),
            namespace=NAMESPACE,
            buckets=buckets,
            registry=reg,
        )
        self.in_progress = Gauge(
            "jobs_in_progress",
            "Jobs running now in this process.",
            ("task", "queue"),
            namespace=NAMESPACE,
            registry=reg,
        )
        self._running: set[tuple[str, str]] = set()
        self._depth: _DepthCollector | None = None
        self._lag_source: Callable[[], float | None] | None = None

    def __repr__(self) -> str:
        return f"PrometheusObserver(registry={self.registry!r})"

    def observe(self, event: JobEvent) -> None:
        """Update the metrics for one job event (never raises for a known event)."""
        kind = event.kind
        task, queue = event.task, event.queue
        if kind == STARTED:
            key = (event.job_id, event.worker_id)
            if key not in self._running:
                self._running.add(key)
                self.in_progress.labels(task, queue).inc()
            if event.attempt <= 1 and event.enqueued_at is not None:
                started = event.started_at if event.started_at is not None else time.time()
                self.queue_wait.labels(task, queue).observe(max(0.0, started - event.enqueued_at))
            return
        outcome = OUTCOMES.get(kind)
        if outcome is None:
            return  # "queued" and kinds this version does not know
        self.jobs.labels(task, queue, outcome).inc()
        key = (event.job_id, event.worker_id)
        if key in self._running:
            self._running.discard(key)
            self.in_progress.labels(task, queue).dec()
        ran = kind in _RAN and event.reason not in _NOT_RUN_REASONS
        if ran and event.duration is not None:
            self.duration.labels(task, queue).observe(event.duration)

    # -- gauges read on scrape -----------------------------------------------------

    def watch_queues(
        self,
        queues: Iterable[TaskQueueProtocol],
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        timeout: float = 2.0,
    ) -> None:
        """Export ``lexigram_tasks_queue_depth{queue}`` (pending jobs) for `queues`.

        The depths are read with ``queue.count(name)`` on `loop` (the one the queues
        belong to; default: the running loop) when the registry is scraped, at most
        once per `depth_interval`; a read that takes longer than `timeout` seconds
        serves the previous figures.
        """
        if self._depth is not None:
            self.registry.unregister(self._depth)
        owner = loop if loop is not None else asyncio.get_running_loop()
        self._depth = _DepthCollector(list(queues), owner, self.depth_interval, timeout)
        self.registry.register(self._depth)

    async def refresh_depths(self) -> dict[str, float]:
        """Read the watched queues' depths now (from their loop); return them by queue."""
        if self._depth is None:
            return {}
        return await self._depth.refresh()

    def watch_loop_lag(self, source: Callable[[], float | None]) -> None:
        """Export ``lexigram_tasks_event_loop_lag_seconds``: what `source` returns on scrape.

        `source` returns the event loop's last measured lag in seconds (e.g. a
        `TaskWorker`'s ``lag_monitor.last_lag``), or None when there is no figure.
        """
        first = self._lag_source is None
        self._lag_source = source
        if first:
            gauge = Gauge(
                "event_loop_lag_seconds",
                "How late the worker's event loop woke at its last lag measurement.",
                namespace=NAMESPACE,
                registry=self.registry,
            )
            gauge.set_function(self._lag)

    def _lag(self) -> float:
        source = self._lag_source
        value = source() if source is not None else None
        return float(value) if value is not None else 0.0


class _DepthCollector(Collector):
    """Serves queue depths, read on scrape at most once per interval."""

    def __init__(
        self,
        queues: list[TaskQueueProtocol],
        loop: asyncio.AbstractEventLoop,
        interval: float,
        timeout: float,
    ) -> None:
        self.queues = queues
        self.loop = loop
        self.interval = interval
        self.timeout = timeout
        self.depths: dict[str, float] = {}
        self.read_at = float("-inf")
        self._refreshing = threading.Lock()

    def describe(self) -> list[Metric]:
        return []  # the registry must not call collect() at registration

    def collect(self) -> Iterator[Metric]:
        if time.monotonic() - self.read_at >= self.interval:
            self._refresh_from_scrape()
        family = GaugeMetricFamily(
            f"{NAMESPACE}_queue_depth",
            "Jobs waiting in the queue (read with queue.count at most once per interval).",
            labels=("queue",),
        )
        for name, depth in sorted(self.depths.items()):
            family.add_metric((name,), depth)
        yield family

    def _refresh_from_scrape(self) -> None:
        if self.loop.is_closed() or not self._refreshing.acquire(blocking=False):
            return
        try:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is self.loop:
                # Scraped from the loop's own thread: waiting would block it; read later.
                self.read_at = time.monotonic()
                self.loop.create_task(self.refresh())
                return
            future = asyncio.run_coroutine_threadsafe(self.refresh(), self.loop)
            try:
                future.result(self.timeout)
            except Exception:
                future.cancel()
                logger.warning("Reading queue depths for metrics failed or timed out.")
        finally:
            self._refreshing.release()

    async def refresh(self) -> dict[str, float]:
        depths: dict[str, float] = {}
        for queue in self.queues:
            try:
                depths[queue.queue_name] = float(await queue.count(queue.queue_name))
            except Exception:
                logger.warning("Reading the depth of queue %r failed.", queue.queue_name)
        self.depths.update(depths)
        self.read_at = time.monotonic()
        return dict(self.depths)


__all__ = ["DURATION_BUCKETS", "NAMESPACE", "OUTCOMES", "PrometheusObserver"]
