"""``lexigram-tasks workflow show ID``: a queue-driven workflow's steps, states and results.

It reads the backend's workflow run store, where the workers record every step that
ended and the job ids of every stage enqueued. A step that has not ended is asked for
on its queue by its job id, so it shows as ``running`` while a worker holds it, as a
Celery user sees a task STARTED in Flower; only such steps cost a queue read. A step
whose job was cancelled shows as ``cancelled`` (its run as failed). Exit codes: 0 when
the run completed or is running, 1 when it failed (a cancelled step fails its run), 2
for an error of the command (unknown id, a backend without a shared run store).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from lexigram.contracts.tasks import TaskBackendSpec, WorkflowRunStoreProtocol, WorkflowStatus
from lexigram.tasks.admin import load_workflow, workflow_dict
from lexigram.tasks.cli._context import (
    close_quietly,
    default_backend,
    existing_only,
    is_process_local,
    load_config,
    open_queue,
    open_store,
    release_backend,
    resolve_spec,
)
from lexigram.tasks.cli._errors import CLIError
from lexigram.tasks.cli._event_loop import run_async
from lexigram.tasks.cli._options import (
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
from lexigram.tasks.workflows import WorkflowRunInfo, with_job_states
from lexigram.tasks.workflows._advance import STEP_SUCCEEDED, UNSUCCESSFUL_STEPS

EPILOG = """\b
Examples:
  lexigram-tasks workflow show 0193a2b4-7c1d-7e2f-9a3b-4c5d6e7f8091 -b redis://localhost:6379/0
  lexigram-tasks workflow show 0193a2b4-7c1d-7e2f-9a3b-4c5d6e7f8091 --json --config app.yaml
"""


@click.group("workflow", epilog=EPILOG)
def workflow_group() -> None:
    """Show a queue-driven workflow (JobChain, JobGroup, JobChord)."""


@workflow_group.command("show")
@click.argument("workflow_id")
@json_option
@debug_option
@connect_timeout_option
@config_option
@backend_option
def show_command(
    *,
    workflow_id: str,
    as_json: bool,
    backend: str | None,
    config_path: str | None,
    connect_timeout: float,
    debug: bool,
) -> None:
    """Show a workflow's status, result, and every step with its state and timing."""
    setup_logging("debug" if debug else "critical")
    backend = default_backend(config_path, None, backend)
    # A SQLite file that does not exist is refused rather than created (see existing_only).
    config = load_config(config_path, backend=backend)
    spec = existing_only(resolve_spec(config, backend, connect_timeout=connect_timeout))
    store = open_store(spec, "create_workflow_state_store")
    if is_process_local(spec) or not isinstance(store, WorkflowRunStoreProtocol):
        msg = (
            f"The {spec.type} backend keeps workflow runs inside its worker processes (it "
            "has no shared workflow run store), so there is nothing to read from here. Use "
            "a backend that stores them: redis://..., postgresql://... or sqlite:///..."
        )
        raise CLIError(msg)

    async def go() -> WorkflowRunInfo | None:
        try:
            info = await asyncio.wait_for(load_workflow(store, workflow_id), connect_timeout + 5.0)
            if info is not None and any(s.status == "queued" and s.job_id for s in info.steps):
                info = await _ask_queue(info, spec, connect_timeout)
            return info
        finally:
            await close_quietly(store)
            await release_backend(spec)

    info = run_async(go())
    if info is None:
        msg = f"No workflow {workflow_id!r} in the {spec.type} backend's workflow run store."
        raise CLIError(msg)
    data = workflow_dict(info)
    if as_json:
        echo_json(data)
    else:
        _print(info, data, default_queue=spec.queue_name)
    if info.status is WorkflowStatus.FAILED:
        raise SystemExit(1)


async def _ask_queue(
    info: WorkflowRunInfo, spec: TaskBackendSpec, timeout: float
) -> WorkflowRunInfo:
    """`info` with its queued steps' states from their queue; `info` itself if that fails.

    The run store answered, so the run is shown either way: a queue that cannot be read
    (another server, as RabbitMQ's) costs only the running/queued distinction.
    """
    queue = open_queue(spec, info.queue_name)
    try:
        return await asyncio.wait_for(with_job_states(info, queue), timeout + 5.0)
    except Exception as exc:  # any failure of the queue: say it, show the rest
        stderr_console().print(
            f"The queue {info.queue_name or spec.queue_name!r} could not be asked which steps "
            f"are running ({type(exc).__name__}: {exc}); steps not ended show as queued.",
            highlight=False,
        )
        return info
    finally:
        await close_quietly(queue)


def _print(
    info: WorkflowRunInfo, data: dict[str, Any], *, default_queue: str | None = None
) -> None:
    """Print the run as text; `default_queue` is the queue the ``job`` commands look on."""
    console = stdout_console()
    queue = "" if info.queue_name is None else f"  queue {info.queue_name}"
    head = f"{info.workflow_id}  {info.kind}  {info.status.value}{queue}"
    console.print(f"{head}  started {when(info.created_at)}", highlight=False)
    if info.status is WorkflowStatus.COMPLETED:
        console.print(f"result: {json.dumps(info.result, default=str)}", highlight=False)
    if info.error:
        at = "" if data["failed_step"] is None else f" (step {data['failed_step']})"
        console.print(f"error{at}: {info.error}", highlight=False)
    for step in data["steps"]:
        # The whole id, as `job status`/`job cancel` take it.
        job = "" if step["job_id"] is None else f"  job {step['job_id']}"
        took = "" if step["duration"] is None else f"  {step['duration'] * 1000:.1f} ms"
        # A cancelled step has no result; its error says when it was cancelled.
        unsuccessful = step["status"] in UNSUCCESSFUL_STEPS
        shown = step["error"] if unsuccessful else step["result"]
        ended = unsuccessful or step["status"] == STEP_SUCCEEDED
        value = f"  {json.dumps(shown, default=str)}" if ended else ""
        console.print(
            f"  {step['stage']}.{step['member']}  {step['task']}  {step['status']}"
            f"{job}{took}{value}",
            highlight=False,
        )
    hint = _queue_hint(info, default_queue)
    if hint:
        console.print(hint, highlight=False)


def _queue_hint(info: WorkflowRunInfo, default_queue: str | None) -> str:
    """How to name the run's queue to the ``job`` commands, when their default is another.

    `job status`, `job wait` and `job cancel` look on the configured queue (or
    ``--queue``): a step's job on another queue is "not found" there without it.
    """
    if info.queue_name is None or default_queue is None or info.queue_name == default_queue:
        return ""
    if not any(step.job_id for step in info.steps):
        return ""
    return (
        f"Its steps' jobs are on queue {info.queue_name!r}, not {default_queue!r}: pass "
        f"`--queue {info.queue_name}` to `lexigram-tasks job status|wait|cancel JOB_ID`."
    )
