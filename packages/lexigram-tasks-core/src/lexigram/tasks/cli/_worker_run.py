"""What ``lexigram-tasks worker`` runs once its options are parsed (`_worker` holds them).

One process: load the APP, read the config, resolve the backend, start a
`WorkerRuntime` and run until SIGTERM/SIGINT (or, with ``--burst``, until the queues are
empty). Several processes (``--workers N``, ``--reload``): a `Supervisor` of such children.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from lexigram.tasks._presence import WorkerTotals
from lexigram.tasks._worker_settings import WorkerSettings
from lexigram.tasks.cli._app import LoadedApp, load_app
from lexigram.tasks.cli._context import (
    check_queue_option,
    configured_by_environment,
    default_backend,
    describe,
    read_config,
    refuse_disabled,
    resolve_spec,
)
from lexigram.tasks.cli._errors import HARD_STOP_EXIT_CODE, HardStop, release_held
from lexigram.tasks.cli._event_loop import run_async
from lexigram.tasks.cli._metrics import (
    publish_to_supervisor,
    serve_children,
    start_metrics,
    watch_runtime,
)
from lexigram.tasks.cli._output import setup_logging, terminal_console
from lexigram.tasks.cli._runtime import WorkerRuntime, check_backends
from lexigram.tasks.cli._supervised import signal_ready
from lexigram.tasks.cli._worker import WorkerOptions
from lexigram.tasks.di._stack import worker_settings
from lexigram.tasks.execution._runner import busy_handler_threads

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from lexigram.tasks._worker_settings import AnyWorkerSettings
    from lexigram.tasks.config import TaskConfig

logger = logging.getLogger("lexigram.tasks.cli")

_STATUS_REFRESH = 0.5  # seconds between status-line updates
_RATE_WINDOW = 10  # status samples the rate is averaged over (5 s)
_PLAIN_STATUS_EVERY = 10.0  # seconds between status log lines when not on a terminal
_HARD_STOP_GRACE = 5.0  # seconds cancelled handlers get to nack their jobs
YOUNG_COLLECTION_THRESHOLD = 10_000
"""Tracked allocations between the worker's young collections (Python's default: 700)."""


def run_worker(options: WorkerOptions, *, supervised: bool, collect: bool = True) -> NoReturn:
    """Run the worker command with parsed `options`; exits with the command's code.

    Args:
        options: The command's options.
        supervised: This process is a child of a `Supervisor`.
        collect: Turn the cyclic collector on once start-up is over (the caller turned
            it off for start-up, see `worker_command`); False leaves it as it is.

    Raises:
        HardStop: A second signal stopped the worker (exit code 1 without waiting for
            handler threads that ignore cancellation).
        SystemExit: Always otherwise, with the exit code.
    """
    level = "debug" if options.debug else options.log_level
    if options.workers > 1 or (options.reload and not supervised):
        setup_logging(level)
        app = load_app(options.app)  # fail here, once, rather than in every child
        options = _with_default_backend(options, app)  # the children get it as --backend
        config = _enabled_config(options, app, report=True)
        # As the APP: a backend that cannot be built, or does not answer, fails here,
        # once (one error line), rather than in every child.
        spec = resolve_spec(
            config,
            options.backend,
            check_queue_option(options.queues[0]) if options.queues else None,
            connect_timeout=options.connect_timeout,
        )
        release_held()  # what is left is about a backend the children report, if they build it
        run_async(check_backends(config, spec, options.connect_timeout))
        settings = worker_settings(config)
        # Here, not at the top: a worker that supervises no children never needs it.
        from lexigram.tasks.cli._supervisor import Supervisor  # noqa: PLC0415

        supervisor = Supervisor(
            child_args=options.child_args(),
            count=options.workers,
            shutdown_timeout=_or(options.shutdown_timeout, settings.shutdown_timeout),
            watch=app.watch_paths if options.reload else None,
            burst=options.burst,
        )
        if collect:
            gc.enable()  # start-up is over: the supervisor runs as long as its children
        # The supervisor serves the port: the children write it their figures.
        with serve_children(_or(options.metrics_port, settings.metrics_port), options.metrics_host):
            code = supervisor.run()
        raise SystemExit(code)
    # A live status line only on a terminal, and not in a supervised child (whose
    # stderr is the supervisor's terminal, shared with its siblings).
    console = None if supervised else terminal_console()
    setup_logging(level, console)
    app = load_app(options.app)
    options = _with_default_backend(options, app)
    code = run_async(_run(options, app, console, supervised, collect))
    if code == HARD_STOP_EXIT_CODE:
        raise HardStop(code)
    stuck = busy_handler_threads()
    if stuck:
        # Their jobs were requeued: waiting for the threads at exit would keep this
        # process (and its copy of each job) running beside the next worker's.
        logger.warning(
            "%d def handler thread(s) still running after the shutdown; their jobs were "
            "put back in the queue. Exiting without waiting for them.",
            stuck,
        )
        raise HardStop(code)
    raise SystemExit(code)


def _with_default_backend(options: WorkerOptions, app: LoadedApp) -> WorkerOptions:
    backend = default_backend(options.config_path, app.config, options.backend)
    return options if backend == options.backend else options._replace(backend=backend)


_T = TypeVar("_T")


def _or(given: _T | None, configured: _T) -> _T:
    """A command-line option's value, else the configuration's."""
    return configured if given is None else given


def _enabled_config(options: WorkerOptions, app: LoadedApp, *, report: bool) -> TaskConfig | None:
    """The worker's configuration (`read_config`), refused when it disables the tasks.

    Raises:
        CLIError: The configuration sets ``tasks.enabled: false``.
    """
    config = read_config(options.config_path, app.config, report=report, backend=options.backend)
    config = app.with_explicit_settings(config)
    refuse_disabled(config, "worker")
    return config


def _worker_config(options: WorkerOptions, base: AnyWorkerSettings) -> AnyWorkerSettings:
    """`base` with the command line's overrides (the same fields on both kinds)."""
    updates: dict[str, Any] = {}
    if options.concurrency is not None:
        updates["max_concurrent_tasks"] = options.concurrency
    if options.shutdown_timeout is not None:
        updates["shutdown_timeout"] = options.shutdown_timeout
    if options.log_jobs:
        updates["log_jobs"] = True
    if not updates:
        return base
    if isinstance(base, WorkerSettings):  # the plain record (nothing configured)
        return base._replace(**updates)
    return base.model_copy(update=updates)


