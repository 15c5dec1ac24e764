"""`lexigram.tasks.web` in a Starlette app on the memory backend, called through httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lexigram.contracts.tasks import Job, TaskConfigurationError
from lexigram.tasks import TaskConfig
from lexigram.tasks.decorators import enqueue_job
from lexigram.tasks.web import named_queue, task_provider, task_queue, tasks_lifespan

CONFIG = TaskConfig.from_dict(
    {
        "backends": [
            {"name": "main", "type": "memory", "queue_name": "main", "primary": True},
            {"name": "emails", "type": "memory", "queue_name": "emails"},
        ]
    }
)


async def send(request: Request) -> JSONResponse:
    queue = named_queue(request.path_params["backend"])(request)
    job = await enqueue_job(queue, Job(name="ping"))
    return JSONResponse(
        {"queue": queue.queue_name, "waiting": await queue.count(queue.queue_name), "id": job.id}
    )


async def primary(request: Request) -> JSONResponse:
    return JSONResponse({"queue": task_queue(request).queue_name})


def app(**lifespan: object) -> Starlette:
    routes = [Route("/send/{backend}", send, methods=["POST"]), Route("/primary", primary)]
    return Starlette(routes=routes, lifespan=tasks_lifespan(CONFIG, **lifespan))  # type: ignore[arg-type]


def client(web: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="http://web")


async def test_the_lifespan_runs_the_backends_and_the_dependencies_find_them() -> None:
    web = app()
    async with web.router.lifespan_context(web), client(web) as http:
        assert (await http.get("/primary")).json() == {"queue": "main"}
        sent = (await http.post("/send/emails")).json()
        assert (sent["queue"], sent["waiting"]) == ("emails", 1)
    assert web.state.lexigram_tasks is None  # stopped with the app


async def test_an_unknown_backend_name_says_which_names_exist() -> None:
    web = app()
    async with web.router.lifespan_context(web), client(web) as http:
        with pytest.raises(TaskConfigurationError, match=r"'emails', 'main'"):
            await http.post("/send/nope")


async def test_a_dependency_outside_the_lifespan_says_what_to_add() -> None:
    web = Starlette()
    request = Request({"type": "http", "app": web, "headers": []})
    with pytest.raises(TaskConfigurationError, match="lifespan=tasks_lifespan"):
        task_provider(request)


async def test_the_apps_own_lifespan_runs_inside() -> None:
    seen: list[str] = []

    @asynccontextmanager
    async def own(web: Starlette) -> AsyncIterator[dict[str, bool]]:
        seen.append("queue" if web.state.lexigram_tasks.queue is not None else "none")
        yield {"ready": True}
        seen.append("stopped")

    web = app(inner=own)
    async with web.router.lifespan_context(web) as state:
        assert state == {"ready": True}
    assert seen == ["queue", "stopped"]
