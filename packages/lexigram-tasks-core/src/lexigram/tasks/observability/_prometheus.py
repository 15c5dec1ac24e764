"""`PrometheusObserver`: the job event stream as Prometheus metrics.

Needs the optional ``prometheus-client`` package (``pip install
'lexigram-tasks[prometheus]'``); importing this module without it raises an
`ImportError` that says so. The rest of the core never imports it.

The observer turns each `JobEvent` into counter, histogram and gauge updates (a few
dictionary look-ups per event, no I/O). Queue depths are not updated per job: they are
read with ``queue.count`` when the registry is scraped, at most once every
``depth_interval`` seconds, and the last figures are served in between. Given the running
jobs to read (`PrometheusObserver.watch_running`, as the CLI worker does), the
in-progress gauge is read on scrape too, and the observer asks for one event a job (its
outcome) instead of two.

Several observers may share one registry (one per worker of a process, or a CLI worker
started twice in one process): the registry gets one exporter, which serves the sum of
their figures, so their series never collide.

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
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

try:
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.core import Metric
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    msg = (
        "PrometheusObserver needs the prometheus-client package: "
        "pip install 'lexigram-tasks[prometheus]'."
    )
    raise ImportError(msg) from exc

from lexigram.contracts.tasks import JobStatus, TaskConfigurationError
from lexigram.tasks.events import (
    COMPLETED,
    FAILED,
    RETRYING,
    STARTED,
    JobEvent,
    event_routes_changed,
)
from lexigram.tasks.observability._prometheus_families import (
    DURATION_BUCKETS,
    NAMESPACE,
    OUTCOMES,
    Series,
    families,
    job_families,
)

if TYPE_CHECKING:
    from lexigram.contracts.tasks import TaskQueueProtocol

logger = logging.getLogger(__name__)

_RAN = frozenset({COMPLETED, RETRYING, FAILED})
_NOT_RUN_REASONS = frozenset({"unknown_task", "poison", "crash_loop"})
_OUTCOME_KINDS = frozenset(OUTCOMES)
_EVERY_KIND = _OUTCOME_KINDS | {STARTED}
# Once in-progress is read on scrape, completed jobs come as figures (`count_completed`).
_UNCOMMON_OUTCOMES = _OUTCOME_KINDS - {COMPLETED}

RunningJobs = Callable[[], Iterable[tuple[str, str]]]
"""Returns the (task, queue) of each job running now, one pair per job."""


class PrometheusObserver:
    """An `EventObserver` that exports job outcomes, run times and queue waits.

    Metrics (names follow Prometheus conventions; see ``docs/operations.md``):
    ``lexigram_tasks_jobs_total{task,queue,outcome}``,
    ``lexigram_tasks_job_duration_seconds{task,queue}`` (histogram),
    ``lexigram_tasks_queue_wait_seconds{task,queue}`` (histogram),
    ``lexigram_tasks_jobs_in_progress{task,queue}`` (gauge), and once watched
    ``lexigram_tasks_queue_depth{queue}`` and ``lexigram_tasks_event_loop_lag_seconds``.

    Observers given the same registry are served together: counters and histograms
    are summed over them, queue depths merged by queue name, and the loop lag is the
    largest any of them reports.

    The observer handles the "started" event (in-progress gauge, queue wait) and the
    outcome events; once `watch_running` gives it the running jobs to read on scrape,
    the outcome events alone (``event_kinds``), so the worker builds no "started" event
    for it, and it takes completed jobs as figures (`count_completed`) rather than as
    events, so the worker builds no event at all for a job that succeeds.

    Args:
        registry: Where the metrics are registered (default: prometheus_client's
            global ``REGISTRY``, which ``start_http_server`` serves).
        buckets: Histogram buckets in seconds (the same for every observer of one
            registry).
        depth_interval: Queue depths are read at most once per this many seconds.

    Raises:
        TaskConfigurationError: Another observer of `registry` has other buckets.
    """

    listening = True

    event_kinds: frozenset[str]
    """The job-event kinds it handles: the outcomes, and "started" until `watch_running`."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        buckets: Sequence[float] = DURATION_BUCKETS,
        depth_interval: float = 5.0,
    ) -> None:
        self.registry = registry if registry is not None else REGISTRY
        self.depth_interval = depth_interval
        self.buckets = tuple(sorted(float(bound) for bound in buckets))
        self._running: set[tuple[str, str]] = set()
        self._series: dict[tuple[str, str], Series] = {}
        # The (task, queue) and series `count_completed` counted last.
        self._last: tuple[str, str, Series | None] = ("", "", None)
        self._depth: _DepthReader | None = None
        self._lag_source: Callable[[], float | None] | None = None
        self._running_source: RunningJobs | None = None
        # True while outcomes need no look-up in `_running`: the in-progress gauge is read
        # on scrape and no job counted from a "started" event is still open. Set through
        # `_count_at_end`, which also says which events the observer asks for.
        self._waits_at_end = False
        self.event_kinds = _EVERY_KIND
        _export_for(self.registry, self.buckets).observers.append(self)

    def __repr__(self) -> str:
        return f"PrometheusObserver(registry={self.registry!r})"

    def observe(self, event: JobEvent) -> None:
        """Update the metrics for one job event (plain arithmetic: no lock, no I/O)."""
        # On the worker's path for every job that does not succeed (and for every job until
        # the observer takes completed ones as figures): locals over attribute look-ups,
        # each test made once. `count_completed` repeats its bucket updates inline rather
        # than share a helper: a call per histogram would cost more than they do.
        try:
            series = self._series[event.task, event.queue]
        except KeyError:
            series = self._series[event.task, event.queue] = Series(len(self.buckets))
        kind = event.kind
        started = event.started_at
        if kind == STARTED:
            wait_due = self._opened(series, event)
            if started is None:
                started = time.time()
        else:
            try:
                series.outcomes[kind] += 1
            except KeyError:
                return  # "queued" and kinds this version does not know
            wait_due = event.attempt <= 1 if self._waits_at_end else self._closed(series, event)
            if event.reason in _NOT_RUN_REASONS:
                return  # no run time, and no wait: the job never started
            duration = event.duration
            if duration is not None and kind in _RAN:
                series.duration_counts[bisect_left(self.buckets, duration)] += 1
                series.duration_sum += duration
        if wait_due:
            # A first attempt's wait in the queue: on its "started" event, or when it ends
            # if none comes (a clock step back counts as 0).
            enqueued = event.enqueued_at
            if enqueued is not None and started is not None:
                wait = started - enqueued if started > enqueued else 0.0
                series.wait_counts[bisect_left(self.buckets, wait)] += 1
                series.wait_sum += wait

    def count_completed(  # noqa: PLR0917 - a CompletionCounter: positional by contract
        self,
        task: str,
        queue: str,
        attempt: int,
        enqueued_at: float | None,
        started_at: float | None,
        duration: float,
    ) -> None:
        """Count a completed job from its figures (what `observe` does with its event).

        The stream calls it instead of delivering "completed" events while those are not
        in ``event_kinds``: once the in-progress gauge is read on scrape and no job
        counted from a "started" event is open, so no look-up among running jobs is due.
        """
        # Jobs come in runs of one task: the last series is compared before a look-up.
        last_task, last_queue, series = self._last
        if series is None or task != last_task or queue != last_queue:
            key = (task, queue)
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = Series(len(self.buckets))
            self._last = (task, queue, series)
        series.completed += 1
        buckets = self.buckets
        series.duration_counts[bisect_left(buckets, duration)] += 1
        series.duration_sum += duration
        if attempt <= 1 and enqueued_at is not None and started_at:
            wait = started_at - enqueued_at if started_at > enqueued_at else 0.0
            series.wait_counts[bisect_left(buckets, wait)] += 1
            series.wait_sum += wait

    def _count_at_end(self, *, at_end: bool) -> None:
        """Take outcomes without look-ups (`at_end`), and completed jobs as figures, or not."""
        if at_end == self._waits_at_end:
            return
        self._waits_at_end = at_end
        if self._running_source is not None:
            self._route_outcomes()

    def _route_outcomes(self) -> None:
        """Ask for every outcome's event, or for all but "completed" once counted as figures."""
        self.event_kinds = _UNCOMMON_OUTCOMES if self._waits_at_end else _OUTCOME_KINDS
        event_routes_changed()

    def _opened(self, series: Series, event: JobEvent) -> bool:
        """Count a started attempt in progress; True when its wait is to be taken now."""
        running = self._running
        size = len(running)
        running.add((event.job_id, event.worker_id))
        if len(running) != size:
            series.in_progress += 1
            self._count_at_end(at_end=False)
        return event.attempt <= 1

    def _closed(self, series: Series, event: JobEvent) -> bool:
        """End the attempt's in-progress book-keeping; True when its wait is to be taken now.

        Counting in-progress from events, the wait was taken from the "started" event.
        Reading it on scrape, the same holds for a job that started before `watch_running`.
        """
        running = self._running
        key = (event.job_id, event.worker_id)
        if key not in running:
            return self._running_source is not None and event.attempt <= 1
        running.discard(key)
        if self._running_source is None:
            series.in_progress -= 1
        elif not running:
            self._count_at_end(at_end=True)  # the last job from before the watch has ended
        return False

    # -- gauges read on scrape -----------------------------------------------------

    def watch_queues(
        self,
        queues: Iterable[TaskQueueProtocol],
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        timeout: float = 2.0,
    ) -> None:
        """Export ``lexigram_tasks_queue_depth{queue}`` (waiting jobs) for `queues`.

        A waiting job is one `TaskQueueProtocol.count` counts as PENDING: ready, delayed
        or awaiting a retry; the jobs in flight (leased by a worker) are left out. The
        depths are read with ``queue.count(name, JobStatus.PENDING)`` on `loop` (the one
        the queues belong to; default: the running loop) when the registry is scraped,
        at most once per `depth_interval`; a read that takes longer than `timeout`
        seconds serves the previous figures. A second call replaces the queues watched.
        """
        owner = loop if loop is not None else asyncio.get_running_loop()
        self._depth = _DepthReader(list(queues), owner, self.depth_interval, timeout)

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
        self._lag_source = source

    def watch_running(self, source: RunningJobs) -> None:
        """Read ``lexigram_tasks_jobs_in_progress`` from `source` on scrape.

        `source` returns the (task, queue) of each job running now (e.g. from
        `TaskWorker.running_jobs`); it is called from the scraping thread. From then on
        the observer needs no "started" event: it drops the kind from ``event_kinds`` and
        takes each job's queue wait from its first attempt's outcome instead (the same
        figure, observed when that attempt ends); once no job that started before the
        watch is open, it takes completed jobs through `count_completed`, not as events.
        """
        self._running_source = source
        # `_running` keeps the jobs that started before: their waits are counted already.
        for series in list(self._series.values()):
            series.in_progress = 0
        self._waits_at_end = not self._running
        self._route_outcomes()

    def _figures(self) -> dict[tuple[str, str], Series]:
        """The figures by (task, queue) as a scrape serves them (in-progress read now)."""
        source = self._running_source
        if source is None:
            return dict(self._series)
        running: dict[tuple[str, str], int] = {}
        for key in source():
            running[key] = running.get(key, 0) + 1
        size = len(self.buckets)
        served: dict[tuple[str, str], Series] = {}
        for key in {*list(self._series), *running}:
            copy = Series(size)
            recorded = self._series.get(key)
            if recorded is not None:
                copy.add(recorded, in_progress=False)
            copy.in_progress = running.get(key, 0)
            served[key] = copy
        return served

    async def snapshot(self) -> dict[str, Any]:
        """The observer's figures as JSON values, queue depths read first when due.

        What a supervised worker process writes for its supervisor to serve
        (``lexigram-tasks worker --workers N --metrics-port P``).
        """
        depths: dict[str, float] | None = None
        if self._depth is not None:
            reader = self._depth
            if time.monotonic() - reader.read_at >= reader.interval:
                await reader.refresh()
            depths = dict(reader.depths)
        return {
            "buckets": list(self.buckets),
            "series": [
                [task, queue, series.to_json()] for (task, queue), series in self._figures().items()
            ],
            "depths": depths,
            "lag": self._lag(),
        }

    def _lag(self) -> float | None:
        source = self._lag_source
        if source is None:
            return None
        value = source()
        return float(value) if value is not None else 0.0


