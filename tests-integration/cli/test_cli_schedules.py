"""Schedules you can manage, on Redis, PostgreSQL, SQLite and RabbitMQ: owners, state, CLI.

RabbitMQ carries the jobs and keeps its schedules in its ``stores`` backend (Redis here).

Each test drives the schedulers' checks directly (`_tick`) with the schedule made due,
so nothing waits for a cron occurrence; the ``lexigram-tasks schedule`` commands run
in-process (click's runner, in a thread) on the same backend as the schedulers.
"""

from __future__ import annotations

import asyncio
import json
import signal
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from click.testing import CliRunner, Result

from lexigram.app import Application
from lexigram.contracts.tasks import Job, JobTemplate, TaskBackendSpec, TaskQueueProtocol
from lexigram.tasks import TaskConfig, TaskProvider
from lexigram.tasks._backends import create_store
from lexigram.tasks.backends.postgres import migrate
from lexigram.tasks.cli import cli
from lexigram.tasks.cli._context import load_config, open_queue, release_backend, resolve_spec
from lexigram.tasks.scheduling import TaskScheduler

EVERY_SECOND = "* * * * * *"


@dataclass
class Target:
    """One backend: its config file (for the commands) and its spec (for the test)."""

    config: Path
    spec: TaskBackendSpec
    opened: list[Any]
    suffix: str

    def name(self, base: str) -> str:
        """A queue name of this test's own (a broker's queues outlive the test)."""
        return f"{base}{self.suffix}"

    def store(self) -> Any:
        store = create_store(self.spec, "create_scheduler_store")
        assert store is not None
        self.opened.append(store)
        return store

    def queue(self, name: str) -> TaskQueueProtocol:
        queue = open_queue(self.spec, self.name(name))
        self.opened.append(queue)
        return queue

    def scheduler(self, namespace: str, queue_name: str) -> TaskScheduler:
        return TaskScheduler(
            store=self.store(),
            namespace=namespace,
            queue_name=self.name(queue_name),
            check_interval=60.0,
        )

    async def run(self, *args: str) -> Result:
        argv = ["schedule", *args, "--config", str(self.config)]
        # Wide enough that the table's cells are not wrapped.
        return await asyncio.to_thread(CliRunner(env={"COLUMNS": "200"}).invoke, cli, argv)

    async def listed(self) -> list[dict[str, Any]]:
        done = await self.run("list", "--json")
        assert done.exit_code == 0, done.output
        rows: list[dict[str, Any]] = json.loads(done.stdout)
        return rows


def _write_config(path: Path, backend: str) -> Path:
    path.write_text(textwrap.dedent(backend))
    return path


def _redis_config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")  # its keys are deleted afterwards
    yield _write_config(
        tmp_path / "tasks.yaml",
        f"""
        tasks:
          backend:
            type: redis
            url: "{url}"
            queue_name: jobs
            options: {{key_prefix: {prefix}}}
        """,
    )


def _postgres_config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    dsn: str = request.getfixturevalue("postgres_dsn")
    drop_pg_schema = request.getfixturevalue("drop_pg_schema")
    schema = f"lexigram_sched_{uuid.uuid4().hex[:8]}"
    asyncio.run(migrate(dsn, schema))
    yield _write_config(
        tmp_path / "tasks.yaml",
        f"""
        tasks:
          backend:
            type: postgres
            url: "{dsn}"
            queue_name: jobs
            options: {{schema: {schema}}}
        """,
    )
    asyncio.run(drop_pg_schema(dsn, schema))


def _sqlite_config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    del request
    yield _write_config(
        tmp_path / "tasks.yaml",
        f"""
        tasks:
          backend:
            type: sqlite
            url: "sqlite:///{tmp_path / "schedules.db"}"
            queue_name: jobs
        """,
    )


def _rabbitmq_config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    amqp_url: str = request.getfixturevalue("amqp_url")
    stores = _redis_config(request, tmp_path)
    redis_yaml = next(stores).read_text()
    prefix = redis_yaml.split("key_prefix: ")[1].split("}")[0]
    url = redis_yaml.split('url: "')[1].split('"')[0]
    yield _write_config(
        tmp_path / "tasks.yaml",
        f"""
        tasks:
          backend:
            type: rabbitmq
            url: "{amqp_url}"
            queue_name: jobs{RABBITMQ_SUFFIX}
            options:
              stores: {{type: redis, url: "{url}", options: {{key_prefix: {prefix}}}}}
        """,
    )
    next(stores, None)  # the keys go with the test's redis_prefix


RABBITMQ_SUFFIX = f"-{uuid.uuid4().hex[:8]}"

