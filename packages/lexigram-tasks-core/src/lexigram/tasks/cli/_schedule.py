"""``lexigram-tasks schedule ...``: list, remove, pause, resume and run stored schedules.

These commands work on the backend's schedule store (its ``create_scheduler_store``),
where every scheduler saves its schedules with the namespace of the application that
owns them. A running scheduler re-reads its schedules before each check, so a removed
or paused schedule does not fire again. A backend without a schedule store (memory;
RabbitMQ without ``stores``) keeps schedules inside the scheduler process, and the
commands say so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from lexigram.contracts.tasks import TaskBackendSpec, TaskQueueProtocol
from lexigram.tasks._backends import probe
from lexigram.tasks.admin import (
    UNOWNED,
    find_schedule,
    list_schedules,
    outcome_text,
    pause_schedule,
    resume_schedule,
    run_schedule_now,
    schedule_name,
)
from lexigram.tasks.cli._context import (
    Stores,
    close_quietly,
    default_backend,
    enqueues_reported,
    existing_only,
    load_config,
    open_queue,
    open_stores,
    release_backend,
    resolve_spec,
)
from lexigram.tasks.cli._errors import CLIError
from lexigram.tasks.cli._event_loop import run_async
from lexigram.tasks.cli._opener import QueueOpener
from lexigram.tasks.cli._options import (
    F,
    backend_option,
    config_option,
    connect_timeout_option,
    debug_option,
    json_option,
)
from lexigram.tasks.cli._output import echo_json, setup_logging, stdout_console, table, when

T = TypeVar("T")

EPILOG = """\b
Examples:
  lexigram-tasks schedule list -b redis://localhost:6379/0
  lexigram-tasks schedule pause scheduled:nightly_cleanup -b redis://localhost:6379/0
  lexigram-tasks schedule resume scheduled:night -b redis://localhost:6379/0   (a unique prefix)
  lexigram-tasks schedule run-now myapp.tasks/scheduled:report -b redis://localhost:6379/0
  lexigram-tasks schedule remove scheduled:old_report --namespace myapp.tasks -b redis://...

\b
A schedule is named by its id (as `schedule list` shows it), a unique prefix of it, or
NAMESPACE/ID when two applications use the same id.
"""

_COLUMNS = (
    "namespace",
    "schedule",
    "task",
    "queue",
    "cron",
    "state",
    "next run",
    "last run",
    "outcome",
)


def _common(func: F) -> F:
    decorators = (
        debug_option,
        connect_timeout_option,
        config_option,
        backend_option,
        click.option(
            "--namespace",
            "-n",
            metavar="NAME",
            help="Only schedules of this application (as `schedule list` shows it).",
        ),
    )
    for decorate in decorators:
        func = decorate(func)
    return func


@click.group("schedule", epilog=EPILOG)
def schedule_group() -> None:
    """List, pause, resume, remove or run now the cron schedules stored on a backend."""


def schedules_table(title: str, rows: list[dict[str, Any]]) -> Any:
    """The table `schedule list` and `inspect` print."""
    return table(
        title,
        [
            "namespace",
            "schedule",
            "task",
            "queue",
            "cron",
            "state",
            "next run",
            "last run",
            "outcome",
        ],
        [
            (
                r["namespace"] or UNOWNED,
                r["id"],
                r["task"],
                r["queue"] or "-",
                r["cron"],
                "active" if r["enabled"] else "paused",
                when(r["next_run"]) if r["enabled"] else "-",
                when(r["last_run"]),
                outcome_text(r),
            )
            for r in rows
        ],
    )


@dataclass(slots=True)
class _Session:
    """The backend's schedule store, opened for one command."""

    spec: TaskBackendSpec
    stores: Stores
    queue: TaskQueueProtocol
    # The records `rows` read, by store key: a command reads the store once.
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    opener: QueueOpener | None = None

    @property
    def store(self) -> Any:
        return self.stores.scheduler_store

    async def rows(self, namespace: str | None) -> list[dict[str, Any]]:
        rows, self.records = await list_schedules(self.store, namespace)
        return rows

    def queue_for(self, name: str | None) -> TaskQueueProtocol:
        """The queue `name` leads to, as ``.delay()`` routes it (see `QueueOpener`)."""
        assert self.opener is not None  # noqa: S101 - set by _run
        return self.opener(name)


def _run(
    backend: str | None,
    config_path: str | None,
    timeout: float,
    debug: bool,
    action: Callable[[_Session], Awaitable[T]],
) -> T:
    setup_logging("debug" if debug else "critical")
    backend = default_backend(config_path, None, backend)
    # A SQLite file that does not exist is refused rather than created (see existing_only).
    config = load_config(config_path, backend=backend)
    spec = existing_only(resolve_spec(config, backend, connect_timeout=timeout))
    stores = open_stores(spec, "scheduler_store")
    if stores.scheduler_store is None:
        msg = (
            f"The {spec.type} backend keeps schedules inside the scheduler process (it has "
            "no schedule store), so there is nothing to manage from here. Use a backend "
            "that stores them: --backend redis://localhost:6379/0, postgresql://... or "
            "sqlite:///path.db."
        )
        raise CLIError(msg)

    async def go() -> T:
        queue = open_queue(spec)
        try:
            await probe(queue, spec, timeout)
            opener = QueueOpener(config, spec, queue)
            session = _Session(spec, stores, queue, opener=opener)
            try:
                return await action(session)
            finally:
                await opener.close()
        finally:
            await stores.close()
            await close_quietly(queue)
            await release_backend(spec)

    return run_async(go())


