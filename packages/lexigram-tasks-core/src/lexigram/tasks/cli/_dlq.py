"""``lexigram-tasks dlq ...``: list, show, retry and purge dead-lettered jobs.

These commands work on the backend's shared dead-letter storage (its
``create_dlq_backend``). A backend without one (memory keeps dead letters inside the
worker process; RabbitMQ offers none) has nothing to show from another process, and
the commands say so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import click
from rich.syntax import Syntax

from lexigram.contracts.tasks import FailureRecord, Job, TaskBackendSpec
from lexigram.tasks._backends import probe
from lexigram.tasks.admin import (
    dead_letter_row,
    dead_letter_worker,
    delete_dead_letter,
    find_dead_letter,
    requeued_line,
    retry_dead_letter,
    retry_dead_letters_reported,
)
from lexigram.tasks.cli._context import (
    Stores,
    default_backend,
    enqueues_reported,
    existing_only,
    load_config,
    open_stores,
    release_backend,
    resolve_spec,
)
from lexigram.tasks.cli._errors import CLIError
from lexigram.tasks.cli._event_loop import run_async
from lexigram.tasks.cli._opener import QueueOpener
from lexigram.tasks.cli._options import (
    F,
    FiniteFloatRange,
    backend_option,
    config_option,
    connect_timeout_option,
    debug_option,
    json_option,
)
from lexigram.tasks.cli._output import (
    echo_json,
    mapping_rows,
    setup_logging,
    stdout_console,
    table,
    when,
)
from lexigram.tasks.dlq import PersistentDeadLetterQueue

if TYPE_CHECKING:
    from lexigram.tasks.config import TaskConfig

T = TypeVar("T")

EPILOG = """\b
Examples:
  lexigram-tasks dlq list --backend redis://localhost:6379/0
  lexigram-tasks dlq show 5f0c...e1 -b redis://localhost:6379/0
  lexigram-tasks dlq retry 5f0c...e1 -b redis://localhost:6379/0
  lexigram-tasks dlq retry-all --task send_email -b postgresql://app@db/app
  lexigram-tasks dlq delete 5f0c...e1 --yes -b redis://localhost:6379/0
  lexigram-tasks dlq purge --older-than-hours 72 --yes -b redis://localhost:6379/0
"""


def _common(func: F) -> F:
    for decorate in (debug_option, connect_timeout_option, config_option, backend_option):
        func = decorate(func)
    return func


@click.group("dlq", epilog=EPILOG)
def dlq_group() -> None:
    """Inspect and recover jobs that failed for good (the dead-letter queue)."""


class _Session:
    """A backend's DLQ storage plus queues to put jobs back on, opened for one command."""

    def __init__(self, spec: TaskBackendSpec, stores: Stores, config: TaskConfig | None) -> None:
        self.spec = spec
        self.stores = stores
        # A dead letter goes back where its job's .delay() would send it: onto another
        # configured backend when its queue is that backend's.
        self.queue = QueueOpener(config, spec)
        # Listing and reading create nothing (the spec's must_exist stays).
        self.reading = QueueOpener(config, spec, sending=False)

    def dlq(self, queue_name: str | None = None) -> PersistentDeadLetterQueue:
        queue = self.reading(queue_name)
        return PersistentDeadLetterQueue(backend=self.stores.dlq_backend, queue=queue)

    async def close(self) -> None:
        await self.stores.close()
        await self.queue.close()
        await self.reading.close()
        await release_backend(self.spec)


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
    # The result store too: a retried job's failed result is deleted from it.
    stores = open_stores(spec, "dlq_backend", "result_store")
    if stores.dlq_backend is None:
        msg = (
            f"The {spec.type} backend keeps no dead letters outside its worker processes (it "
            "has no shared DLQ storage), so there is nothing to read from here. Use a backend "
            "that stores them (--backend redis://localhost:6379/0, postgresql://... or "
            "sqlite:///tasks.db), or "
            "give this one a store for them if its guide offers one."
        )
        raise CLIError(msg)

    async def go() -> T:
        session = _Session(spec, stores, config)
        try:
            await probe(session.reading(), spec, timeout)
            return await action(session)
        finally:
            await session.close()

    return run_async(go())