CONFIGS: dict[str, Callable[[pytest.FixtureRequest, Path], Iterator[Path]]] = {
    "redis": _redis_config,
    "postgres": _postgres_config,
    "sqlite": _sqlite_config,
    "rabbitmq": _rabbitmq_config,
}


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("postgres", marks=pytest.mark.postgres),
        "sqlite",
        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
    ]
)
def config_path(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    yield from CONFIGS[request.param](request, tmp_path)


@pytest_asyncio.fixture
async def target(config_path: Path) -> AsyncIterator[Target]:
    spec = resolve_spec(load_config(str(config_path)))
    on_broker = spec.type == "rabbitmq"
    made = Target(config_path, spec, [], RABBITMQ_SUFFIX if on_broker else "")
    yield made
    if on_broker:
        made.queue("jobs")  # the queue the commands probe, deleted with the others
    for obj in made.opened:
        if on_broker and hasattr(obj, "delete_queues"):
            await obj.delete_queues(if_empty=False)
        await obj.close()
    await release_backend(spec)


def _collector(into: list[Job]) -> Callable[[Job], None]:
    return into.append


async def _check(scheduler: TaskScheduler, callback: Callable[[Job], Any]) -> None:
    """One scheduler check with every enabled schedule due now."""
    now = time.time()
    for job in scheduler.get_scheduled_jobs():
        job.next_run = job.cron.latest_at_or_before(now)
    scheduler._callback = callback
    scheduler.running = True
    await scheduler._tick()


async def test_two_applications_on_one_backend_never_fire_each_others_schedules(
    target: Target,
) -> None:
    first = target.scheduler("billing.tasks", "billing")
    second = target.scheduler("mail.tasks", "mail")
    # The same schedule id in both applications, as two @scheduled `tick` tasks give.
    await first.schedule_job(JobTemplate(name="billing_tick"), EVERY_SECOND, "cli:tick")
    await second.schedule_job(JobTemplate(name="mail_tick"), EVERY_SECOND, "cli:tick")
    # A record an older version saved without an owner: nobody fires it.
    await target.store().save_job(
        "cli:legacy",
        {
            "job_id": "cli:legacy",
            "job_template": {"name": "legacy_tick"},
            "cron_expression": EVERY_SECOND,
            "next_run": time.time() - 5,
        },
    )

    restarted = target.scheduler("mail.tasks", "mail")
    assert await restarted.restore_from_store() == 1
    billing_queue, mail_queue = target.queue("billing"), target.queue("mail")
    await _check(first, billing_queue.enqueue)
    await _check(restarted, mail_queue.enqueue)

    async def names(queue: TaskQueueProtocol) -> list[str]:
        jobs = await queue.dequeue_batch(10, timeout=0.5)
        return sorted(job.name for job in jobs)

    assert await names(billing_queue) == ["billing_tick"]
    assert await names(mail_queue) == ["mail_tick"]
    rows = {(r["namespace"], r["id"]): r for r in await target.listed()}
    assert set(rows) == {
        ("billing.tasks", "cli:tick"),
        ("mail.tasks", "cli:tick"),
        (None, "cli:legacy"),
    }
    assert rows["billing.tasks", "cli:tick"]["queue"] == target.name("billing")
    assert rows["mail.tasks", "cli:tick"]["queue"] == target.name("mail")


async def test_schedule_remove_stops_a_schedule(target: Target) -> None:
    scheduler = target.scheduler("app.tasks", "jobs")
    await scheduler.schedule_job(JobTemplate(name="tick"), EVERY_SECOND, "cli:tick")
    fired: list[Job] = []
    await _check(scheduler, _collector(fired))
    assert len(fired) == 1

    done = await target.run("remove", "cli:ti")  # a unique prefix is enough
    assert done.exit_code == 0, done.output
    assert "Removed schedule 'cli:tick' (namespace app.tasks)" in done.stdout
    await _check(scheduler, _collector(fired))
    assert len(fired) == 1  # not fired again
    assert scheduler.get_scheduled_job("cli:tick") is None
    assert await target.listed() == []


async def test_schedule_pause_survives_a_restart_and_resume_fires_again(target: Target) -> None:
    scheduler = target.scheduler("app.tasks", "jobs")
    await scheduler.schedule_job(JobTemplate(name="tick"), EVERY_SECOND, "cli:tick")
    done = await target.run("pause", "cli:tick")
    assert (done.exit_code, done.stdout.strip()) == (
        0,
        "Paused schedule 'cli:tick' (namespace app.tasks).",
    )
    fired: list[Job] = []
    await _check(scheduler, _collector(fired))
    assert fired == []
    [row] = await target.listed()
    assert row["enabled"] is False

    # The application restarts and declares its schedule again: it stays paused.
    restarted = target.scheduler("app.tasks", "jobs")
    restarted.schedule_job_sync(JobTemplate(name="tick"), EVERY_SECOND, "cli:tick")
    await restarted.restore_from_store()
    await restarted.schedule_job(JobTemplate(name="tick"), EVERY_SECOND, "cli:tick")
    assert restarted.scheduled_jobs["cli:tick"].enabled is False
    await _check(restarted, _collector(fired))
    assert fired == []

    done = await target.run("resume", "cli:tick")
    assert done.exit_code == 0, done.output
    assert "Resumed schedule 'cli:tick'" in done.stdout
    await restarted.sync_from_store()  # what the loop does before each check
    resumed = restarted.get_scheduled_job("cli:tick")
    assert resumed is not None
    assert resumed.enabled is True
    await _check(restarted, _collector(fired))
    assert [job.name for job in fired] == ["tick"]


async def test_schedule_run_now_enqueues_once_and_last_run_is_shown(target: Target) -> None:
    scheduler = target.scheduler("app.tasks", "reports")
    await scheduler.schedule_job(JobTemplate(name="report", args=(7,)), "0 3 * * *", "nightly")
    before = time.time()
    done = await target.run("run-now", "nightly")
    assert done.exit_code == 0, done.output
    assert f"on {target.name('reports')!r}" in done.stdout
    reports = target.queue("reports")
    [job] = await reports.dequeue_batch(10, timeout=0.5)
    assert (job.name, list(job.args), job.metadata["trigger"]) == ("report", [7], "run-now")
    assert await reports.dequeue_batch(10, timeout=0.2) == []  # once
    [row] = await target.listed()
    assert row["last_outcome"] == "enqueued"
    assert row["last_job_id"] == job.id
    assert row["last_run"] >= before
    report = await asyncio.to_thread(
        CliRunner().invoke, cli, ["inspect", "--json", "--config", str(target.config)]
    )
    [shown] = json.loads(report.stdout)["schedules"]
    assert shown["last_run"] == row["last_run"]


async def test_last_run_and_outcome_persist_across_a_restart(target: Target) -> None:
    scheduler = target.scheduler("app.tasks", "jobs")
    await scheduler.schedule_job(JobTemplate(name="tick"), EVERY_SECOND, "cli:tick")
    fired: list[Job] = []
    await _check(scheduler, _collector(fired))
    fire_time = fired[0].metadata["fire_time"]
    [row] = await target.listed()
    assert (row["last_run"], row["last_outcome"]) == (fire_time, "enqueued")
    assert row["next_run"] > fire_time

    table = await target.run("list")
    assert "enqueued" in table.stdout
    restarted = target.scheduler("app.tasks", "jobs")
    await restarted.restore_from_store()
    assert restarted.scheduled_jobs["cli:tick"].last_run == fire_time


async def test_schedule_unknown_id_is_one_line_with_exit_2(target: Target) -> None:
    # A schedule store in use (the commands refuse a SQLite file nothing has made).
    assert await target.store().load_jobs() == {}
    done = await target.run("pause", "nope")
    assert done.exit_code == 2
    assert done.output.strip().splitlines() == [
        (
            "error: No stored schedule has an id starting with 'nope'. Run `lexigram-tasks "
            "schedule list` (with the same --backend) to see the ids."
        )
    ]


TICK_APP = """
from lexigram.tasks import scheduled


@scheduled("* * * * * *", name="tick")
async def tick() -> None:
    return None
"""


def _redis_app_config(path: Path, url: str, prefix: str, queue_name: str) -> str:
    path.write_text(
        textwrap.dedent(
            f"""
            tasks:
              backend:
                type: redis
                url: "{url}"
                queue_name: {queue_name}
                options: {{key_prefix: {prefix}}}
              scheduler: {{check_interval: 0.2}}
            """
        )
    )
    return str(path)


@pytest.mark.redis
async def test_an_application_restoring_schedules_leaves_another_apps_alone(
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
    write_app: Callable[[str], str],
    cli_process: Callable[..., Any],
) -> None:
    # The first application: a `lexigram-tasks scheduler` process firing cli:tick.
    first = _redis_app_config(tmp_path / "first.yaml", redis_url, redis_prefix, "first")
    proc = cli_process("scheduler", write_app(TICK_APP), "--config", first, "--log-level", "info")
    proc.wait_for(r"Scheduler running")  # its schedule is stored by then
    # The second: a TaskProvider on the same Redis that restores its schedules at boot.
    second = _redis_app_config(tmp_path / "second.yaml", redis_url, redis_prefix, "second")
    provider = TaskProvider(config=TaskConfig.from_yaml(second), worker_count=0)
    async with Application.boot(providers=[provider]):
        assert provider.scheduler is not None
        assert provider.scheduler.get_scheduled_jobs() == []
        await asyncio.sleep(1.05)  # at least one occurrence of the first app's schedule
        queue = provider.queue
        assert queue is not None
        assert await queue.count("second") == 0
    proc.process.send_signal(signal.SIGINT)
    assert proc.process.wait(timeout=30) == 0
    spec = resolve_spec(load_config(first))
    first_queue = open_queue(spec)
    try:
        assert await first_queue.count("first") >= 1  # fired by its own scheduler only
    finally:
        await first_queue.close()
        await release_backend(spec)
