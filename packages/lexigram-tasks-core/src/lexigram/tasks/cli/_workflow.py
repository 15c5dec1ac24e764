"""``lexigram-tasks workflow show ID``: a queue-driven workflow's steps, states and results.

It reads the backend's workflow run store, where the workers record every step. Exit
codes: 0 when the run completed or is running, 1 when it failed, 2 for an error of the
command (unknown id, a backend without a shared run store).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from lexigram.contracts.tasks import WorkflowRunStoreProtocol, WorkflowStatus
from lexigram.tasks.admin import load_workflow, workflow_dict
from lexigram.tasks.cli._context import (
    CONFIG_FIELD,
    close_quietly,
    default_backend,
    existing_only,
    is_process_local,
    load_config,
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
from lexigram.tasks.cli._output import echo_json, setup_logging, stdout_console, when
from lexigram.tasks.di._stack import build_store
from lexigram.tasks.workflows import WorkflowRunInfo

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
    store = build_store(spec, "create_workflow_state_store", CONFIG_FIELD)
    if is_process_local(spec) or not isinstance(store, WorkflowRunStoreProtocol):
        msg = (
            f"The {spec.type} backend keeps workflow runs inside its worker processes (it "
            "has no shared workflow run store), so there is nothing to read from here. Use "
            "a backend that stores them: redis://..., postgresql://... or sqlite:///..."
        )
        raise CLIError(msg)

    async def go() -> WorkflowRunInfo | None:
        try:
            return await asyncio.wait_for(load_workflow(store, workflow_id), connect_timeout + 5.0)
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
        _print(info, data)
    if info.status is WorkflowStatus.FAILED:
        raise SystemExit(1)


def _print(info: WorkflowRunInfo, data: dict[str, Any]) -> None:
    console = stdout_console()
    head = f"{info.workflow_id}  {info.kind}  {info.status.value}  started {when(info.created_at)}"
    console.print(head, highlight=False)
    if info.status is WorkflowStatus.COMPLETED:
        console.print(f"result: {json.dumps(info.result, default=str)}", highlight=False)
    if info.error:
        console.print(f"error: {info.error}", highlight=False)
    for step in data["steps"]:
        took = "" if step["duration"] is None else f"  {step['duration'] * 1000:.1f} ms"
        shown = step["error"] if step["status"] == "failed" else step["result"]
        value = (
            "" if step["status"] in {"queued", "waiting"} else f"  {json.dumps(shown, default=str)}"
        )
        console.print(
            f"  {step['stage']}.{step['member']}  {step['task']}  {step['status']}{took}{value}",
            highlight=False,
        )
