"""``lexigram-tasks worker APP``: run task handlers until stopped.

SIGTERM or SIGINT (Ctrl-C) starts a graceful drain: stop taking jobs, let the running
ones finish for up to ``--shutdown-timeout`` seconds, nack (requeue) the rest, exit 0.
A second signal stops at once: running handlers are cancelled and their jobs nacked
(jobs a handler will not give up are delivered again when their lease expires),
exit 1.
"""

from __future__ import annotations

import gc
import os
from typing import Any, NamedTuple

import click

from lexigram.tasks.cli._errors import HARD_STOP_EXIT_CODE, HardStop
from lexigram.tasks.cli._options import (
    FiniteFloatRange,
    backend_option,
    config_option,
    connect_timeout_option,
    debug_option,
    log_level_option,
)
from lexigram.tasks.cli._supervised import SUPERVISED_ENV

# This module is only the command's options: what the worker runs (the APP, the config,
# the backend, the runtime) is imported once they are parsed, in `worker_command`, so
# that `worker --help` and a usage error stay quick (see `_worker_run`).

EPILOG = """\b
Examples:
  lexigram-tasks worker myapp.tasks --backend redis://localhost:6379/0
  lexigram-tasks worker myapp.tasks:registry -q emails -q reports -c 50
  lexigram-tasks worker myapp.tasks:provider --workers 4 --shutdown-timeout 60
  lexigram-tasks worker config/tasks.yaml --reload
"""


class WorkerOptions(NamedTuple):
    """The worker command's options, as parsed."""

    app: str
    backend: str | None
    config_path: str | None
    queues: tuple[str, ...]
    concurrency: int | None
    workers: int
    shutdown_timeout: float | None
    log_level: str
    reload: bool
    burst: bool
    connect_timeout: float
    debug: bool
    log_jobs: bool = False
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"

    def child_args(self) -> list[str]:
        """The arguments of one supervised child: the same options, one process."""
        args = ["worker", self.app, "--workers", "1", "--log-level", self.log_level]
        if self.backend is not None:
            args += ["--backend", self.backend]
        if self.config_path is not None:
            args += ["--config", self.config_path]
        for queue in self.queues:
            args += ["--queue", queue]
        if self.concurrency is not None:
            args += ["--concurrency", str(self.concurrency)]
        if self.shutdown_timeout is not None:
            args += ["--shutdown-timeout", str(self.shutdown_timeout)]
        args += ["--connect-timeout", str(self.connect_timeout)]
        if self.burst:
            args.append("--burst")
        if self.log_jobs:
            args.append("--log-jobs")
        if self.debug:
            args.append("--debug")
        return args


@click.command("worker", epilog=EPILOG)
@click.argument("app")
@backend_option
@click.option(
    "--queue",
    "-q",
    "queues",
    multiple=True,
    metavar="NAME",
    help="Queue to consume (repeat for several). Default: the config's queue_name.",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    help="Jobs run at once per queue and process. Default: worker.max_concurrent_tasks (10).",
)
@click.option(
    "--workers",
    "-w",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes, each with its own event loop; a dead one is restarted.",
)
@click.option(
    "--shutdown-timeout",
    type=FiniteFloatRange(min=0),
    metavar="SECONDS",
    help="On SIGTERM/SIGINT, how long running jobs may finish. Default: worker.shutdown_timeout.",
)
@log_level_option("info")
@click.option("--reload", is_flag=True, help="Restart when the APP's source changes (development).")
@click.option("--burst", is_flag=True, help="Exit once the queues are empty and nothing runs.")
@click.option(
    "--log-jobs",
    is_flag=True,
    help="Log a line at INFO for every completed job. Default: worker.log_jobs (off).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    metavar="PORT",
    help="Serve Prometheus metrics on http://HOST:PORT/metrics (needs prometheus-client).",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    metavar="HOST",
    help="Address the metrics server binds to.",
)
@config_option
@connect_timeout_option
@debug_option
def worker_command(**params: Any) -> None:
    """Run the task handlers of APP on the queues until SIGTERM/SIGINT.

    APP is `module:object` (a TaskProvider, a HandlerRegistry, a dict of name ->
    handler, one @task function, or a no-argument function returning one of these),
    a module whose @task functions are used, or a YAML config file whose tasks
    section names the module in `extra.app`.

    The first SIGTERM/SIGINT drains: no new jobs, running ones finish (up to
    --shutdown-timeout), the rest are requeued, exit code 0. A second signal stops now.
    """
    options = WorkerOptions(**params)
    # Start-up builds what lives as long as the worker (modules, the APP, the clients),
    # which the worker freezes once it consumes (`_worker_run`): the cyclic collector's
    # passes over it meanwhile free nothing and cost ~4 % of the start's instructions.
    collecting = gc.isenabled()
    gc.disable()
    try:
        # Imported here, not at the top: see the note on the imports.
        from lexigram.tasks.cli import _worker_run  # noqa: PLC0415

        _worker_run.run_worker(
            options,
            supervised=os.environ.get(SUPERVISED_ENV) is not None,
            collect=collecting,
        )
    finally:
        if collecting:
            gc.enable()


__all__ = ["HARD_STOP_EXIT_CODE", "HardStop", "WorkerOptions", "worker_command"]
