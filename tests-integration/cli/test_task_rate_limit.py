"""``@task(rate_limit="20/s")`` holds across three ``lexigram-tasks worker`` processes.

On Redis, PostgreSQL and SQLite the task's bucket lives in the backend (on RabbitMQ, in the
backend its ``stores`` option names), so three worker processes together start its jobs at
20 a second, not 20 each. Every handler appends
its start time and process id to one file; the rate is counted over a window that
begins once all three workers consume, within a tolerance. A task without a limit,
enqueued behind the limited backlog, is not held back by it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from lexigram.contracts.tasks import Job, TaskBackendSpec
from lexigram.tasks._backends import TaskBackendRegistry
from lexigram.tasks.backends.postgres import migrate
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue

RATE = 20
TOLERANCE = 0.15
WINDOW = 2.0
WORKERS = 3

APP = """
import os
import time

from lexigram.tasks import task

LOG = os.environ["LEXIGRAM_RATE_TEST_LOG"]


def _note(kind: str) -> None:
    with open(LOG, "a") as out:  # one short line per write: appends do not interleave
        out.write(f"{kind} {time.time():.6f} {os.getpid()}\\n")


@task(name="limited", rate_limit="20/s")
async def limited(n: int) -> None:
    _note("limited")


@task(name="free")
async def free(n: int) -> None:
    _note("free")
