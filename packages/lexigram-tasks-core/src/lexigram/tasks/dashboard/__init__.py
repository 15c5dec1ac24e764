"""A web dashboard for a lexigram-tasks backend: queues, workers, progress, DLQ, schedules.

Serve it with ``lexigram-tasks dashboard`` (127.0.0.1 by default), or mount it in a
Starlette or FastAPI app::

    import os

    from fastapi import FastAPI

    from lexigram.tasks import TaskConfig
    from lexigram.tasks.dashboard import DashboardAuth, create_dashboard

    config = TaskConfig.from_yaml("tasks.yaml")
    dashboard = create_dashboard(config, auth=DashboardAuth(token=os.environ["DASH_TOKEN"]))
    app = FastAPI()
    app.mount("/tasks", dashboard)

It reads and acts through `lexigram.tasks.admin`, the code the ``inspect``, ``dlq``,
``schedule``, ``job`` and ``workflow`` commands use. It needs Starlette and Jinja2:
``pip install 'lexigram-tasks[dashboard]'``.
"""

from __future__ import annotations

try:
    import jinja2  # noqa: F401 - checked here so the error names the extra
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    msg = (
        "lexigram.tasks.dashboard needs Starlette and Jinja2: "
        "pip install 'lexigram-tasks[dashboard]'."
    )
    raise ImportError(msg) from exc

from lexigram.tasks.cli._context import resolve_spec
from lexigram.tasks.config import TaskConfig
from lexigram.tasks.dashboard._app import POLL_SECONDS, Dashboard
from lexigram.tasks.dashboard._backend import DashboardBackend
from lexigram.tasks.dashboard._security import DashboardAuth, is_loopback
from lexigram.tasks.decorators import configure_enqueue_timeout


def create_dashboard(
    config: TaskConfig | None = None,
    *,
    backend: str | None = None,
    queues: tuple[str, ...] = (),
    auth: DashboardAuth | None = None,
    title: str = "",
) -> Dashboard:
    """Build the dashboard's ASGI app for the backend `config` names.

    Nothing connects until the first page is asked for. Mounted in another app, the
    dashboard's own startup and shutdown do not run: call ``await dashboard.close()``
    when that app stops.

    Args:
        config: The tasks configuration (default: ``LEX_TASKS__*`` variables).
        backend: A backend URL or type that replaces the config's, as ``--backend`` does.
        queues: More queues to show, besides the default one and those workers consume.
        auth: A token or basic credentials every request must carry (default: none).
        title: Shown in the page header.

    Raises:
        CLIError: `backend` is malformed or names a backend that is not installed.
        TaskConfigurationError: The configuration is invalid.
    """
    config = config if config is not None else TaskConfig.from_env()
    config.security.apply()  # envelope signing, as every command applies it
    configure_enqueue_timeout(config.backend.enqueue_timeout)
    spec = resolve_spec(config, backend)
    return Dashboard(DashboardBackend(spec, queues, config=config), auth, title=title)


__all__ = [
    "POLL_SECONDS",
    "Dashboard",
    "DashboardAuth",
    "DashboardBackend",
    "create_dashboard",
    "is_loopback",
]