async def _run(
    options: WorkerOptions,
    app: LoadedApp,
    console: Console | None,
    supervised: bool,
    collect: bool = True,
) -> int:
    config = _enabled_config(options, app, report=not supervised)
    queues = list(dict.fromkeys(check_queue_option(name) for name in options.queues))
    # The APP's own queue object is consumed unless the backend is given some other way.
    own_queue = (
        app.queue is not None
        and options.backend is None
        and not options.config_path
        and not configured_by_environment("BACKEND")
    )
    if not queues and app.queue is not None and own_queue:
        queues = [app.queue.queue_name]  # the APP's own queue object is consumed
    spec = resolve_spec(
        config,
        options.backend,
        queues[0] if queues else None,
        connect_timeout=options.connect_timeout,
    )
    if not queues:
        queues = [spec.queue_name]
    settings = worker_settings(config)
    metrics = start_metrics(_or(options.metrics_port, settings.metrics_port), options.metrics_host)
    runtime = WorkerRuntime(
        app,
        config,
        spec,
        queues,
        worker_config=_worker_config(options, settings),
        preset_queue=app.queue if own_queue else None,
        observers=(metrics,) if metrics is not None else (),
    )
    stopper = _Stopper(runtime.worker_config.shutdown_timeout)
    stopper.install()
    status: asyncio.Task[None] | None = None
    publisher: asyncio.Task[None] | None = None
    frozen = False
    thresholds = gc.get_threshold()
    try:
        await runtime.start(options.connect_timeout)
        # What start-up built (modules, the app, the clients: ~55k objects on RabbitMQ
        # with Redis stores) lives as long as the worker. Frozen, the cyclic collector's
        # full passes skip it: each one walked it all (~20M instructions), a stall of
        # several ms for every job waiting to start.
        gc.freeze()
        # Each job allocates a few dozen tracked objects, and the hundred jobs in flight
        # keep theirs alive, so at the default threshold (700) a young collection ran
        # every ~15 jobs and walked them all: 12,000 instructions a job, 7 % of a no-op
        # job on Redis. Collections every 10,000 allocations cost next to nothing and
        # hold back at most that many objects of cyclic garbage.
        gc.set_threshold(max(thresholds[0], YOUNG_COLLECTION_THRESHOLD), *thresholds[1:])
        frozen = True
        if collect:
            gc.enable()
        if metrics is not None:
            watch_runtime(metrics, runtime)
            publisher = publish_to_supervisor(metrics)
        if supervised:
            await _watch_supervisor(stopper.request)
            signal_ready()
        status = asyncio.create_task(_status(runtime, console, options, stopper))
        await stopper.requested.wait()
        return await _shutdown(runtime, stopper)
    finally:
        if status is not None:
            status.cancel()
            await asyncio.gather(status, return_exceptions=True)
        if publisher is not None:  # cancelling writes the last snapshot
            publisher.cancel()
            await asyncio.gather(publisher, return_exceptions=True)
        stopper.uninstall()
        await runtime.close()
        if frozen:  # the process may go on (the command run in-process, as tests do)
            gc.set_threshold(*thresholds)
            gc.unfreeze()


