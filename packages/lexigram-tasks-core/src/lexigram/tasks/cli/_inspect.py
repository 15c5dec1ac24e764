"""``lexigram-tasks inspect``: queue depths, running workers, schedules, dead letters."""

from __future__ import annotations

from typing import Any

import click

from lexigram.contracts.tasks import TaskBackendSpec
from lexigram.tasks._backends import probe
from lexigram.tasks._presence import OUTCOMES
from lexigram.tasks.admin import queue_counts, registered_workers, schedule_row, watched_queues
from lexigram.tasks.cli._context import (
    close_quietly,
    default_backend,
    describe,
    existing_only,
    is_process_local,
    load_config,
    open_queue,
    open_stores,
    release_backend,
    resolve_spec,
)
from lexigram.tasks.cli._event_loop import run_async
from lexigram.tasks.cli._options import (
    backend_option,
    config_option,
    connect_timeout_option,
    debug_option,
    json_option,
)
from lexigram.tasks.cli._output import ago, echo_json, setup_logging, stdout_console, table
from lexigram.tasks.cli._schedule import schedules_table

EPILOG = """\b
Examples:
  lexigram-tasks inspect --backend redis://localhost:6379/0
  lexigram-tasks inspect -q emails -q reports --json | jq '.queues[].waiting'
"""


@click.command("inspect", epilog=EPILOG)
@backend_option
@click.option(
    "--queue",
    "-q",
    "queues",
    multiple=True,
    metavar="NAME",
    help="Queue to show, with only the workers consuming it (repeat for several). "
    "Default: the config's queue and those running workers consume, and every worker.",
)
@config_option
@connect_timeout_option
@json_option
@debug_option
def inspect_command(
    *,
    backend: str | None,
    queues: tuple[str, ...],
    config_path: str | None,
    connect_timeout: float,
    as_json: bool,
    debug: bool,
) -> None:
    """Show queues (waiting, retrying, in flight), workers, schedules and the DLQ size.

    Waiting jobs include delayed ones and those waiting for a retry. Workers and
    schedules are listed where the backend stores them (SQLite, Redis, PostgreSQL, and
    RabbitMQ with a stores backend). A SQLite file that does not exist is refused, not
    created.
    """
    setup_logging("debug" if debug else "critical")
    backend = default_backend(config_path, None, backend)
    config = load_config(config_path, backend=backend)
    spec = existing_only(resolve_spec(config, backend, connect_timeout=connect_timeout))
    report = run_async(_gather(spec, list(dict.fromkeys(queues)), connect_timeout))
    if as_json:
        echo_json(report)
        return
    _render(report, spec)


async def _gather(spec: TaskBackendSpec, names: list[str], timeout: float) -> dict[str, Any]:
    first = open_queue(spec, names[0] if names else None)
    opened: list[Any] = [first]
    stores = open_stores(spec, "cache", "scheduler_store", "dlq_backend")
    try:
        await probe(first, spec, timeout)
        workers = await registered_workers(stores.cache) if stores.cache is not None else None
        if not names:
            names = watched_queues(spec.queue_name, workers)
        elif workers is not None:
            # Queues named: their workers alone, not those of every queue (or of another
            # backend) registered in the same store.
            wanted = set(names)
            workers = [w for w in workers if wanted.intersection(w.get("queues") or ())]
        rows = []
        for name in names:
            queue = first if name == first.queue_name else open_queue(spec, name)
            if queue is not first:
                opened.append(queue)
            rows.append(await queue_counts(queue, name))
        schedules = None
        if stores.scheduler_store is not None:
            records = await stores.scheduler_store.load_jobs()
            schedules = sorted(
                (schedule_row(key, record) for key, record in records.items()),
                key=lambda r: (r["namespace"] or "", r["id"]),
            )
        dead = await stores.dlq_backend.size() if stores.dlq_backend is not None else None
        return {
            "backend": {"type": spec.type, "url": describe(spec)},
            "queues": rows,
            "workers": workers,
            "schedules": schedules,
            "dead_letters": dead,
        }
    finally:
        await stores.close()
        await close_quietly(*opened)
        await release_backend(spec)


def _render(report: dict[str, Any], spec: TaskBackendSpec) -> None:
    console = stdout_console()
    console.print(f"[bold]Backend[/bold] {report['backend']['url']}")
    if is_process_local(spec):
        console.print(
            "[yellow]The memory backend keeps jobs inside each process: these counts are "
            "this command's own, empty queue. Inspect a shared backend with --backend "
            "redis://... or postgresql://...[/yellow]"
        )
    console.print(
        table(
            "Queues (waiting includes delayed jobs and jobs waiting for a retry)",
            ["queue", "waiting", "of which retrying", "in flight", "total"],
            [
                (r["queue"], r["waiting"], r["retrying"], r["in_flight"], r["total"])
                for r in report["queues"]
            ],
        )
    )
    workers = report["workers"]
    if workers is None:
        console.print(f"Workers: not recorded by the {spec.type} backend.")
    elif not workers:
        console.print("Workers: none running.")
    else:
        # The attempts by outcome, named as lexigram_tasks_jobs_total labels them: they
        # add up to "processed" (a record of an older worker lacks some: shown as "-").
        console.print(
            table(
                "Workers (attempts by outcome)",
                ["worker", "queues", "processed", *OUTCOMES, "in flight", "up", "seen"],
                [
                    (
                        w.get("id"),
                        ",".join(str(q) for q in w.get("queues") or []),
                        w.get("processed"),
                        *(w.get(outcome) for outcome in OUTCOMES),
                        w.get("in_flight"),
                        ago(float(w.get("started_at") or 0)).removesuffix(" ago"),
                        ago(float(w.get("seen_at") or 0)),
                    )
                    for w in workers
                ],
            )
        )
    schedules = report["schedules"]
    if schedules is None:
        console.print(f"Schedules: not stored by the {spec.type} backend.")
    elif not schedules:
        console.print("Schedules: none stored.")
    else:
        console.print(schedules_table("Schedules (see `lexigram-tasks schedule list`)", schedules))
    dead = report["dead_letters"]
    if dead is None:
        console.print(f"Dead letters: not stored by the {spec.type} backend (kept per worker).")
    else:
        console.print(f"Dead letters: {dead} (see `lexigram-tasks dlq list`).")
