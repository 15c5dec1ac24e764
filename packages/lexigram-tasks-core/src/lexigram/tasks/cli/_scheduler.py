"""``lexigram-tasks scheduler APP``: run the cron scheduler alone, enqueuing due jobs.

Each schedule keeps a stable id (``scheduled:<task name>`` for ``@scheduled`` functions,
the id `TaskProvider` gives them too), and every fire is enqueued with an idempotency key
made of that id and the occurrence, so several scheduler processes on one backend (this
command's, or a provider's) fire each occurrence once. Schedules are saved in the backend's schedule
store when it has one (Redis, PostgreSQL, SQLite) under the namespace of the APP (its
module, or ``--namespace``), where ``inspect`` and ``schedule list`` show them; a
scheduler fires only its own namespace's schedules, and keeps the paused state and
last run its stored schedules had.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import ExitStack
from pathlib import Path

import click

from lexigram.contracts.tasks import (
    Err,
    Job,
    Ok,
    Result,
    TaskBackendSpec,
    TaskQueueError,
)
from lexigram.tasks._backends import QueueCheck, TaskBackendRegistry, probe_all
from lexigram.tasks.cli._app import LoadedApp, load_app
from lexigram.tasks.cli._context import (
    default_backend,
    describe,
    enqueues_reported,
    load_config,
    refuse_disabled,
    release_backend,
    resolve_spec,
)
from lexigram.tasks.cli._errors import CLIError
from lexigram.tasks.cli._event_loop import run_async
from lexigram.tasks.cli._named import backend_field
from lexigram.tasks.cli._opener import QueueOpener
from lexigram.tasks.cli._options import (
    backend_option,
    config_option,
    connect_timeout_option,
    debug_option,
    log_level_option,
)
from lexigram.tasks.cli._output import setup_logging
from lexigram.tasks.config import TaskConfig
from lexigram.tasks.decorators import enqueue_job
from lexigram.tasks.di._stack import build_stack
from lexigram.tasks.scheduling import TaskScheduler

logger = logging.getLogger("lexigram.tasks.cli")

EPILOG = """\b
Examples:
  lexigram-tasks scheduler myapp.tasks --backend redis://localhost:6379/0
  lexigram-tasks scheduler myapp.tasks:provider --config config/tasks.yaml
  lexigram-tasks scheduler myapp.tasks --namespace billing -b redis://localhost:6379/0

\b
In myapp/tasks.py:
  @scheduled("0 3 * * *")          # every day at 03:00 (UTC unless configured)
  async def nightly_cleanup() -> None: ...
