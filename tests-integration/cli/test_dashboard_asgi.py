"""The dashboard's pages and actions, through httpx's ASGI transport, on a SQLite database.

Each test seeds the database with the stores a worker and a scheduler write (a waiting
job, a dead letter, a schedule, a worker registration, a progress report), then reads
the pages and clicks the actions as a browser would, and checks the outcome in the
database itself.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from click.testing import CliRunner

from lexigram.contracts.tasks import (
    Job,
    JobTemplate,
    ProgressInfo,
    TaskBackendSpec,
    make_poison_job,
)
from lexigram.tasks import JobChain, TaskConfig, task
from lexigram.tasks.admin import WORKER_KEY_PREFIX
from lexigram.tasks.cli import cli
from lexigram.tasks.cli._context import open_queue, open_stores, release_backend
from lexigram.tasks.cli._dashboard import TOKEN_ENV
from lexigram.tasks.dashboard import Dashboard, DashboardAuth, create_dashboard
from lexigram.tasks.di._stack import build_store
from lexigram.tasks.dlq import PersistentDeadLetterQueue
from lexigram.tasks.scheduling import ScheduledJob

BASE = "http://127.0.0.1"


@dataclass
class Seeded:
    spec: TaskBackendSpec
    dashboard: Dashboard
    client: httpx.AsyncClient
    waiting: Job
    dead: Job
    running: Job


def _config(tmp_path: Path) -> TaskConfig:
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    return TaskConfig.model_validate({"backend": {"url": url, "queue_name": "jobs"}})


async def _seed(spec: TaskBackendSpec) -> tuple[Job, Job, Job]:
    queue = open_queue(spec)
    stores = open_stores(spec, "dlq_backend", "scheduler_store", "cache")
    progress = build_store(spec, "create_progress_store", "tasks.backend")
    try:
        waiting = Job(name="send_email", args=("ada@example.com",), queue_name="jobs")
        await queue.enqueue(waiting)
        dead = Job(name="resize", args=(7,), kwargs={"width": 640}, queue_name="jobs")
        dlq = PersistentDeadLetterQueue(backend=stores.dlq_backend, queue=queue)
        await dlq.add(
            dead,
            "ValueError: bad image",
            "Traceback ...\nValueError: bad image",
            reason="exhausted",
        )
        running = Job(name="export", queue_name="jobs")
        await progress.save(
            ProgressInfo(job_id=running.id, current=3, total=10, percentage=30.0, message="rows")
        )
        record = {
            "id": "host:1",
            "queues": ["jobs"],
            "processed": 5,
            "succeeded": 4,
            "failed": 1,
            "in_flight": 1,
            "concurrency": 4,
            "started_at": time.time() - 60,
            "seen_at": time.time(),
            "running": [{"id": running.id, "task": "export", "started_at": time.time()}],
        }
        await stores.cache.set(WORKER_KEY_PREFIX + "host:1", json.dumps(record), ttl=60)
        nightly = ScheduledJob(
            job_template=JobTemplate(name="nightly_report"),
            cron_expression="0 3 * * *",
            next_run=time.time() + 3600,
            job_id="cli:nightly_report",
            namespace="reports",
            queue_name="jobs",
        )
        await stores.scheduler_store.save_job("reports/cli:nightly_report", nightly.to_dict())
        return waiting, dead, running
    finally:
        await stores.close()
        await queue.close()
        await progress.close()


@pytest_asyncio.fixture
async def seeded(tmp_path: Path) -> AsyncIterator[Seeded]:
    dashboard = create_dashboard(_config(tmp_path))
    spec = dashboard.backend.spec
    waiting, dead, running = await _seed(spec)
    transport = httpx.ASGITransport(app=dashboard)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield Seeded(spec, dashboard, client, waiting, dead, running)
    await dashboard.close()
    await release_backend(spec)


async def _csrf(client: httpx.AsyncClient, path: str = "/") -> str:
    page = await client.get(path)
    match = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert match is not None
    assert client.cookies.get("lexigram_dashboard_csrf") == match.group(1)
    return match.group(1)


async def _dead_letter_ids(spec: TaskBackendSpec) -> set[str]:
    stores = open_stores(spec, "dlq_backend")
    try:
        return {str(d["job_id"]) for d in await stores.dlq_backend.list_all()}
    finally:
        await stores.close()


async def test_the_overview_shows_queues_workers_progress_and_failures(seeded: Seeded) -> None:
    page = await seeded.client.get("/")
    assert page.status_code == 200
    html = page.text
    assert re.search(r'<tr data-queue="jobs"><td>jobs</td><td class="num waiting">1</td>', html)
    assert 'data-worker="host:1"' in html
    assert f'id="progress-{seeded.running.id}" value="3" max="10"' in html
    assert seeded.dead.id in html
    assert "ValueError: bad image" in html
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    for name in ("queues", "workers", "running", "failures"):
        fragment = await seeded.client.get(f"/fragments/{name}")
        assert fragment.status_code == 200
        assert "<html" not in fragment.text
    assert (await seeded.client.get("/fragments/nope")).status_code == 404


async def test_every_page_renders(seeded: Seeded) -> None:
    dlq = await seeded.client.get("/dlq")
    assert seeded.dead.id in dlq.text
    assert "1 shown of 1" in dlq.text
    schedules = await seeded.client.get("/schedules")
    assert "cli:nightly_report" in schedules.text
    assert "active" in schedules.text
    # A prefix into the id's random part: the time-ordered ids of jobs made together share
    # their first characters (the millisecond they were made).
    job = await seeded.client.get(f"/jobs/{seeded.dead.id[:23]}")
    assert job.status_code == 200
    assert "dead-lettered" in job.text
    assert "Traceback ..." in job.text
    assert "&#34;width&#34;: 640" in job.text or '"width": 640' in job.text
    waiting = await seeded.client.get(f"/jobs/{seeded.waiting.id}")
    assert "ada@example.com" in waiting.text
    assert 'id="job-status">pending' in waiting.text
    assert (await seeded.client.get("/jobs/zzzzzzzz")).status_code == 404
    lookup = await seeded.client.get("/jobs", params={"id": seeded.waiting.id})
    assert lookup.status_code == 303
    assert lookup.headers["location"].endswith(seeded.waiting.id)
    assert (await seeded.client.get("/workflows")).status_code == 200
    assert (await seeded.client.get("/workflows/nope")).status_code == 404
    script = await seeded.client.get("/static/dashboard.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert (await seeded.client.get("/static/../__init__.py")).status_code == 404


async def test_retry_from_the_dlq_puts_the_job_back_on_its_queue(seeded: Seeded) -> None:
    token = await _csrf(seeded.client, "/dlq")
    answer = await seeded.client.post(
        "/dlq/retry", data={"csrf_token": token, "one": seeded.dead.id}
    )
    assert answer.status_code == 303
    assert "Requeued+job" in answer.headers["location"]
    assert await _dead_letter_ids(seeded.spec) == set()
    queue = open_queue(seeded.spec)
    try:
        back = await queue.get_job(seeded.dead.id)
        assert back is not None
        assert back.retry_count == 0
    finally:
        await queue.close()
    shown = await seeded.client.get(answer.headers["location"])
    assert "Requeued job" in shown.text


async def test_retry_all_says_how_many_poison_records_it_left(seeded: Seeded) -> None:
    stores = open_stores(seeded.spec, "dlq_backend")
    try:
        poison = make_poison_job("poison-0001", b"\xff not a job", "bad", queue_name="jobs")
        await PersistentDeadLetterQueue(backend=stores.dlq_backend).add(
            poison, "TaskDecodeError: bad", reason="poison"
        )
    finally:
        await stores.close()
    token = await _csrf(seeded.client, "/dlq")
    answer = await seeded.client.post("/dlq/retry-all", data={"csrf_token": token})
    assert answer.status_code == 303
    shown = await seeded.client.get(answer.headers["location"])
    assert "Requeued 1 job(s). Left 1 in the DLQ" in shown.text
    assert await _dead_letter_ids(seeded.spec) == {poison.id}


async def test_bulk_delete_removes_the_selected_dead_letters(seeded: Seeded) -> None:
    token = await _csrf(seeded.client, "/dlq")
    answer = await seeded.client.post(
        "/dlq/delete", data={"csrf_token": token, "id": [seeded.dead.id, "unknown"]}
    )
    assert answer.status_code == 303
    assert "Deleted+1" in answer.headers["location"]
    assert await _dead_letter_ids(seeded.spec) == set()


async def test_a_post_without_the_csrf_token_or_from_another_site_is_refused(
    seeded: Seeded,
) -> None:
    token = await _csrf(seeded.client, "/dlq")
    no_token = await seeded.client.post("/dlq/delete", data={"id": seeded.dead.id})
    assert no_token.status_code == 403
    assert "CSRF" in no_token.text
    wrong = await seeded.client.post("/dlq/delete", data={"id": seeded.dead.id, "csrf_token": "x"})
    assert wrong.status_code == 403
    foreign = await seeded.client.post(
        "/dlq/delete",
        data={"id": seeded.dead.id, "csrf_token": token},
        headers={"origin": "https://evil.example"},
    )
    assert foreign.status_code == 403
    assert "Origin" in foreign.text
    cross = await seeded.client.post(
        "/dlq/delete",
        data={"id": seeded.dead.id, "csrf_token": token},
        headers={"sec-fetch-site": "cross-site"},
    )
    assert cross.status_code == 403
    # A token from another browser (its own cookie) does not count either.
    seeded.client.cookies.set("lexigram_dashboard_csrf", "another")
    stolen = await seeded.client.post(
        "/dlq/delete", data={"id": seeded.dead.id, "csrf_token": token}
    )
    assert stolen.status_code == 403
    assert await _dead_letter_ids(seeded.spec) == {seeded.dead.id}
    seeded.client.cookies.set("lexigram_dashboard_csrf", token)
    by_header = await seeded.client.post(
        "/dlq/delete", data={"id": seeded.dead.id}, headers={"x-csrf-token": token}
    )
    assert by_header.status_code == 303
    assert await _dead_letter_ids(seeded.spec) == set()


async def _schedule(spec: TaskBackendSpec) -> dict[str, Any]:
    stores = open_stores(spec, "scheduler_store")
    try:
        return (await stores.scheduler_store.load_jobs())["reports/cli:nightly_report"]
    finally:
        await stores.close()


async def test_schedules_pause_resume_and_run_now(seeded: Seeded) -> None:
    token = await _csrf(seeded.client, "/schedules")
    key = "reports/cli:nightly_report"
    paused = await seeded.client.post("/schedules/pause", data={"csrf_token": token, "key": key})
    assert "Paused+schedule" in paused.headers["location"]
    assert (await _schedule(seeded.spec))["enabled"] is False
    assert "paused" in (await seeded.client.get("/schedules")).text
    resumed = await seeded.client.post("/schedules/resume", data={"csrf_token": token, "key": key})
    assert "Resumed" in resumed.headers["location"]
    assert (await _schedule(seeded.spec))["enabled"] is True
    ran = await seeded.client.post("/schedules/run-now", data={"csrf_token": token, "key": key})
    assert "Enqueued+job" in ran.headers["location"]
    record = await _schedule(seeded.spec)
    assert record["last_outcome"] == "enqueued"
    queue = open_queue(seeded.spec)
    try:
        job = await queue.get_job(record["last_job_id"])
        assert job is not None
        assert job.name == "nightly_report"
        assert job.metadata["trigger"] == "run-now"
    finally:
        await queue.close()
    unknown = await seeded.client.post("/schedules/pause", data={"csrf_token": token, "key": "x"})
    assert "kind=error" in unknown.headers["location"]


async def test_a_token_is_required_when_set(tmp_path: Path) -> None:
    dashboard = create_dashboard(_config(tmp_path), auth=DashboardAuth(token="s3cret"))  # noqa: S106 - a test secret
    transport = httpx.ASGITransport(app=dashboard)
    try:
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            assert (await client.get("/")).status_code == 401
            browser = await client.get("/", headers={"accept": "text/html"})
            assert browser.status_code == 303
            assert browser.headers["location"] == "/login"
            ok = await client.get("/", headers={"authorization": "Bearer s3cret"})
            assert ok.status_code == 200
            token = await _csrf(client, "/login")
            bad = await client.post("/login", data={"csrf_token": token, "token": "nope"})
            assert bad.status_code == 401
            good = await client.post("/login", data={"csrf_token": token, "token": "s3cret"})
            assert good.status_code == 303
            cookie = client.cookies.get("lexigram_dashboard_auth")
            assert cookie
            assert "s3cret" not in cookie
            assert (await client.get("/dlq")).status_code == 200
    finally:
        await dashboard.close()
    assert "s3cret" not in repr(dashboard)


async def test_basic_auth_is_required_when_set(tmp_path: Path) -> None:
    auth = DashboardAuth(username="ops", password="pw")  # noqa: S106 - a test secret
    dashboard = create_dashboard(_config(tmp_path), auth=auth)
    transport = httpx.ASGITransport(app=dashboard)
    try:
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            refused = await client.get("/")
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith("Basic")
            wrong = base64.b64encode(b"ops:nope").decode()
            assert (
                await client.get("/", headers={"authorization": f"Basic {wrong}"})
            ).status_code == 401
            right = base64.b64encode(b"ops:pw").decode()
            assert (
                await client.get("/", headers={"authorization": f"Basic {right}"})
            ).status_code == 200
    finally:
        await dashboard.close()


async def test_mounted_under_a_prefix_links_and_cookies_stay_under_it(tmp_path: Path) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    dashboard = create_dashboard(_config(tmp_path))
    app = Starlette(routes=[Mount("/tasks", app=dashboard)])
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            page = await client.get("/tasks/")
            assert page.status_code == 200
            assert 'data-poll="/tasks/fragments/queues"' in page.text
            assert "Path=/tasks" in page.headers["set-cookie"]
            assert (await client.get("/tasks/fragments/queues")).status_code == 200
    finally:
        await dashboard.close()


def test_the_command_refuses_a_public_address_without_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    result = CliRunner().invoke(cli, ["dashboard", "--host", "0.0.0.0"])  # noqa: S104 - refused
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert "Refusing to serve the dashboard on 0.0.0.0 without authentication" in lines[0]
    bad = CliRunner().invoke(cli, ["dashboard", "--host", "10.0.0.5", "--basic-auth", "ops"])
    assert bad.exit_code == 2
    assert "USER:PASSWORD" in bad.output


def test_the_command_refuses_a_sqlite_file_that_does_not_exist(tmp_path: Path) -> None:
    # Serving a mistyped path would show an empty system, and create the file.
    missing = tmp_path / "typo.db"
    result = CliRunner().invoke(cli, ["dashboard", "--backend", f"sqlite:///{missing}"])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert f"The SQLite database {missing} does not exist" in line
    assert not missing.exists()


async def test_a_websocket_is_refused_unread(tmp_path: Path) -> None:
    dashboard = create_dashboard(_config(tmp_path))
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        msg = "the dashboard read a websocket message"
        raise AssertionError(msg)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await dashboard({"type": "websocket", "path": "/", "headers": []}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]


@task
async def dashboard_step(x: int) -> int:
    return x


async def test_a_workflow_page_names_the_job_of_a_running_step(seeded: Seeded) -> None:
    """As `workflow show`: a step whose job a worker holds says running, with its job id."""
    queue = open_queue(seeded.spec)
    store = build_store(seeded.spec, "create_workflow_state_store", "tasks.backend")
    assert store is not None
    try:
        chain = JobChain(dashboard_step.s(1), dashboard_step.s(2))
        handle = await chain.apply_async(queue, store=store)
        held = await queue.dequeue_batch(10)
        first = next(job for job in held if job.name == dashboard_step.name)
        run = await seeded.dashboard.backend.workflow(handle.workflow_id)
        assert run is not None
        step = run["steps"][0]
        assert (step["status"], step["job_id"]) == ("running", first.id)
        page = await seeded.client.get(f"/workflows/{handle.workflow_id}")
        assert page.status_code == 200
        assert "running" in page.text
    finally:
        await store.close()
        await queue.close()
