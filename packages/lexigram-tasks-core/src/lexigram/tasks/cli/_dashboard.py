"""``lexigram-tasks dashboard``: serve the web dashboard for a backend.

It binds to 127.0.0.1 unless ``--host`` says otherwise; any other address needs a token
or basic credentials (``--token`` / ``--basic-auth``, or their environment variables),
or the command refuses to start. The backend is probed first, so an unreachable one
fails with one line before the server starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from lexigram.contracts.tasks import TaskBackendSpec
from lexigram.tasks._backends import probe
from lexigram.tasks.cli._context import (
    close_quietly,
    default_backend,
    describe,
    enqueues_reported,
    existing_only,
    load_config,
    open_queue,
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
    log_level_option,
)
from lexigram.tasks.cli._output import setup_logging

if TYPE_CHECKING:
    from lexigram.tasks.dashboard import DashboardAuth

TOKEN_ENV = "LEXIGRAM_TASKS_DASHBOARD_TOKEN"  # noqa: S105 - a variable name, not a secret
"""Environment variable holding the dashboard's token (kept out of ``ps`` output)."""

BASIC_AUTH_ENV = "LEXIGRAM_TASKS_DASHBOARD_BASIC_AUTH"
"""Environment variable holding ``USER:PASSWORD`` for basic auth."""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765

EPILOG = f"""\b
Examples:
  lexigram-tasks dashboard --backend redis://localhost:6379/0
  lexigram-tasks dashboard --config tasks.yaml --port 9000
  {TOKEN_ENV}=s3cret lexigram-tasks dashboard --host 0.0.0.0 -b postgresql://app@db/app

\b
Pages: the overview (queues with depths and rates, workers and what each runs, running
jobs with live progress, recent failures), dead letters (retry, delete, one or many),
schedules (pause, resume, run now), a job's detail, and workflow runs.
"""


def _auth(token: str | None, basic: str | None) -> DashboardAuth:
    from lexigram.tasks.dashboard import DashboardAuth  # noqa: PLC0415 - needs the extra

    username = password = None
    if basic is not None:
        username, sep, password = basic.partition(":")
        if not sep or not username or not password:
            msg = f"--basic-auth (or {BASIC_AUTH_ENV}) must be USER:PASSWORD, both non-empty."
            raise CLIError(msg)
    if token is not None and not token.strip():
        msg = f"--token (or {TOKEN_ENV}) is empty. Give a non-empty secret."
        raise CLIError(msg)
    return DashboardAuth(token=token, username=username, password=password)


def _missing(exc: ImportError) -> str:
    return (
        f"The dashboard needs Starlette, Jinja2 and uvicorn ({exc.name} is missing): "
        "pip install 'lexigram-tasks[dashboard]'."
    )


async def _check(spec: TaskBackendSpec, timeout: float) -> None:
    queue = open_queue(spec)
    try:
        await probe(queue, spec, timeout)
    finally:
        await close_quietly(queue)
        await release_backend(spec)


@click.command("dashboard", epilog=EPILOG)
@backend_option
@click.option(
    "--queue",
    "-q",
    "queues",
    multiple=True,
    metavar="NAME",
    help="Queue to show too (repeat for several). Always shown: the config's queue and "
    "those running workers consume.",
)
@click.option(
    "--host",
    default=DEFAULT_HOST,
    show_default=True,
    help="Address to bind. Anything but a loopback address needs --token or --basic-auth.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True)
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    metavar="SECRET",
    help=f"Require this token (Authorization: Bearer, or the login page). Prefer ${TOKEN_ENV}.",
)
@click.option(
    "--basic-auth",
    "basic_auth",
    envvar=BASIC_AUTH_ENV,
    metavar="USER:PASSWORD",
    help=f"Require HTTP basic credentials. Prefer ${BASIC_AUTH_ENV}.",
)
@click.option("--title", default="", help="Shown in the page header. Default: lexigram-tasks.")
@config_option
@connect_timeout_option
@log_level_option("warning")
@debug_option
def dashboard_command(
    *,
    backend: str | None,
    queues: tuple[str, ...],
    host: str,
    port: int,
    token: str | None,
    basic_auth: str | None,
    title: str,
    config_path: str | None,
    connect_timeout: float,
    log_level: str,
    debug: bool,
) -> None:
    """Serve a web dashboard: queues, workers, live progress, dead letters, schedules.

    It reads and acts through the same code as `inspect`, `dlq`, `schedule`, `job` and
    `workflow`. Actions (retry, delete, pause, resume, run now) are POST requests that
    must carry the page's CSRF token. Needs the extra: pip install 'lexigram-tasks[dashboard]'.
    """
    try:
        from lexigram.tasks.dashboard import (  # noqa: PLC0415 - needs the extra
            Dashboard,
            DashboardBackend,
            is_loopback,
        )
    except ImportError as exc:
        raise CLIError(_missing(exc)) from None
    level = "debug" if debug else log_level
    setup_logging(level)
    auth = _auth(token, basic_auth)
    if not is_loopback(host) and not auth.enabled:
        msg = (
            f"Refusing to serve the dashboard on {host} without authentication: set "
            f"{TOKEN_ENV} (or --token) or {BASIC_AUTH_ENV} (or --basic-auth), or bind "
            "to 127.0.0.1."
        )
        raise CLIError(msg)
    try:
        import uvicorn  # noqa: PLC0415 - the extra's server, only for this command
    except ImportError as exc:
        raise CLIError(_missing(exc)) from None
    backend = default_backend(config_path, None, backend)
    # A SQLite file that does not exist is refused rather than created (see existing_only):
    # a mistyped path would otherwise serve an empty system.
    config = load_config(config_path, backend=backend)
    spec = existing_only(resolve_spec(config, backend, connect_timeout=connect_timeout))
    run_async(_check(spec, connect_timeout))
    backend_view = DashboardBackend(spec, tuple(dict.fromkeys(queues)), config=config)
    app = Dashboard(backend_view, auth, title=title)
    shown = f"[{host}]" if ":" in host else host
    guard = "token" if auth.token else "basic auth" if auth.enabled else "no auth, local only"
    click.echo(
        f"Dashboard for {describe(spec)} on http://{shown}:{port}/ ({guard}). Ctrl-C stops it.",
        err=True,
    )
    # The page's retries and runs-now are "queued" to the plugins, as `dlq retry`'s are.
    with enqueues_reported():
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level=level.lower(),
            access_log=debug,
            lifespan="on",
        )
