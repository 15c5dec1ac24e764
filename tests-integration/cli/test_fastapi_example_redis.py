"""The FastAPI example (examples/fastapi_app) against real Redis, called through httpx.

The web app runs in this process (its lifespan started and stopped by the test, requests
through httpx's ASGI transport); the jobs run in ``lexigram-tasks worker`` as a process of
its own, as the example's docstring tells users to run it.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import httpx
import pytest

from lexigram.tasks.decorators import DEFAULT_ENQUEUE_TIMEOUT, configure_enqueue_timeout

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]
TcpProxy = Any  # the `tcp_proxy` fixture's type lives in the top conftest.py


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> Iterator[ModuleType]:
    """The example app module, configured (as its docstring says) for the test's Redis."""
    monkeypatch.setenv("LEX_TASKS__BACKEND__URL", redis_url)
    monkeypatch.setenv("LEX_TASKS__BACKEND__QUEUE_NAME", f"web-{uuid4().hex[:8]}")
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), *sys.path]))
    sys.modules.pop("examples.fastapi_app.app", None)
    yield importlib.import_module("examples.fastapi_app.app")
    sys.modules.pop("examples.fastapi_app.app", None)
    configure_enqueue_timeout(DEFAULT_ENQUEUE_TIMEOUT)


def client(module: ModuleType) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=module.app), base_url="http://example"
    )


async def test_a_request_enqueues_and_a_worker_process_runs_the_job(
    example: ModuleType, cli_process
) -> None:
    worker = cli_process("worker", "examples.fastapi_app.app")
    worker.wait_for(r"consuming")
    async with example.app.router.lifespan_context(example.app), client(example) as http:
        sent = await http.post("/thumbnails", json={"image_id": 7, "width": 320})
        assert sent.status_code == 202, sent.text
        job_id = sent.json()["job_id"]
        done = await http.get(f"/jobs/{job_id}", params={"wait": 20})
        assert done.status_code == 200, done.text
        assert done.json() == {
            "status": "completed",
            "result": {"image_id": 7, "width": 320, "height": 240},
        }
        missing = await http.get("/jobs/no-such-job")
        assert missing.status_code == 404


async def test_a_broker_that_stops_answering_fails_the_request_fast(
    example: ModuleType,
    redis_url: str,
    tcp_proxy: Callable[[str, int], Awaitable[TcpProxy]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The broker answers while the app starts (its start-up check would refuse a silent
    # one), then stops answering: a paused process, a frozen VM.
    parts = urlsplit(redis_url)
    proxy = await tcp_proxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    monkeypatch.setenv("LEX_TASKS__BACKEND__URL", proxy.url(redis_url))
    monkeypatch.setenv("LEX_TASKS__BACKEND__ENQUEUE_TIMEOUT", "0.5")
    app = importlib.reload(example).app
    async with app.router.lifespan_context(app), client(example) as http:
        proxy.pause()
        began = time.monotonic()
        sent = await http.post("/thumbnails", json={"image_id": 7})
        elapsed = time.monotonic() - began
        await proxy.cut()  # the held enqueue never reaches Redis
    assert sent.status_code == 503, sent.text
    assert "within 0.5 s (tasks.backend.enqueue_timeout)" in sent.json()["detail"]
    assert elapsed < 3, elapsed
