"""``lexigram-tasks job ...``: a job's status and result, wait for its result, or cancel it.

ID is the whole job id or a unique prefix of it (see `_lookup`). The commands read
what workers of another process wrote: the job as its queue holds it,
the backend's result store and its progress store, through a `JobHandle` rebuilt from
the id. ``status`` and ``cancel`` need only the queue: on a backend without a result
store they know the jobs it holds (waiting or running), not finished ones. ``result``
and ``wait`` need stored results, and a process-local backend (memory) has nothing to
show from another process at all; the commands say so.

Exit codes: 0 when the job succeeded (or, for ``status``, when it is known; for
``cancel``, when it was cancelled), 1 when it failed for good or was cancelled (for
``cancel``: nothing was cancelled, it had finished or its backend cannot stop a running
job), 2 for an error of the command (unknown id, no result in time).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
)

from lexigram.contracts.tasks import (
    CancelOutcome,
    JobResult,
    TaskNotFoundError,
    WorkflowRunStoreProtocol,
)
from lexigram.tasks._backends import probe
from lexigram.tasks.admin import OperationError, job_status
from lexigram.tasks.cli._context import (
    close_quietly,
    default_backend,
    existing_only,
    is_process_local,
    load_config,
    open_queue,
    open_store,
    open_stores,
    release_backend,
    resolve_spec,
)
from lexigram.tasks.cli._errors import CLIError
from lexigram.tasks.cli._event_loop import run_async
from lexigram.tasks.cli._lookup import resolve_job_id
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
    setup_logging,
    stderr_console,
    stdout_console,
    when,
)
from lexigram.tasks.handles import JobHandle
from lexigram.tasks.workflows import register_workflow_store

T = TypeVar("T")

EPILOG = """\b
Examples:
  lexigram-tasks job status 5f0c...e1 -b redis://localhost:6379/0
  lexigram-tasks job result 5f0c...e1 -b redis://localhost:6379/0
  lexigram-tasks job wait 5f0c...e1 --timeout 60 -b redis://localhost:6379/0
  lexigram-tasks job wait 5f0c...e1 --follow -b redis://localhost:6379/0
  lexigram-tasks job cancel 5f0c...e1 -b redis://localhost:6379/0
  lexigram-tasks job status 0193a2b4-7c1d-7e2f -b redis://localhost:6379/0   (a unique prefix)
"""

FOLLOW_INTERVAL = 0.2
"""Seconds between reads of the progress store while ``wait --follow`` draws the bar."""


_queue_option = click.option(
    "--queue",
    "-q",
    "queue_name",
    metavar="NAME",
    help="The queue the job was enqueued on. Default: the config's queue_name.",
)


def _common(func: F) -> F:
    for decorate in (
        debug_option,
        connect_timeout_option,
        config_option,
        _queue_option,
        backend_option,
    ):
        func = decorate(func)
    return func


@click.group("job", epilog=EPILOG)
def job_group() -> None:
    """Show a job's status or result, wait for its result, or cancel it."""