@schedule_group.command("list", short_help="Show every stored schedule and its last run.")
@json_option
@_common
def list_command(
    *,
    as_json: bool,
    namespace: str | None,
    backend: str | None,
    config_path: str | None,
    connect_timeout: float,
    debug: bool,
) -> None:
    """List the stored schedules: owner, task, queue, cron, state, next and last run.

    The namespace is the application that owns a schedule; only its schedulers fire it.
    "-" marks a schedule saved by an older version, which no scheduler fires until one
    that declares the same id takes it over.
    """

    async def action(session: _Session) -> list[dict[str, Any]]:
        return await session.rows(namespace)

    rows = _run(backend, config_path, connect_timeout, debug, action)
    if as_json:
        echo_json(rows)
        return
    console = stdout_console()
    if not rows:
        console.print("No schedule is stored." if namespace is None else "No schedule matches.")
        return
    console.print(schedules_table(f"Schedules ({len(rows)})", rows))


def _one(
    ident: str,
    namespace: str | None,
    options: tuple[str | None, str | None, float, bool],
    change: Callable[[_Session, dict[str, Any]], Awaitable[str]],
) -> None:
    """Find the schedule `ident` names, apply `change` to it and print what it says."""

    async def action(session: _Session) -> str:
        row = find_schedule(await session.rows(namespace), ident)
        return await change(session, row)

    backend, config_path, timeout, debug = options
    click.echo(_run(backend, config_path, timeout, debug, action))


@schedule_group.command("remove", short_help="Delete a stored schedule.")
@click.argument("schedule_id")
@_common
def remove_command(
    *,
    schedule_id: str,
    namespace: str | None,
    backend: str | None,
    config_path: str | None,
    connect_timeout: float,
    debug: bool,
) -> None:
    """Delete a stored schedule; its running scheduler stops firing it at its next check.

    A schedule declared in code (@scheduled, or scheduled at startup) is saved again
    when its scheduler restarts: remove it from the code too, or pause it instead.
    """

    async def change(session: _Session, row: dict[str, Any]) -> str:
        await session.store.delete_job(row["key"])
        return f"Removed schedule {schedule_name(row)}."

    options = (backend, config_path, connect_timeout, debug)
    _one(schedule_id, namespace, options, change)


@schedule_group.command("pause", short_help="Stop a schedule firing until it is resumed.")
@click.argument("schedule_id")
@_common
def pause_command(
    *,
    schedule_id: str,
    namespace: str | None,
    backend: str | None,
    config_path: str | None,
    connect_timeout: float,
    debug: bool,
) -> None:
    """Stop a schedule from firing until `schedule resume` (kept across restarts)."""

    async def change(session: _Session, row: dict[str, Any]) -> str:
        if not await pause_schedule(session.store, row):
            return f"Schedule {schedule_name(row)} is already paused."
        return f"Paused schedule {schedule_name(row)}."

    options = (backend, config_path, connect_timeout, debug)
    _one(schedule_id, namespace, options, change)


@schedule_group.command("resume", short_help="Let a paused schedule fire again.")
@click.argument("schedule_id")
@_common
def resume_command(
    *,
    schedule_id: str,
    namespace: str | None,
    backend: str | None,
    config_path: str | None,
    connect_timeout: float,
    debug: bool,
) -> None:
    """Let a paused schedule fire again, from its next occurrence after now.

    Occurrences that passed while it was paused are not caught up.
    """

    async def change(session: _Session, row: dict[str, Any]) -> str:
        next_run = await resume_schedule(session.store, row, session.records[row["key"]])
        if next_run is None:
            return f"Schedule {schedule_name(row)} is not paused."
        return f"Resumed schedule {schedule_name(row)}; it next fires at {when(next_run)}."

    options = (backend, config_path, connect_timeout, debug)
    _one(schedule_id, namespace, options, change)


@schedule_group.command("run-now", short_help="Enqueue one job of a schedule now.")
@click.argument("schedule_id")
@_common
def run_now_command(
    *,
    schedule_id: str,
    namespace: str | None,
    backend: str | None,
    config_path: str | None,
    connect_timeout: float,
    debug: bool,
) -> None:
    """Enqueue one job of a schedule now, on its queue (paused or not).

    The job is the one the schedule's next occurrence would enqueue, marked
    ``trigger: run-now`` in its metadata; the schedule's own occurrences are unchanged.
    """

    async def change(session: _Session, row: dict[str, Any]) -> str:
        record = session.records[row["key"]]
        with enqueues_reported():
            job, target = await run_schedule_now(session.store, row, record, session.queue_for)
        return f"Enqueued job {job.id} ({job.name}) of schedule {schedule_name(row)} on {target!r}."

    options = (backend, config_path, connect_timeout, debug)
    _one(schedule_id, namespace, options, change)
