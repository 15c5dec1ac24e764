"""``lexigram-tasks enqueue NAME``: put one job on a queue and print its id.

Without ``--app`` the command knows nothing of the task but its name: the job goes to the
configured queue at the priority given. With ``--app APP`` it builds the job as the
task's own ``.delay()`` does (`TaskFunction.signature`): the arguments are checked
against the function's signature, and the task's queue, priority and idempotency key
are the job's unless an option says otherwise.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

import click

from lexigram.contracts.tasks import (
    PRIORITY_MAX,
    PRIORITY_MIN,
    Job,
    Priority,
    TaskBackendSpec,
    TaskValidationError,
    nearest_name,
)
from lexigram.tasks._backends import install_hint, probe
from lexigram.tasks._task_function import TaskFunction, override_options
from lexigram.tasks.cli._context import (
    close_quietly,
    default_backend,
    describe,
    enqueues_reported,
    is_process_local,
    load_config,
    open_queue,
    release_backend,
    resolve_spec,
)
from lexigram.tasks.cli._errors import CLIError
from lexigram.tasks.cli._event_loop import run_async
from lexigram.tasks.cli._options import (
    FiniteFloatRange,
    JSONParam,
    ParamBase,
    backend_option,
    config_option,
    connect_timeout_option,
    debug_option,
    json_option,
)
from lexigram.tasks.cli._output import echo_json, setup_logging
from lexigram.tasks.decorators import enqueue_job, schedule_template

if TYPE_CHECKING:
    from lexigram.tasks.cli._app import LoadedApp

EPILOG = """\b
Examples:
  lexigram-tasks enqueue send_email --args '["ada@example.com"]' --kwargs '{"subject": "Hi"}'
  lexigram-tasks enqueue build_report --priority high --delay 60 -q reports \\
      --backend redis://localhost:6379/0
  lexigram-tasks enqueue sync_user --kwargs '{"user_id": 7}' --idempotency-key sync-7
  lexigram-tasks enqueue build_report --app myapp.tasks --kwargs '{"month": 5}'
  lexigram-tasks enqueue import_rows --args @rows.json
  generate-rows | lexigram-tasks enqueue import_rows --args -