def _run(
    backend: str | None,
    config_path: str | None,
    timeout: float,
    debug: bool,
    action: Callable[[JobHandle[Any]], Awaitable[T]],
    *,
    job_id: str,
    queue_name: str | None,
    ends_workflow_steps: bool = False,
    needs_results: str | None = None,
) -> tuple[str, T]:
    """Run `action` on the job named by `job_id` (its id or a unique prefix of it).

    `needs_results` names the command when it reads stored results (``"result"``,
    ``"wait"``): it is refused on a backend without a result store.

    Returns:
        The job's whole id and what `action` returned.
    """
    setup_logging("debug" if debug else "critical")
    backend = default_backend(config_path, None, backend)
    # A SQLite file that does not exist is refused rather than created (see existing_only).
    config = load_config(config_path, backend=backend)
    spec = existing_only(resolve_spec(config, backend, queue_name, connect_timeout=timeout))
    stores = open_stores(spec, "result_store")
    if stores.result_store is None and is_process_local(spec):
        msg = (
            f"The {spec.type} backend keeps job results and states inside its worker "
            "processes (it has no shared result store), so there is nothing to read or act "
            "on from here. Give it a store for them if its guide offers one (RabbitMQ: "
            "options.stores: redis://...), or use a backend that keeps them: --backend "
            "redis://localhost:6379/0, postgresql://... or sqlite:///tasks.db."
        )
        raise CLIError(msg)
    if stores.result_store is None and needs_results is not None:
        msg = (
            f"The {spec.type} backend has no shared result store, so `job {needs_results}` "
            "has no stored result to read (`job status` and `job cancel` work from its "
            "queue alone). Give it a store for results if its guide offers one (RabbitMQ: "
            "options.stores: redis://...), or use a backend that keeps them: --backend "
            "redis://localhost:6379/0, postgresql://... or sqlite:///tasks.db."
        )
        raise CLIError(msg)
    progress_store = open_store(spec, "create_progress_store")
    # A cancelled step of a queue-driven workflow ends its run, as the worker and the
    # provider do it: through the run store registered for the queue.
    workflow_store = (
        open_store(spec, "create_workflow_state_store") if ends_workflow_steps else None
    )

    async def go() -> tuple[str, T]:
        queue = open_queue(spec)
        if isinstance(workflow_store, WorkflowRunStoreProtocol):
            register_workflow_store(queue, workflow_store)
        try:
            await probe(queue, spec, timeout)
            full_id, note = await resolve_job_id(queue, stores.result_store, job_id, spec.type)
            handle: JobHandle[Any] = JobHandle(
                queue, full_id, result_store=stores.result_store, progress_store=progress_store
            )
            try:
                return full_id, await action(handle)
            except (CLIError, OperationError) as exc:
                if not note:
                    raise
                # The id was found nowhere and could not be searched as a prefix, or the
                # backend keeps no finished jobs: say so.
                raise CLIError(exc.message + note) from None
        finally:
            await stores.close()
            await close_quietly(queue, progress_store, workflow_store)
            await release_backend(spec)

    return run_async(go())


def _result_dict(job_id: str, result: JobResult) -> dict[str, Any]:
    return {
        "id": job_id,
        "status": result.status.value,
        "result": result.data,
        "error": result.error,
        "duration": result.duration,
        "retries": result.retry_count,
        "finished_at": result.completed_at or result.failed_at,
    }


def _print_result(job_id: str, result: JobResult, as_json: bool) -> None:
    data = _result_dict(job_id, result)
    if as_json:
        echo_json(data)
    elif result.success:
        click.echo(json.dumps(result.data, default=str))
    elif result.cancelled:
        click.echo(f"Job {job_id} was cancelled.", err=True)
    else:
        click.echo(f"Job {job_id} failed: {result.error}", err=True)
    if not result.success:
        raise SystemExit(1)


@job_group.command("status")
@click.argument("job_id")
@json_option
@_common
def status_command(
    *,
    job_id: str,
    as_json: bool,
    backend: str | None,
    queue_name: str | None,
    config_path: str | None,
    connect_timeout: float,
    debug: bool,
) -> None:
    """Show where a job is: pending, running, retrying, completed, failed or cancelled."""

    async def action(handle: JobHandle[Any]) -> dict[str, Any]:
        return await job_status(handle)

    _, data = _run(
        backend, config_path, connect_timeout, debug, action, job_id=job_id, queue_name=queue_name
    )
    if as_json:
        echo_json(data)
        return
    line = f"{data['id']}  {data['status']}"
    progress = data["progress"]
    if progress is not None:
        line += (
            f"  {progress['percentage']:.0f}% ({progress['current']}/{progress['total']})"
            f"  {progress['message']}  updated {when(progress['updated_at'])}"
        )
    stdout_console().print(line, highlight=False)


@job_group.command("result")
@click.argument("job_id")
@json_option
@_common
def result_command(
    *,
    job_id: str,
    as_json: bool,
    backend: str | None,
    queue_name: str | None,
    config_path: str | None,
    connect_timeout: float,
    debug: bool,
) -> None:
    """Print a finished job's result as JSON (exit 1 when it failed)."""

    async def action(handle: JobHandle[Any]) -> JobResult:
        assert handle.result_store is not None  # noqa: S101 - _run checked it
        found = await handle.result_store.get(handle.id)
        if found is None:
            try:
                status = await handle.status()
            except TaskNotFoundError as exc:
                raise CLIError(exc.message) from None
            msg = (
                f"Job {handle.id} has no result yet (it is {status.value}). Run "
                f"`lexigram-tasks job wait {handle.id}` to wait for it."
            )
            raise CLIError(msg)
        return found

    full_id, result = _run(
        backend,
        config_path,
        connect_timeout,
        debug,
        action,
        job_id=job_id,
        queue_name=queue_name,
        needs_results="result",
    )
    _print_result(full_id, result, as_json)