"""


@click.command("scheduler", epilog=EPILOG)
@click.argument("app")
@backend_option
@click.option("--queue", "-q", metavar="NAME", help="Queue to enqueue on. Default: the config's.")
@click.option(
    "--namespace",
    "-n",
    metavar="NAME",
    help="The application owning the schedules (only its schedulers fire them). Default: "
    "tasks.scheduler.namespace, else APP's module (myapp.tasks for myapp.tasks:app).",
)
@log_level_option("info")
@config_option
@connect_timeout_option
@debug_option
def scheduler_command(
    *,
    app: str,
    backend: str | None,
    queue: str | None,
    namespace: str | None,
    log_level: str,
    config_path: str | None,
    connect_timeout: float,
    debug: bool,
) -> None:
    """Run the cron schedules of APP, enqueuing each due job, until SIGTERM/SIGINT.

    APP is the same as for `worker`; its @scheduled functions (or its TaskProvider's
    schedules) are what runs. Run workers separately to execute the jobs.
    """
    setup_logging("debug" if debug else log_level)
    loaded = load_app(app)
    if loaded.explicit_settings.get("scheduler.enabled") is False:
        msg = (
            f"APP {app!r} is a TaskProvider built with enable_scheduler=False, so it runs no "
            "scheduler. Build it with enable_scheduler=True (or without the argument) to run "
            "its schedules here."
        )
        raise CLIError(msg)
    if not loaded.schedules:
        msg = (
            f"APP {app!r} declares no schedules. Decorate a task with @scheduled('<cron>') "
            "(e.g. @scheduled('*/5 * * * *')), or schedule it on your TaskProvider."
        )
        raise CLIError(msg)
    backend = default_backend(config_path, loaded.config, backend)
    config = load_config(config_path, loaded.config, backend=backend)
    applied = loaded.with_explicit_settings(config)
    config = config if applied is None else applied
    refuse_disabled(config, "scheduler", scheduler=True)
    spec = resolve_spec(config, backend, queue, connect_timeout=connect_timeout)
    owner = namespace or config.scheduler.namespace or app_namespace(loaded)
    run_async(_run(loaded, config, spec, connect_timeout, owner))


def app_namespace(app: LoadedApp) -> str:
    """The default namespace of APP's schedules: its module.

    ``myapp.tasks:app`` and ``myapp.tasks`` both give ``myapp.tasks``; for a YAML config
    APP, the module its ``extra.app`` names first.
    """
    source = app.source
    if source.lower().endswith((".yaml", ".yml")) or Path(source).is_file():
        refs = app.config.extra.get("app") if app.config is not None else None
        if isinstance(refs, str):
            source = refs
        elif isinstance(refs, list) and refs:
            source = str(refs[0])
    return source.partition(":")[0]


async def _declare(scheduler: TaskScheduler, app: LoadedApp) -> None:
    """Schedule what APP declares, keeping the state its stored schedules had.

    Declared first, then restored (which merges the stored state into them, takes
    over records an older version saved without a namespace and saves them), as
    `TaskProvider` does at boot; stored schedules APP does not declare any more are
    then left out.
    """
    for schedule in app.schedules:
        try:
            scheduler.schedule_job_sync(
                schedule.template, schedule.cron, schedule.schedule_id, timezone=schedule.timezone
            )
        except ValueError as exc:
            msg = f"Schedule {schedule.schedule_id!r} ({schedule.cron!r}): {exc}"
            raise CLIError(msg) from None
    if scheduler.store is None:
        return
    await scheduler.restore_from_store()  # merges the stored state, saves the new ones
    declared = {schedule.schedule_id for schedule in app.schedules}
    for job in scheduler.get_scheduled_jobs():
        if job.job_id not in declared:
            scheduler.unschedule_job_sync(job.job_id)
            logger.warning(
                "Stored schedule %r of namespace %r is not declared by %s any more; it does "
                "not fire. Remove it with `lexigram-tasks schedule remove %s`.",
                job.job_id,
                scheduler.namespace,
                app.source,
                job.key,
            )


async def _run(
    app: LoadedApp, config: TaskConfig, spec: TaskBackendSpec, timeout: float, namespace: str
) -> None:
    # The same builder as TaskProvider's: queue plus the backend's scheduler store.
    stack = build_stack(
        spec.name,
        spec,
        field=backend_field(spec),
        registry=TaskBackendRegistry.with_defaults(),
        with_scheduler_store=True,
    )
    queue = stack.queue
    # Each fire goes where its task's .delay() sends it: its declared queue, on another
    # configured backend when the name is that backend's (as a provider's scheduler).
    route = QueueOpener(config, spec, queue)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        installed.append(sig)
    scheduler: TaskScheduler | None = None
    reporting = ExitStack()
    try:
        # Every configured backend answers before a schedule fires, as at a provider's boot.
        await probe_all([QueueCheck(queue, spec), *route.configured_backends().values()], timeout)
        scheduler = TaskScheduler.from_config(
            config.scheduler,
            store=stack.scheduler_store,
            namespace=namespace,
            queue_name=spec.queue_name,
        )
        await _declare(scheduler, app)
        for job in scheduler.get_scheduled_jobs():
            logger.info(
                "Schedule %s: %s at %r (%s)%s.",
                job.job_id,
                job.job_template.name,
                job.cron_expression,
                job.timezone,
                "" if job.enabled else ", paused",
            )

        async def enqueue(job: Job) -> Result[str, TaskQueueError]:
            try:
                job_id = (await enqueue_job(route.route(job), job)).id
            except TaskQueueError as exc:
                return Err(exc)
            logger.info("Enqueued %s as job %s.", job.name, job_id)
            return Ok(job_id)

        reporting.enter_context(enqueues_reported())  # plugins see each fire's job queued
        await scheduler.start_scheduler(enqueue)
        logger.info(
            "Scheduler running %d schedule(s) of namespace %r onto %r on %s; Ctrl-C to stop.",
            len(app.schedules),
            namespace,
            spec.queue_name,
            describe(spec),
        )
        await stop.wait()
        logger.info("Stopping the scheduler.")
    finally:
        if scheduler is not None:
            # As long as a provider's shutdown gives its scheduler's last enqueue.
            await scheduler.stop_scheduler(timeout=config.worker.shutdown_timeout)
        reporting.close()
        for sig in installed:
            loop.remove_signal_handler(sig)
        await route.close()
        await stack.close()
        await release_backend(spec)