"""


class PriorityParam(ParamBase):
    """A priority: a name (low, normal, high, critical) or a number a `Job` accepts (0-255)."""

    name = "priority"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        """Return the priority as an int, or fail naming the accepted values."""
        if isinstance(value, int):
            return value
        text = str(value).strip()
        names = {p.name.lower(): int(p) for p in Priority}
        if text.lower() in names:
            return names[text.lower()]
        try:
            number = int(text)
        except ValueError:
            number = PRIORITY_MIN - 1
        if PRIORITY_MIN <= number <= PRIORITY_MAX:
            return number
        return self.fail(
            f"{value!r} is not a priority. Use low, normal, high, critical, or a number from "
            f"{PRIORITY_MIN} to {PRIORITY_MAX} (higher runs first)",
            param,
            ctx,
        )


def _misplaced_arguments_error(extra: list[str]) -> click.UsageError:
    """The usage error for words after NAME: the task's arguments belong in ``--args``.

    Celery's, rq's and many shells' habits put them there; the message shows the
    ``--args`` value those words would have been (each read as JSON where it parses, a
    string otherwise).
    """
    values: list[Any] = []
    for word in extra:
        try:
            values.append(json.loads(word))
        except ValueError:
            values.append(word)
    suggested = json.dumps(values).replace("'", "\\u0027")
    return click.UsageError(
        f"Got unexpected arguments after the task name ({' '.join(extra)}). A task's "
        f"arguments go in --args as a JSON array: --args '{suggested}' (and keyword "
        "arguments in --kwargs as a JSON object)."
    )


@click.command(
    "enqueue",
    epilog=EPILOG,
    # Words after NAME are collected, not refused by click, so that the error can show
    # the --args value they were meant to be.
    context_settings={"allow_extra_args": True},
)
@click.argument("name")
@click.option(
    "--args",
    "job_args",
    type=JSONParam(list, "'[\"ada@example.com\", 3]'"),
    default="[]",
    metavar="JSON",
    help="Positional arguments, as a JSON array; @FILE reads it from a file, - from stdin.",
)
@click.option(
    "--kwargs",
    "job_kwargs",
    type=JSONParam(dict, '\'{"subject": "Hi"}\''),
    default="{}",
    metavar="JSON",
    help="Keyword arguments, as a JSON object; @FILE reads it from a file, - from stdin.",
)
@click.option(
    "--app",
    "app_source",
    metavar="APP",
    help=(
        "The APP that defines the task (as for `worker APP`): the job is built as the "
        "task's .delay() builds it (its queue, priority and idempotency key; the arguments "
        "checked against its signature), and a NAME the APP does not define is refused."
    ),
)
@click.option(
    "--priority",
    "-p",
    type=PriorityParam(),
    default=None,
    help=(
        f"low, normal, high, critical, or {PRIORITY_MIN}-{PRIORITY_MAX} (higher runs first). "
        "Default: the task's with --app, else normal."
    ),
)
@click.option(
    "--delay",
    type=FiniteFloatRange(min=0),
    default=0.0,
    metavar="SECONDS",
    help="Run no earlier than this many seconds from now.",
)
@click.option(
    "--queue",
    "-q",
    metavar="NAME",
    help="Queue name. Default: the task's with --app, else the config's queue_name.",
)
@click.option(
    "--max-retries",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Retry limit of this job. Default: the task's definition decides.",
)
@click.option(
    "--timeout",
    type=FiniteFloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Time limit of this job. Default: the task's definition decides.",
)
@click.option(
    "--idempotency-key",
    metavar="KEY",
    help="A second enqueue with the same key returns the first job's id instead.",
)
@backend_option
@config_option
@connect_timeout_option
@json_option
@debug_option
def enqueue_command(
    *,
    name: str,
    job_args: list[Any],
    job_kwargs: dict[str, Any],
    app_source: str | None,
    priority: int | None,
    delay: float,
    queue: str | None,
    max_retries: int | None,
    timeout: float | None,
    idempotency_key: str | None,
    backend: str | None,
    config_path: str | None,
    connect_timeout: float,
    as_json: bool,
    debug: bool,
) -> None:
    """Enqueue a job for task NAME and print the job id.

    Arguments must be JSON-serializable: they travel as JSON to the worker, which calls
    the handler as NAME(*args, **kwargs).
    """
    extra = click.get_current_context().args
    if extra:
        raise _misplaced_arguments_error(extra)
    setup_logging("debug" if debug else "critical")
    if not name.strip():
        msg = "The task name is empty. Pass the name the handler is registered under."
        raise CLIError(msg)
    given_backend = backend
    loaded = _load_app(app_source) if app_source is not None else None
    base = loaded.config if loaded is not None else None
    backend = default_backend(config_path, base, backend)
    config = load_config(config_path, base, backend=backend)
    if loaded is None:
        job = Job(name=name, args=tuple(job_args), kwargs=job_kwargs)
    else:
        job = _job_as_the_task_builds_it(loaded, name, job_args, job_kwargs)
        queue = queue or job.queue_name
    spec = resolve_spec(config, backend, queue, connect_timeout=connect_timeout)
    job.queue_name = spec.queue_name
    override_options(
        job,
        priority=priority,
        max_retries=max_retries,
        timeout=timeout,
        idempotency_key=idempotency_key,
    )
    if delay > 0:
        job.scheduled_at = time.time() + delay
    own_id = job.id  # enqueue_job gives the job its holder's id when the key is held
    job_id = run_async(_enqueue(spec, job, connect_timeout))
    duplicate = job_id != own_id
    if as_json:
        echo_json(
            {
                "id": job_id,
                "name": name,
                "queue": spec.queue_name,
                "backend": spec.type,
                "duplicate": duplicate,
            }
        )
    else:
        click.echo(job_id)
    if duplicate:
        click.echo(
            f"note: the idempotency key {job.idempotency_key!r} is held by job {job_id}, so "
            "nothing new was enqueued; that id is printed. The key stays held for the "
            "backend's idempotency_ttl, even once that job has finished or was cancelled "
            "(`lexigram-tasks job status ID` shows where it is); use another key to run "
            "the task again.",
            err=True,
        )
    if is_process_local(spec):
        if given_backend is None and config_path is None:
            # Nothing was configured and the default SQLite backend is not installed.
            reach = f"Install the SQLite backend ({install_hint('sqlite')}) or pass a server's URL"
        else:
            reach = "Leave --backend out to use the default SQLite file, or pass a server's URL"
        click.echo(
            f"note: the {spec.type} backend keeps jobs inside this process, so this job is "
            f"gone now that the command ends. {reach}, to reach a worker.",
            err=True,
        )
    logging.getLogger("lexigram.tasks.cli").debug("Enqueued %s on %s.", job_id, describe(spec))


def _load_app(source: str) -> LoadedApp:
    # Imported here: only --app imports an APP, and so the modules that load one.
    from lexigram.tasks.cli._app import load_app  # noqa: PLC0415

    return load_app(source)


def _job_as_the_task_builds_it(
    loaded: LoadedApp, name: str, args: list[Any], kwargs: dict[str, Any]
) -> Job:
    """The job the task `name` of `loaded` enqueues for this call, as its ``.delay()`` would.

    The job is the one `name` is registered for: its name, and the queue and priority of
    the options it was registered with (`schedule_template`, as its schedules have them),
    also for a ``@task`` function registered under another name or with other options
    (``provider.register_handler("mail.v2", send, options=...)``). A ``@task`` function
    also checks the arguments against its signature and gives its idempotency key.

    Raises:
        CLIError: The APP defines no such task, or the arguments do not fit its signature.
    """
    found = loaded.handlers.lookup(name)
    if found is None:
        known = ", ".join(sorted(loaded.handlers.keys()))
        near = nearest_name(name, loaded.handlers.keys())
        hint = f"Did you mean {near!r}? " if near else ""
        msg = (
            f"APP {loaded.source!r} defines no task {name!r} (its tasks: {known}). {hint}Pass "
            "the name the task is registered under, or leave --app out to enqueue a task "
            "that only the workers know."
        )
        raise CLIError(msg)
    handler, options = found
    key = None
    if isinstance(handler, TaskFunction):
        try:
            key = handler.signature(*args, **kwargs).idempotency_key
        except TaskValidationError as exc:
            raise CLIError(str(exc)) from None
    template = schedule_template(name, options)
    return Job(
        name=name,
        args=tuple(args),
        kwargs=kwargs,
        priority=template.priority,
        queue_name=template.queue_name,
        idempotency_key=key,
    )


async def _enqueue(spec: TaskBackendSpec, job: Job, connect_timeout: float) -> str:
    queue = open_queue(spec)
    try:
        await probe(queue, spec, connect_timeout)
        with enqueues_reported():
            return (await enqueue_job(queue, job)).id
    finally:
        await close_quietly(queue)
        await release_backend(spec)
