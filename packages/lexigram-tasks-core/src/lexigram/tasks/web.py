"""FastAPI and Starlette: run the task backend with the web app, inject its queues.

`tasks_lifespan` boots a `TaskProvider` (queues, stores, and optionally in-process
workers and the scheduler) when the app starts and stops it when the app stops;
`task_queue` and `named_queue` are dependencies that hand a request handler the queue
(``Depends(task_queue)`` in FastAPI, or called with the request in Starlette)::

    from fastapi import Depends, FastAPI

    from lexigram.contracts.tasks import TaskQueueProtocol
    from lexigram.tasks import TaskConfig
    from lexigram.tasks.web import task_queue, tasks_lifespan

    app = FastAPI(lifespan=tasks_lifespan(TaskConfig.from_yaml("tasks.yaml")))


    @app.post("/thumbnails/{image_id}")
    async def make_thumbnail(image_id: int) -> dict[str, str]:
        handle = await resize.delay(image_id)  # the app's default queue
        return {"job_id": handle.id}

While the app runs, ``.delay()`` and ``.apply_async()`` use the configured queues, and
an enqueue that gets no answer within ``tasks.backend.enqueue_timeout`` (5 s by
default) raises `BackendConnectionError` instead of holding the request.

The module needs Starlette (FastAPI includes it): ``pip install 'lexigram-tasks[web]'``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

try:
    from starlette.requests import HTTPConnection
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    msg = (
        "lexigram.tasks.web needs Starlette (FastAPI includes it): "
        "pip install 'lexigram-tasks[web]'."
    )
    raise ImportError(msg) from exc

from lexigram.app import Application
from lexigram.contracts.tasks import TaskConfigurationError, TaskQueueProtocol
from lexigram.tasks.config import TaskConfig
from lexigram.tasks.di import TaskProvider

STATE_ATTRIBUTE = "lexigram_tasks"
"""Name of the `TaskProvider` on the app's ``state`` while the app runs."""


class _HasState(Protocol):
    state: Any


Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


def tasks_lifespan(
    config: TaskConfig | str | Path | None = None,
    *,
    workers: int = 0,
    scheduler: bool = False,
    inner: Lifespan | None = None,
) -> Lifespan:
    """A lifespan that runs the task backend for as long as the app runs.

    Args:
        config: The configuration: a `TaskConfig`, the path of a YAML file, or None to
            read it from the environment (``TaskConfig.from_env()``).
        workers: Workers to run inside the web process (0: the app only enqueues, and
            ``lexigram-tasks worker`` runs the jobs elsewhere, the usual set-up).
        scheduler: Run the cron scheduler in the web process too.
        inner: The app's own lifespan, run inside this one (its state is yielded).

    `workers` and `scheduler` decide for the web process whatever the configuration's
    ``worker.worker_count`` and ``scheduler.enabled`` say: those are read by the
    processes that run jobs (``lexigram-tasks worker``, ``lexigram-tasks scheduler``,
    an application's `TaskProvider`), so one configuration file serves all of them.

    Returns:
        What ``FastAPI(lifespan=...)`` / ``Starlette(lifespan=...)`` take.
    """
    settings = _config_of(config)

    @asynccontextmanager
    async def lifespan(app: _HasState) -> AsyncIterator[Any]:
        provider = TaskProvider(config=settings, worker_count=workers, enable_scheduler=scheduler)
        async with Application.boot(name="lexigram-tasks-web", providers=[provider]):
            setattr(app.state, STATE_ATTRIBUTE, provider)
            try:
                if inner is None:
                    yield None
                else:
                    async with inner(app) as state:
                        yield state
            finally:
                setattr(app.state, STATE_ATTRIBUTE, None)

    return lifespan


def _config_of(config: TaskConfig | str | Path | None) -> TaskConfig:
    if config is None:
        return TaskConfig.from_env()
    if isinstance(config, TaskConfig):
        return config
    return TaskConfig.from_yaml(config)


def task_provider(request: HTTPConnection) -> TaskProvider:
    """The running `TaskProvider` of the request's app (a dependency).

    Raises:
        TaskConfigurationError: The app was not started with `tasks_lifespan`.
    """
    provider = getattr(getattr(request.app, "state", None), STATE_ATTRIBUTE, None)
    if not isinstance(provider, TaskProvider):
        msg = (
            "No lexigram-tasks backend runs with this app. Pass "
            "lifespan=tasks_lifespan(config) to FastAPI(...) or Starlette(...)."
        )
        raise TaskConfigurationError(msg)
    return provider


def task_queue(request: HTTPConnection) -> TaskQueueProtocol:
    """The app's primary queue (a dependency: ``queue = Depends(task_queue)``)."""
    provider = task_provider(request)
    if provider.queue is None:  # started providers always have one; a stopped one not
        msg = "The app's task backend is not running: the queue is gone with it."
        raise TaskConfigurationError(msg)
    return provider.queue


def named_queue(name: str) -> Callable[[HTTPConnection], TaskQueueProtocol]:
    """A dependency giving the queue of the backend named `name` (``tasks.backends``).

    ``Depends(named_queue("emails"))`` is the web form of ``Named("emails")``.
    """

    def dependency(request: HTTPConnection) -> TaskQueueProtocol:
        queues = task_provider(request).queues
        queue = queues.get(name)
        if queue is None:
            msg = (
                f"No task backend is named {name!r}; the configuration names "
                f"{', '.join(repr(known) for known in sorted(queues)) or 'none'}. "
                "Fix the name or add the backend under tasks.backends."
            )
            raise TaskConfigurationError(msg)
        return queue

    dependency.__name__ = f"named_queue_{name}"
    return dependency


__all__ = ["STATE_ATTRIBUTE", "named_queue", "task_provider", "task_queue", "tasks_lifespan"]