"""


def _redis_backend(redis_url: str, prefix: str) -> Iterator[TaskBackendSpec]:
    options = {"key_prefix": prefix}
    yield TaskBackendSpec(type="redis", url=redis_url, queue_name="jobs", options=options)


def _postgres_backend(
    dsn: str, drop_pg_schema: Callable[[str, str], Coroutine[Any, Any, None]]
) -> Iterator[TaskBackendSpec]:
    schema = f"lexigram_rate_{uuid.uuid4().hex[:8]}"
    asyncio.run(migrate(dsn, schema))
    yield TaskBackendSpec(type="postgres", url=dsn, queue_name="jobs", options={"schema": schema})
    asyncio.run(drop_pg_schema(dsn, schema))


def _rabbitmq_backend(amqp_url: str, redis_url: str, prefix: str) -> Iterator[TaskBackendSpec]:
    queue_name = f"lexigram-rate-{uuid.uuid4().hex[:8]}"
    stores = {"type": "redis", "url": redis_url, "options": {"key_prefix": prefix}}
    options = {"stores": stores}
    yield TaskBackendSpec(type="rabbitmq", url=amqp_url, queue_name=queue_name, options=options)
    asyncio.run(_delete_rabbitmq_queue(amqp_url, queue_name))


async def _delete_rabbitmq_queue(amqp_url: str, queue_name: str) -> None:
    queue = RabbitMQTaskQueue(amqp_url, queue_name)
    try:
        await queue.delete_queues(if_empty=False)
    finally:
        await queue.close()


def _sqlite_backend(path: Path) -> Iterator[TaskBackendSpec]:
    yield TaskBackendSpec(type="sqlite", url=f"sqlite:///{path}", queue_name="jobs")


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("postgres", marks=pytest.mark.postgres),
        "sqlite",
        # RabbitMQ shares the bucket of the backend its ``stores`` option names.
        pytest.param("rabbitmq", marks=[pytest.mark.rabbitmq, pytest.mark.redis]),
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TaskBackendSpec]:
    """The backend, on a key prefix, schema or file of its own (removed afterwards)."""
    # The top conftest's redis_prefix deletes its keys after the test.
    if request.param == "redis":
        made = _redis_backend(
            request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        )
    elif request.param == "postgres":
        made = _postgres_backend(
            request.getfixturevalue("postgres_dsn"), request.getfixturevalue("drop_pg_schema")
        )
    elif request.param == "rabbitmq":
        made = _rabbitmq_backend(
            request.getfixturevalue("amqp_url"),
            request.getfixturevalue("redis_url"),
            request.getfixturevalue("redis_prefix"),
        )
    else:
        made = _sqlite_backend(tmp_path / "tasks.db")
    yield from made


async def _enqueue(spec: TaskBackendSpec, jobs: list[Job]) -> None:
    queue = TaskBackendRegistry.with_defaults().create_queue(spec)
    try:
        await queue.enqueue_many(jobs)
    finally:
        await queue.close()


def test_three_worker_processes_start_a_20_per_second_task_20_times_a_second(
    backend: TaskBackendSpec,
    tmp_path: Path,
    write_app: Callable[[str], str],
    cli_process: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = backend
    section = {
        "type": spec.type,
        "url": spec.url,
        "queue_name": spec.queue_name,
        "options": dict(spec.options),
    }
    config = tmp_path / "tasks.yaml"  # YAML reads JSON
    # max_deliveries=1: a job given back for its limit and delivered again is no crash loop.
    worker_section = {"poll_interval": 0.05, "max_deliveries": 1}
    config.write_text(json.dumps({"tasks": {"backend": section, "worker": worker_section}}))
    log = tmp_path / "starts.log"
    log.touch()
    monkeypatch.setenv("LEXIGRAM_RATE_TEST_LOG", str(log))
    app = write_app(APP)
    # Enqueued by name (not through .delay()): the task's definition sets the limit.
    backlog = [Job(name="limited", args=(n,)) for n in range(int(RATE * (WINDOW + 3)))]
    asyncio.run(_enqueue(spec, [*backlog, *(Job(name="free", args=(n,)) for n in range(20))]))

    workers = [
        cli_process(
            "worker", app, "--config", str(config), "--concurrency", "4", "--log-level", "info"
        )
        for _ in range(WORKERS)
    ]
    for worker in workers:
        worker.wait_for(r"Worker .* consuming ")
    began = time.time()
    time.sleep(WINDOW + 0.3)
    # Killed, not stopped: a stop hands back the jobs a worker holds, and another worker
    # still running would count that delivery (max_deliveries is 1 here on purpose).
    for worker in workers:
        worker.process.kill()
    for worker in workers:
        worker.process.wait(timeout=30)
    logged = [line for worker in workers for line in _all_lines(worker)]
    assert any("consuming" in line for line in logged)
    assert [line for line in logged if "offers no rate limiter" in line] == []
    assert [line for line in logged if "dead-lettered" in line or "retrying" in line] == []

    rows = [line.split() for line in log.read_text().splitlines()]
    limited = sorted(float(at) for kind, at, _ in rows if kind == "limited")
    free = [float(at) for kind, at, _ in rows if kind == "free"]
    in_window = [at for at in limited if began <= at < began + WINDOW]
    rate = len(in_window) / WINDOW
    pids = {pid for kind, at, pid in rows if kind == "limited" and began <= float(at)}
    print(  # noqa: T201 - evidence, shown with -s
        f"\n{spec.type}: {len(in_window)} starts of the 20/s task in {WINDOW} s = {rate:.1f}/s "
        f"by {len(pids)} processes; {len(limited)} in all"
    )
    assert RATE * (1 - TOLERANCE) <= rate <= RATE * (1 + TOLERANCE), rate
    assert len(pids) == WORKERS  # every process took its share of one limit
    # The unlimited jobs behind the limited backlog ran, without waiting for it.
    assert len(free) == 20
    assert max(free) < began + 1.0
    assert len(limited) < len(backlog)


def _all_lines(worker: Any) -> list[str]:
    """Every line the (exited) worker process wrote to stderr."""
    worker._thread.join(timeout=10)
    while not worker._lines.empty():
        worker.seen.append(worker._lines.get_nowait())
    return list(worker.seen)


@pytest.fixture
def plain_rabbitmq(amqp_url: str) -> Iterator[TaskBackendSpec]:
    """A RabbitMQ queue of this test's own, without ``stores`` (deleted afterwards)."""
    queue_name = f"lexigram-rate-{uuid.uuid4().hex[:8]}"
    yield TaskBackendSpec(type="rabbitmq", url=amqp_url, queue_name=queue_name)
    asyncio.run(_delete_rabbitmq_queue(amqp_url, queue_name))


@pytest.mark.rabbitmq
def test_a_worker_on_rabbitmq_without_stores_warns_at_start_that_the_limit_is_per_process(
    plain_rabbitmq: TaskBackendSpec,
    tmp_path: Path,
    write_app: Callable[[str], str],
    cli_process: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = plain_rabbitmq
    section = {"type": "rabbitmq", "url": spec.url, "queue_name": spec.queue_name}
    config = tmp_path / "tasks.yaml"
    config.write_text(json.dumps({"tasks": {"backend": section}}))
    monkeypatch.setenv("LEXIGRAM_RATE_TEST_LOG", str(tmp_path / "starts.log"))
    worker = cli_process("worker", write_app(APP), "--config", str(config), "--log-level", "info")
    warning = worker.wait_for(r"offers no rate limiter shared")
    assert "'limited'" in warning.string
    assert "'20/s'" in warning.string
    assert "per worker process" in warning.string
    worker.wait_for(r"Worker .* consuming ")  # given before the worker consumes
    worker.process.terminate()
    assert worker.process.wait(timeout=30) == 0
