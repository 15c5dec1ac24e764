"""Metrics of several worker processes served from one port by their supervisor.

``lexigram-tasks worker --workers N --metrics-port P`` runs N child processes. Each
child keeps its own `PrometheusObserver` and writes a snapshot of its figures to a file
in a directory the supervisor names (`METRICS_DIR_ENV`), every `SNAPSHOT_INTERVAL`
seconds and once more when it stops. The supervisor serves port P from those files:

- counters and histograms are summed over every file, including those of children that
  have exited, so a restarted child never makes a counter go down;
- the in-progress gauge, queue depths and loop lag come from live children only.

Snapshots are plain JSON written atomically (a temporary file renamed over the old
one), so a scrape never reads half a file. Figures are at most `SNAPSHOT_INTERVAL` old.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from lexigram.tasks.observability._prometheus import PrometheusObserver
from lexigram.tasks.observability._prometheus_families import (
    DURATION_BUCKETS,
    Series,
    families,
    job_families,
)

logger = logging.getLogger(__name__)

METRICS_DIR_ENV = "LEXIGRAM_TASKS_METRICS_DIR"
"""Set in each supervised child's environment to the directory of the snapshots."""

SNAPSHOT_INTERVAL = 1.0
"""Seconds between two snapshots of a child (the most a served figure lags behind)."""


def snapshot_path(directory: Path, pid: int | None = None) -> Path:
    """The snapshot file of process `pid` (default: this process)."""
    return directory / f"worker-{os.getpid() if pid is None else pid}.json"


async def write_snapshot(observer: PrometheusObserver, directory: Path) -> None:
    """Write `observer`'s figures to this process's snapshot file, atomically."""
    data = json.dumps({"pid": os.getpid(), **(await observer.snapshot())})
    target = snapshot_path(directory)
    partial = target.with_suffix(".tmp")
    partial.write_text(data, encoding="utf-8")
    partial.replace(target)


async def publish_snapshots(
    observer: PrometheusObserver, directory: Path, interval: float = SNAPSHOT_INTERVAL
) -> None:
    """Write a snapshot every `interval` seconds until cancelled, then a last one."""
    try:
        while True:
            try:
                await write_snapshot(observer, directory)
            except OSError as exc:
                logger.warning("Writing the metrics snapshot to %s failed: %s", directory, exc)
            await asyncio.sleep(interval)
    finally:
        with contextlib.suppress(OSError):
            await asyncio.shield(write_snapshot(observer, directory))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ProcessesCollector(Collector):
    """Serves the summed figures of the snapshot files in `directory` (see the module)."""

    def __init__(self, directory: Path, buckets: tuple[float, ...] = DURATION_BUCKETS) -> None:
        self.directory = directory
        self.buckets = tuple(float(bound) for bound in buckets)

    def describe(self) -> list[Metric]:
        return list(job_families())

    def collect(self) -> Iterator[Metric]:
        size = len(self.buckets)
        merged: dict[tuple[str, str], Series] = {}
        depths: dict[str, float] | None = None
        lags: list[float] = []
        for snapshot in self._snapshots():
            live = _alive(int(snapshot["pid"]))
            for task, queue, figures in snapshot["series"]:
                total = merged.get((task, queue))
                if total is None:
                    total = merged[task, queue] = Series(size)
                total.add(Series.from_json(figures, size), in_progress=live)
            if live and snapshot.get("depths") is not None:
                depths = {**(depths or {}), **snapshot["depths"]}
            if live and snapshot.get("lag") is not None:
                lags.append(float(snapshot["lag"]))
        yield from families(self.buckets, merged, depths, max(lags) if lags else None)

    def _snapshots(self) -> Iterator[dict[str, Any]]:
        for path in sorted(self.directory.glob("worker-*.json")):
            try:
                snapshot = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                logger.warning("Skipping the metrics snapshot %s: %s", path.name, exc)
                continue
            if tuple(snapshot.get("buckets", ())) != self.buckets:
                logger.warning("Skipping the metrics snapshot %s: other buckets.", path.name)
                continue
            yield snapshot


def serve_processes(directory: Path, port: int, host: str) -> CollectorRegistry:
    """Serve the children's snapshots in `directory` on http://HOST:PORT/metrics.

    Raises:
        OSError: The port cannot be bound.
    """
    registry = CollectorRegistry()
    registry.register(ProcessesCollector(directory))
    start_http_server(port, addr=host, registry=registry)
    return registry


__all__ = [
    "METRICS_DIR_ENV",
    "SNAPSHOT_INTERVAL",
    "ProcessesCollector",
    "publish_snapshots",
    "serve_processes",
    "snapshot_path",
    "write_snapshot",
]