async def _shutdown(runtime: WorkerRuntime, stopper: _Stopper) -> int:
    timeout = runtime.worker_config.shutdown_timeout
    drain = asyncio.create_task(runtime.drain(timeout))
    hard = asyncio.create_task(stopper.hard.wait())
    done, _ = await asyncio.wait({drain, hard}, return_when=asyncio.FIRST_COMPLETED)
    if drain in done:
        hard.cancel()
        drain.result()
        totals = runtime.totals()
        logger.info("Worker %s stopped: %s.", runtime.worker_id, summary(totals))
        return 0
    # Second signal: cancel everything. A cancelled handler's job is nacked (requeued)
    # by the worker as its task unwinds; a handler that ignores cancellation keeps its
    # job until the lease expires, and then it is delivered again.
    drain.cancel()
    current = asyncio.current_task()
    others = [t for t in asyncio.all_tasks() if t is not current]
    for task in others:
        task.cancel()
    if others:
        await asyncio.wait(others, timeout=_HARD_STOP_GRACE)
    logger.warning("Worker %s stopped hard.", runtime.worker_id)
    return HARD_STOP_EXIT_CODE


class _Stopper:
    """Turns SIGTERM/SIGINT into a drain request, and a second one into a hard stop."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.requested = asyncio.Event()
        self.hard = asyncio.Event()
        self.reason = ""
        self._installed: list[signal.Signals] = []

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # not the main thread, or a platform without loop signals
            self._installed.append(sig)

    def uninstall(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            loop.remove_signal_handler(sig)
        self._installed.clear()

    def _on_signal(self, sig: signal.Signals) -> None:
        if not self.requested.is_set():
            self.request(f"received {sig.name}")
            logger.warning(
                "Received %s: draining (running jobs may finish for up to %g s; send it "
                "again to stop now).",
                sig.name,
                self.timeout,
            )
        elif not self.hard.is_set():
            logger.warning("Received %s again: stopping now.", sig.name)
            self.hard.set()

    def request(self, reason: str) -> None:
        if not self.requested.is_set():
            self.reason = reason
            self.requested.set()


async def _watch_supervisor(request: Callable[[str], None]) -> None:
    """Drain when the supervisor's end of our stdin closes (it exited or was killed)."""
    loop = asyncio.get_running_loop()

    class _Watch(asyncio.Protocol):
        def connection_lost(self, exc: Exception | None) -> None:
            request("the supervisor exited")

    with contextlib.suppress(OSError, ValueError):
        await loop.connect_read_pipe(_Watch, sys.stdin)


