"""The Prometheus endpoint of ``lexigram-tasks worker --metrics-port``.

One worker process serves its own observer. With ``--workers N`` (or ``--reload``) the
supervisor serves the port: each child writes snapshots of its figures to a directory
the supervisor names in the children's environment, and the supervisor sums them
(`lexigram.tasks.observability._prometheus_processes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from lexigram.tasks.cli._runtime import WorkerRuntime
    from lexigram.tasks.observability._prometheus import PrometheusObserver

logger = logging.getLogger("lexigram.tasks.cli")

_MISSING = "--metrics-port needs prometheus-client: pip install 'lexigram-tasks[prometheus]'."


def _port_error(port: int, host: str, exc: OSError) -> click.UsageError:
    if exc.errno == errno.EADDRINUSE:
        fix = "pick a free port"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        fix = "pick a port above 1023, or run with the right to bind below it"
    else:  # an address this machine does not have, or a name that does not resolve
        fix = "check --metrics-host: an address of this machine, e.g. 127.0.0.1 or 0.0.0.0"
    reason = exc.strerror or str(exc)
    return click.UsageError(
        f"metrics port {port}: cannot listen on {host}:{port} ({reason}); {fix}."
    )


def start_metrics(port: int | None, host: str) -> PrometheusObserver | None:
    """Serve this process's metrics on `port`; return the observer (None: no port).

    A supervised child whose supervisor serves the port gets an observer of its own
    registry and serves nothing (see `publish_to_supervisor`).
    """
    if children_metrics_dir() is not None:
        return _observer(private=True)
    if port is None:
        return None
    observer = _observer(private=False)
    from prometheus_client import start_http_server  # noqa: PLC0415 - optional extra

    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        raise _port_error(port, host, exc) from None
    logger.info("Serving metrics on http://%s:%d/metrics", host, port)
    return observer


def _observer(*, private: bool) -> PrometheusObserver:
    try:
        from prometheus_client import CollectorRegistry  # noqa: PLC0415 - optional extra

        from lexigram.tasks.observability._prometheus import PrometheusObserver  # noqa: PLC0415
    except ImportError:
        raise click.UsageError(_MISSING) from None
    return PrometheusObserver(CollectorRegistry() if private else None)


def watch_runtime(metrics: PrometheusObserver, runtime: WorkerRuntime) -> None:
    """Export the runtime's queue depths, running jobs and event-loop lag through `metrics`."""
    metrics.watch_queues(runtime.queues)
    # Each worker with its queue's name: the label of a job that names no queue.
    workers = [
        (worker, str(getattr(worker.queue, "queue_name", "") or ""))
        for pool in runtime.pools
        for worker in pool.workers
    ]

    def running() -> list[tuple[str, str]]:
        return [
            (job.name, job.queue_name or queue)
            for worker, queue in workers
            for job in worker.running_jobs()
        ]

    metrics.watch_running(running)
    monitors = [
        worker.lag_monitor
        for pool in runtime.pools
        for worker in pool.workers
        if worker.lag_monitor is not None
    ]
    if monitors:
        metrics.watch_loop_lag(lambda: max(monitor.last_lag for monitor in monitors))


def children_metrics_dir() -> Path | None:
    """The snapshot directory the supervisor named, in a supervised child (else None)."""
    from lexigram.tasks.cli._supervised import SUPERVISED_ENV  # noqa: PLC0415 - no cycle

    if os.environ.get(SUPERVISED_ENV) is None:
        return None
    try:
        from lexigram.tasks.observability._prometheus_processes import (  # noqa: PLC0415
            METRICS_DIR_ENV,
        )
    except ImportError:
        return None
    value = os.environ.get(METRICS_DIR_ENV)
    return Path(value) if value else None


def publish_to_supervisor(metrics: PrometheusObserver) -> asyncio.Task[None] | None:
    """In a supervised child, start writing `metrics` snapshots for the supervisor."""
    directory = children_metrics_dir()
    if directory is None:
        return None
    from lexigram.tasks.observability._prometheus_processes import (  # noqa: PLC0415
        publish_snapshots,
    )

    return asyncio.create_task(publish_snapshots(metrics, directory))


@contextlib.contextmanager
def serve_children(port: int | None, host: str) -> Iterator[None]:
    """In the supervisor: serve the children's summed metrics on `port` while inside.

    Creates the snapshot directory, names it in this process's environment (which the
    children inherit) and removes it on the way out. Does nothing when `port` is None.
    """
    if port is None:
        yield
        return
    try:
        from lexigram.tasks.observability._prometheus_processes import (  # noqa: PLC0415
            METRICS_DIR_ENV,
            serve_processes,
        )
    except ImportError:
        raise click.UsageError(_MISSING) from None
    directory = Path(tempfile.mkdtemp(prefix="lexigram-tasks-metrics-"))
    try:
        try:
            serve_processes(directory, port, host)
        except OSError as exc:
            raise _port_error(port, host, exc) from None
        logger.info("Serving the worker processes' metrics on http://%s:%d/metrics", host, port)
        os.environ[METRICS_DIR_ENV] = str(directory)
        try:
            yield
        finally:
            os.environ.pop(METRICS_DIR_ENV, None)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