_exports: weakref.WeakKeyDictionary[CollectorRegistry, _RegistryExport] = (
    weakref.WeakKeyDictionary()
)
_exports_lock = threading.Lock()


def _export_for(registry: CollectorRegistry, buckets: tuple[float, ...]) -> _RegistryExport:
    """Return the exporter of `registry`, registering it with the first observer."""
    with _exports_lock:
        export = _exports.get(registry)
        if export is None:
            export = _RegistryExport(buckets)
            registry.register(export)  # raises first when foreign metrics hold the names
            _exports[registry] = export
        elif export.buckets != buckets:
            msg = (
                f"PrometheusObserver buckets {list(buckets)} differ from {list(export.buckets)} "
                "of another observer of the same registry; their histograms cannot be summed. "
                "Give every observer of one registry the same buckets."
            )
            raise TaskConfigurationError(msg)
        return export


class _RegistryExport(Collector):
    """Serves every observer of one registry: their figures summed when scraped."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.observers: list[PrometheusObserver] = []

    def describe(self) -> list[Metric]:
        # Names only: the registry must not call collect() (and read depths) at registration.
        return list(job_families())

    def collect(self) -> Iterator[Metric]:
        observers = list(self.observers)
        readers = [observer._depth for observer in observers if observer._depth is not None]  # noqa: SLF001
        depths: dict[str, float] | None = None
        if readers:
            depths = {}
            for reader in readers:
                depths.update(reader.current())
        lags = [lag for observer in observers if (lag := observer._lag()) is not None]  # noqa: SLF001
        merged = self._merged(observers)
        yield from families(self.buckets, merged, depths, max(lags) if lags else None)

    def _merged(self, observers: list[PrometheusObserver]) -> dict[tuple[str, str], Series]:
        """Sum the observers' series per (task, queue); one observer's are read as they are."""
        if len(observers) == 1:
            return observers[0]._figures()  # noqa: SLF001
        size = len(self.buckets)
        merged: dict[tuple[str, str], Series] = {}
        for observer in observers:
            for key, series in observer._figures().items():  # noqa: SLF001
                total = merged.get(key)
                if total is None:
                    total = merged[key] = Series(size)
                total.add(series)
        return merged


class _DepthReader:
    """Reads one observer's queue depths, on scrape at most once per interval."""

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

    def current(self) -> dict[str, float]:
        """The depths to serve now, read first when the last read is older than the interval."""
        if time.monotonic() - self.read_at >= self.interval:
            self._refresh_from_scrape()
        return dict(self.depths)

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
                waiting = await queue.count(queue.queue_name, JobStatus.PENDING)
                depths[queue.queue_name] = float(waiting)
            except Exception:
                logger.warning("Reading the depth of queue %r failed.", queue.queue_name)
        self.depths.update(depths)
        self.read_at = time.monotonic()
        return dict(self.depths)


__all__ = ["DURATION_BUCKETS", "NAMESPACE", "OUTCOMES", "PrometheusObserver"]