async def _status(
    runtime: WorkerRuntime, console: Console | None, options: WorkerOptions, stopper: _Stopper
) -> None:
    """Show a live status line on a terminal; log one now and then otherwise; end --burst."""
    # The rate is taken over the last few seconds, so the number does not jump around.
    window: collections.deque[WorkerTotals] = collections.deque(maxlen=_RATE_WINDOW)
    window.append(runtime.totals())
    last_logged = window[0]
    live = None
    if console is not None:
        from rich.live import Live  # noqa: PLC0415 - a terminal only (see _output)

        live = Live(console=console, refresh_per_second=4, transient=True)
    with contextlib.ExitStack() as stack:
        if live is not None:
            stack.enter_context(live)
        while True:
            await asyncio.sleep(_STATUS_REFRESH)
            current = runtime.totals()
            rate = _rate(window[0], current)
            window.append(current)
            if live is not None:
                live.update(_status_text(runtime, current, rate))
            elif current.at - last_logged.at >= _PLAIN_STATUS_EVERY and current != last_logged:
                logger.info("Status: %s", _status_plain(current, _rate(last_logged, current)))
                last_logged = current
            if options.burst and current.in_flight == 0 and await _queues_empty(runtime):
                stopper.request("the queues are empty (--burst)")
                logger.info("Queues are empty; stopping (--burst).")
                return


_BURST_RECHECK = 0.2
"""Seconds between the two readings that must both find nothing before --burst ends."""


async def _queues_empty(runtime: WorkerRuntime) -> bool:
    """Whether the queues hold no job, in two readings `_BURST_RECHECK` apart.

    One reading can miss a job on its way between two places the backend counts (on
    RabbitMQ, a retry moving from a delay queue to the queue, read one after the
    other): a second one, with nothing processed in between, confirms.
    """
    before = runtime.totals().processed
    for reading in range(2):
        if reading:
            await asyncio.sleep(_BURST_RECHECK)
        for queue in runtime.queues:
            if await queue.count(queue.queue_name) > 0:
                return False
    current = runtime.totals()
    return current.in_flight == 0 and current.processed == before


def _rate(before: WorkerTotals, after: WorkerTotals) -> float:
    elapsed = after.at - before.at
    return (after.processed - before.processed) / elapsed if elapsed > 0 else 0.0


def summary(totals: WorkerTotals) -> str:
    """``N processed: N succeeded, N retried, ...``: the attempts, by outcome.

    The outcomes are ``lexigram_tasks_jobs_total``'s, named as it labels them, and add
    up to the processed count, so the exit line reads like ``/metrics``.
    """
    outcomes = ", ".join(f"{n} {name}" for name, n in totals.outcome_counts().items())
    return f"{totals.processed} processed: {outcomes}"


def _status_plain(totals: WorkerTotals, rate: float) -> str:
    outcomes = " ".join(f"{name}={n}" for name, n in totals.outcome_counts().items())
    return f"processed={totals.processed} {outcomes} in_flight={totals.in_flight} rate={rate:.1f}/s"


# How the live status line shows each outcome (a count of 0 is dim).
_OUTCOME_STYLES = {
    "succeeded": "green",
    "retried": "yellow",
    "dead_lettered": "red",
    "cancelled": "yellow",
    "released": "yellow",
    "lost": "red",
}


def _status_text(runtime: WorkerRuntime, totals: WorkerTotals, rate: float) -> Text:
    from rich.text import Text  # noqa: PLC0415 - a terminal only (see _output)

    # One line whatever the terminal's width: the end is cut rather than wrapped.
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("● ", style="green")
    text.append(f"{rate:.1f} jobs/s  ", style="bold")
    counts = [("processed", totals.processed, "bold")]
    counts += [
        (name, n, _OUTCOME_STYLES[name] if n else "dim")
        for name, n in totals.outcome_counts().items()
    ]
    counts.append(("in_flight", totals.in_flight, "cyan"))
    for label, value, style in counts:
        text.append(f"{label} ")
        text.append(f"{value}", style=style)
        text.append("  ")
    text.append(f"{','.join(runtime.queue_names)} @ {describe(runtime.spec)}", style="dim")
    return text