async def _follow(handle: JobHandle[Any], timeout: float) -> JobResult:
    """Wait for the result while drawing the handler's progress as a bar on stderr."""
    waiter = asyncio.ensure_future(handle.wait(timeout))
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),  # "3/?" until the handler names a total
    )
    with Progress(*columns, console=stderr_console()) as bar:
        row = bar.add_task(f"job {handle.id}", total=None)
        try:
            while not waiter.done():
                await _draw_progress(handle, bar, row)
                await asyncio.wait({waiter}, timeout=FOLLOW_INTERVAL)
        finally:
            if not waiter.done():
                waiter.cancel()
                await asyncio.gather(waiter, return_exceptions=True)
        await _draw_progress(handle, bar, row)  # the last report, once the result is in
    return waiter.result()


async def _draw_progress(handle: JobHandle[Any], bar: Progress, row: TaskID) -> None:
    """Show the progress the job's handler last reported (nothing before its first)."""
    info = await handle.progress()
    if info is not None:
        bar.update(
            row,
            completed=info.current,
            total=info.total or None,
            description=info.message or f"job {handle.id}",
        )


@job_group.command("wait")
@click.argument("job_id")
@click.option(
    "--timeout",
    type=FiniteFloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Longest wait for the result, in seconds.",
)
@click.option("--follow", "-f", is_flag=True, help="Show the job's progress as a bar meanwhile.")
@json_option
@_common
def wait_command(
    *,
    job_id: str,
    timeout: float,
    follow: bool,
    as_json: bool,
    backend: str | None,
    queue_name: str | None,
    config_path: str | None,
    connect_timeout: float,
    debug: bool,
) -> None:
    """Wait for a job's result and print it as JSON (exit 1 when it failed)."""

    async def action(handle: JobHandle[Any]) -> JobResult:
        try:
            return await (_follow(handle, timeout) if follow else handle.wait(timeout))
        except TimeoutError as exc:
            raise CLIError(str(exc)) from None

    full_id, result = _run(
        backend,
        config_path,
        connect_timeout,
        debug,
        action,
        job_id=job_id,
        queue_name=queue_name,
        needs_results="wait",
    )
    _print_result(full_id, result, as_json)


_CANCEL_LINES = {
    CancelOutcome.REMOVED: "Job {id} was waiting and is cancelled: it will not run.",
    CancelOutcome.STOPPING: (
        "Job {id} was running: its worker was told to stop it, and it is recorded as cancelled."
    ),
    CancelOutcome.FINISHED: "Job {id} had already finished ({status}); nothing was cancelled.",
    CancelOutcome.UNSUPPORTED: (
        "Job {id} is running and the {backend} backend cannot stop a running job; it was "
        "left alone. Wait for it, or stop its worker."
    ),
}


@job_group.command("cancel")
@click.argument("job_id")
@json_option
@_common
def cancel_command(
    *,
    job_id: str,
    as_json: bool,
    backend: str | None,
    queue_name: str | None,
    config_path: str | None,
    connect_timeout: float,
    debug: bool,
) -> None:
    """Cancel a job: remove it if it waits, stop it if it runs (exit 1: nothing cancelled)."""

    async def action(handle: JobHandle[Any]) -> tuple[CancelOutcome, str]:
        outcome = await handle.cancel()
        if outcome is CancelOutcome.NOT_FOUND:
            msg = (
                f"Job {handle.id} is neither in its queue nor in the result store: the id is "
                "unknown, or its result expired. Check the id, the --backend and the "
                "--queue."
            )
            raise CLIError(msg)
        status = "" if outcome is not CancelOutcome.FINISHED else (await handle.status()).value
        return outcome, status

    full_id, (outcome, status) = _run(
        backend,
        config_path,
        connect_timeout,
        debug,
        action,
        job_id=job_id,
        queue_name=queue_name,
        ends_workflow_steps=True,
    )
    if as_json:
        echo_json({"id": full_id, "outcome": outcome.value, "cancelled": outcome.cancelled})
    else:
        kind = backend.split(":", 1)[0] if backend else "configured"
        click.echo(_CANCEL_LINES[outcome].format(id=full_id, status=status, backend=kind))
    if not outcome.cancelled:
        raise SystemExit(1)