@dlq_group.command("list")
@click.option("--limit", "-n", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--task", "task_name", metavar="NAME", help="Only jobs of this task.")
@json_option
@_common
def list_command(
    *,
    limit: int,
    task_name: str | None,
    as_json: bool,
    backend: str | None,
    config_path: str | None,
    connect_timeout: float,
    debug: bool,
) -> None:
    """List dead-lettered jobs, newest first (``total``: how many match, ``--task`` applied)."""

    async def action(session: _Session) -> tuple[list[FailureRecord], int, int]:
        dlq = session.dlq()
        size = await dlq.size()
        records = await dlq.list_failed(limit=limit, job_name=task_name)
        matching = size
        if task_name is not None:
            matching = len(await dlq.list_failed(limit=max(size, 1), job_name=task_name))
        return records, matching, size

    records, matching, size = _run(backend, config_path, connect_timeout, debug, action)
    rows = [dead_letter_row(r) for r in records]
    if as_json:
        echo_json({"total": matching, "jobs": rows})
        return
    console = stdout_console()
    if not rows:
        console.print("The dead-letter queue is empty." if not size else "No job matches.")
        return
    scope = f"of {task_name} " if task_name is not None else ""
    beyond = f"; {size} in all" if task_name is not None else ""
    console.print(
        table(
            f"Dead letters {scope}({len(rows)} of {matching}{beyond})",
            ["id", "task", "queue", "attempts", "reason", "failed", "error"],
            [
                (
                    r["id"],
                    r["task"],
                    r["queue"],
                    r["attempts"],
                    r["reason"],
                    when(r["failed_at"]),
                    _short(r["error"]),
                )
                for r in rows
            ],
        )
    )


def _short(text: str, width: int = 60) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= width else line[: width - 1] + "…"


async def _get(session: _Session, job_id: str) -> FailureRecord:
    """The dead-lettered job whose id is `job_id` or starts with it (a unique prefix)."""
    return await find_dead_letter(session.stores.dlq_backend, session.reading(), job_id)


@dlq_group.command("show")
@click.argument("job_id")
@json_option
@_common
def show_command(
    *,
    job_id: str,
    as_json: bool,
    backend: str | None,
    config_path: str | None,
    connect_timeout: float,
    debug: bool,
) -> None:
    """Show one dead-lettered job: arguments, error, attempts and traceback.

    JOB_ID is the job's id or a unique prefix of it, as `dlq list` shows.
    """

    async def action(session: _Session) -> FailureRecord:
        return await _get(session, job_id)

    record = _run(backend, config_path, connect_timeout, debug, action)
    if as_json:
        echo_json(record.to_dict())
        return
    job = record.job
    details = {
        "id": job.id,
        "task": job.name,
        "queue": job.queue_name,
        "args": list(job.args),
        "kwargs": job.kwargs,
        "priority": job.priority,
        "attempts": record.attempt_count,
        "max retries": record.metadata.get("max_retries", job.max_retries),
        "failed": when(record.failed_at),
        "created": when(job.created_at),
        "reason": record.metadata.get("reason"),
        "worker": dead_letter_worker(record.metadata),
        "error": record.error,
    }
    console = stdout_console()
    console.print(table(f"Dead-lettered job {job.id}", ["field", "value"], mapping_rows(details)))
    if record.traceback:
        console.print(Syntax(record.traceback.rstrip(), "pytb", word_wrap=True))


@dlq_group.command("retry")
@click.argument("job_id")
@click.option("--queue", "-q", metavar="NAME", help="Put it on this queue instead of its own.")
@_common
def retry_command(
    *,
    job_id: str,
    queue: str | None,
    backend: str | None,
    config_path: str | None,
    connect_timeout: float,
    debug: bool,
) -> None:
    """Move a dead-lettered job back onto its queue (retry count reset).

    JOB_ID is the job's id or a unique prefix of it, as `dlq list` shows.
    """

    async def action(session: _Session) -> tuple[Job, str]:
        with enqueues_reported():
            return await retry_dead_letter(
                session.stores.dlq_backend,
                session.queue,
                job_id,
                queue_name=queue,
                result_store=session.stores.result_store,
            )

    job, target = _run(backend, config_path, connect_timeout, debug, action)
    click.echo(requeued_line(job, target))


@dlq_group.command("retry-all")
@click.option("--task", "task_name", metavar="NAME", help="Only jobs of this task.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_common
def retry_all_command(
    *,
    task_name: str | None,
    yes: bool,
    backend: str | None,
    config_path: str | None,
    connect_timeout: float,
    debug: bool,
) -> None:
    """Move every dead-lettered job (or every one of a task) back onto its queue."""
    if not yes:
        what = f"every dead-lettered {task_name!r} job" if task_name else "every dead-lettered job"
        click.confirm(f"Requeue {what}?", abort=True)

    async def action(session: _Session) -> str:
        with enqueues_reported():
            return await retry_dead_letters_reported(
                session.stores.dlq_backend,
                session.queue,
                task_name=task_name,
                result_store=session.stores.result_store,
            )

    click.echo(_run(backend, config_path, connect_timeout, debug, action))


@dlq_group.command("delete")
@click.argument("job_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_common
def delete_command(
    *,
    job_id: str,
    yes: bool,
    backend: str | None,
    config_path: str | None,
    connect_timeout: float,
    debug: bool,
) -> None:
    """Delete one dead-lettered job for good (it is not run again).

    JOB_ID is the job's id or a unique prefix of it, as `dlq list` shows.
    """

    async def find(session: _Session) -> FailureRecord:
        return await _get(session, job_id)

    async def delete(session: _Session) -> tuple[FailureRecord, bool]:
        record = await _get(session, wanted)
        return record, bool(await delete_dead_letter(session.stores.dlq_backend, [record.job.id]))

    wanted = job_id
    if not yes:
        # Asked once the prefix is resolved (and outside the event loop), so the question
        # names the whole id.
        found = _run(backend, config_path, connect_timeout, debug, find)
        wanted = found.job.id
        click.confirm(f"Delete dead-lettered job {wanted} ({found.job.name}) for good?", abort=True)
    record, deleted = _run(backend, config_path, connect_timeout, debug, delete)
    full_id, name = record.job.id, record.job.name
    if not deleted:
        msg = f"Job {full_id!r} left the dead-letter queue meanwhile; nothing to do."
        raise CLIError(msg)
    click.echo(f"Deleted dead-lettered job {full_id} ({name}).")


@dlq_group.command("purge")
@click.option(
    "--older-than-hours",
    type=FiniteFloatRange(min=0),
    metavar="HOURS",
    help="Delete records older than this. Default: 168 (one week).",
)
@click.option("--all", "purge_all", is_flag=True, help="Delete every record, whatever its age.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_common
def purge_command(
    *,
    older_than_hours: float | None,
    purge_all: bool,
    yes: bool,
    backend: str | None,
    config_path: str | None,
    connect_timeout: float,
    debug: bool,
) -> None:
    """Delete dead-lettered jobs for good (old ones, or all with --all)."""
    if purge_all and older_than_hours is not None:
        msg = "Pass either --all or --older-than-hours, not both."
        raise CLIError(msg)
    if not yes:
        what = "every dead-lettered job" if purge_all else "old dead-lettered jobs"
        click.confirm(f"Delete {what} for good?", abort=True)

    async def action(session: _Session) -> int:
        dlq = session.dlq()
        if purge_all:
            return await dlq.clear()
        return await dlq.purge(older_than_hours=older_than_hours)

    count = _run(backend, config_path, connect_timeout, debug, action)
    click.echo(f"Deleted {count} dead-lettered job(s).")
