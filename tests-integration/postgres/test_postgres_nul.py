"""U+0000 anywhere in a job never keeps it from being dead-lettered (nor stored at all).

PostgreSQL's ``text`` and ``jsonb`` refuse U+0000 (jsonb: "\\u0000 cannot be converted to
text"). Jobs are stored as ``bytea`` and always were; the store tables kept their
records as jsonb, so a failing job whose error, traceback or arguments held a NUL could
not be dead-lettered: the DLQ insert failed, the worker retried it later instead, and
it ran again forever without ever showing in ``dlq list``. The stores keep JSON text
(``json``) since migration ``stores v2``; these tests fail on the jsonb tables.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from lexigram.contracts.tasks import (
    POISON_JOB_NAME,
    Job,
    JobResult,
    ProgressInfo,
    TaskBackendSpec,
    TaskValidationError,
    WorkflowResult,
    WorkflowStatus,
)
from lexigram.tasks.backends.postgres import PostgresTaskQueue, backend, migrate
from lexigram.tasks.dlq import PersistentDeadLetterQueue
from lexigram.tasks.execution import TaskWorker, TaskWorkerServices

pytestmark = pytest.mark.postgres

NUL = "\x00"


@pytest_asyncio.fixture
async def spec(postgres_dsn: str, pg_schema: str, unique_name: str) -> TaskBackendSpec:
    return TaskBackendSpec(
        name="pg",
        type="postgres",
        url=postgres_dsn,
        queue_name=f"q-{unique_name}",
        options={"schema": pg_schema, "namespace": f"ns-{unique_name}"},
    )


@pytest_asyncio.fixture
async def build(spec: TaskBackendSpec) -> AsyncIterator[Callable[..., Any]]:
    made: list[Any] = []

    def factory(name: str, /, **kwargs: Any) -> Any:
        obj = getattr(backend, name)(spec, **kwargs)
        made.append(obj)
        return obj

    yield factory
    for obj in made:
        if type(obj).__name__ == "PostgresDLQBackend":
            await obj.clear()
        await obj.close()


async def _wait_for(predicate: Callable[[], Any], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_every_store_keeps_a_nul(build: Callable[..., Any]) -> None:
    results = build("create_result_store")
    failed = JobResult.fail(f"ValueError: bad{NUL}byte")
    await results.store("job-1", failed)
    stored = await results.get("job-1")
    assert stored is not None
    assert stored.error == failed.error

    progress = build("create_progress_store")
    await progress.save(ProgressInfo(job_id="job-1", current=1, total=2, message=f"a{NUL}b"))
    info = await progress.get("job-1")
    assert info is not None
    assert info.message == f"a{NUL}b"

    dlq = build("create_dlq_backend")
    await dlq.add("rec-1", {"error": f"boom{NUL}", "traceback": f"line{NUL}"})
    assert await dlq.get("rec-1") == {"error": f"boom{NUL}", "traceback": f"line{NUL}"}

    schedules = build("create_scheduler_store")
    await schedules.save_job("cron-1", {"name": "t", "args": [f"x{NUL}"], "next_run": 1.0})
    assert (await schedules.load_jobs())["cron-1"]["args"] == [f"x{NUL}"]

    workflows = build("create_workflow_state_store")
    state = WorkflowResult(workflow_id="wf-1", status=WorkflowStatus.FAILED, error=f"e{NUL}")
    await workflows.save_state("wf-1", state)
    loaded = await workflows.load_state("wf-1")
    assert loaded is not None
    assert loaded.error == f"e{NUL}"

    idempotency = build("create_idempotency_store")
    key = f"key-{uuid.uuid4().hex}"
    assert await idempotency.set_if_absent(key, {"result": f"r{NUL}"}, 60) is None
    assert await idempotency.get(key) == {"result": f"r{NUL}"}

    cache = build("create_cache_backend")
    cache_key = f"nul-{uuid.uuid4().hex}"
    await cache.set(cache_key, f"v{NUL}w", 60)
    assert await cache.get(cache_key) == f"v{NUL}w"
    await cache.delete(cache_key)


async def test_failing_job_with_nul_is_dead_lettered(
    spec: TaskBackendSpec, build: Callable[..., Any]
) -> None:
    """Args, error and traceback all carry U+0000; the job lands in the DLQ once."""
    queue = backend.create_queue(spec)
    dlq = PersistentDeadLetterQueue(backend=build("create_dlq_backend"), queue=queue)
    runs: list[str] = []

    async def breaks(text: str) -> None:
        runs.append(text)
        msg = f"cannot parse {text} at byte{NUL}"
        raise ValueError(msg)

    worker = TaskWorker(
        "nul-worker", queue, {"breaks": breaks}, services=TaskWorkerServices(dead_letter_queue=dlq)
    )
    job = Job(name="breaks", args=(f"a{NUL}b",), max_retries=0)
    await queue.enqueue(job)
    task = asyncio.create_task(worker.start())
    try:

        async def dead_lettered() -> bool:
            return await dlq.backend.get(job.id) is not None or bool(
                [r for r in await dlq.backend.list_all() if job.id in str(r)]
            )

        await _wait_for(dead_lettered, 10.0, "the job to be dead-lettered")
        await _wait_for(
            lambda: _is(queue.count(queue.queue_name), 0), 5.0, "the queue to forget the job"
        )
    finally:
        await worker.stop()
        await asyncio.wait_for(task, 10.0)
        await queue.close()
    assert runs == [f"a{NUL}b"]
    records = await dlq.backend.list_all()
    (record,) = [r for r in records if job.id in str(r)]
    assert record["job_args"] == [f"a{NUL}b"]
    assert NUL in record["error"]


async def _is(awaitable: Any, expected: Any) -> bool:
    return bool(await awaitable == expected)


async def _plant(queue: PostgresTaskQueue, raw: bytes) -> str:
    config = queue.config
    job_id = f"raw-{uuid.uuid4().hex}"
    conn = await asyncpg.connect(config.dsn)
    try:
        await conn.execute(
            f'INSERT INTO "{config.schema}"."{config.table}" (id, queue, payload) '  # noqa: S608 - test schema
            "VALUES ($1, $2, $3)",
            job_id,
            config.queue_name,
            raw,
        )
    finally:
        await conn.close()
    return job_id


async def test_raw_bytes_with_nul_in_the_table_are_dead_lettered(
    spec: TaskBackendSpec, build: Callable[..., Any]
) -> None:
    queue = backend.create_queue(spec)
    dlq = PersistentDeadLetterQueue(backend=build("create_dlq_backend"), queue=queue)
    worker = TaskWorker("nul-raw", queue, {}, services=TaskWorkerServices(dead_letter_queue=dlq))
    poison_id = await _plant(queue, b"\x00\x01 not a job \x00{")
    task = asyncio.create_task(worker.start())
    try:

        async def dead_lettered() -> bool:
            return any(poison_id in str(r) for r in await dlq.backend.list_all())

        await _wait_for(dead_lettered, 10.0, "the raw payload to be dead-lettered")
        await _wait_for(lambda: _is(queue.count(queue.queue_name), 0), 5.0, "the queue to empty")
    finally:
        await worker.stop()
        await asyncio.wait_for(task, 10.0)
        await queue.close()
    (record,) = [r for r in await dlq.backend.list_all() if poison_id in str(r)]
    assert POISON_JOB_NAME in str(record)


def test_dlq_list_shows_the_nul_job(
    postgres_dsn: str, pg_schema: str, unique_name: str, tmp_path: Path
) -> None:
    """The CLI lists a record holding U+0000 (what an operator looks at)."""
    namespace = f"cli-{unique_name}"
    spec = TaskBackendSpec(
        name="pg",
        type="postgres",
        url=postgres_dsn,
        options={"schema": pg_schema, "namespace": namespace},
    )

    async def add() -> str:
        dlq = PersistentDeadLetterQueue(backend=backend.create_dlq_backend(spec))
        job = Job(name="nul_task", args=(f"x{NUL}y",))
        await dlq.add(job, f"ValueError: bad{NUL}byte", traceback=f"Traceback{NUL}")
        await dlq.backend.close()  # type: ignore[attr-defined]
        return job.id

    job_id = asyncio.run(add())
    config = tmp_path / "lexigram.yaml"
    config.write_text(
        "tasks:\n"
        "  backend:\n"
        "    type: postgres\n"
        f"    url: {postgres_dsn}\n"
        "    options:\n"
        f"      schema: {pg_schema}\n"
        f"      namespace: {namespace}\n"
    )
    done = subprocess.run(  # noqa: S603 - our own CLI
        [
            sys.executable,
            "-m",
            "lexigram.tasks.cli",
            "dlq",
            "list",
            "--json",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert job_id in done.stdout
    assert "nul_task" in done.stdout


async def test_stores_v2_upgrades_a_v1_schema_in_place(
    postgres_dsn: str, pg_conn: asyncpg.Connection, stores_schema_at: Callable[..., Any]
) -> None:
    """A schema written by the previous version keeps its records and then takes NULs."""
    schema = await stores_schema_at(1)
    await pg_conn.execute(
        f'INSERT INTO "{schema}".dead_letters (namespace, record_id, data) '  # noqa: S608 - test schema
        """VALUES ('default', 'old', '{"error": "before the upgrade"}'::jsonb)"""
    )
    await pg_conn.execute(
        f"INSERT INTO \"{schema}\".cache (key, value) VALUES ('k', 'old value')"  # noqa: S608 - test schema
    )
    applied = await migrate(postgres_dsn, schema)
    assert applied[0] == "stores v2 NUL-safe records (json) and cache values (bytea)"
    spec = TaskBackendSpec(type="postgres", url=postgres_dsn, options={"schema": schema})
    dlq = backend.create_dlq_backend(spec)
    cache = backend.create_cache_backend(spec)
    try:
        assert await dlq.get("old") == {"error": "before the upgrade"}
        assert await cache.get("k") == "old value"
        await dlq.add("new", {"error": f"after{NUL}"})
        assert await dlq.get("new") == {"error": f"after{NUL}"}
    finally:
        await dlq.close()
        await cache.close()


async def test_a_nul_in_a_key_is_a_validation_error_naming_it(build: Callable[..., Any]) -> None:
    """Keys and names live in text columns: a NUL there is refused with one clear line."""
    cache = build("create_cache_backend")
    with pytest.raises(TaskValidationError, match=r"U\+0000 \(NUL\)"):
        await cache.set(f"key{NUL}", "value", 60)
    locks = build("create_lock_manager")
    with pytest.raises(TaskValidationError, match="Remove the NUL character"):
        await locks.acquire(f"lock{NUL}", timeout=1.0).__aenter__()
