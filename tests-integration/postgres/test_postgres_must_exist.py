"""The option ``must_exist``: a schema holding none of the backend's tables is refused, not created.

The command line's commands on existing data (``inspect``, ``dlq``, ``job``, ``schedule``,
``workflow show``, ``dashboard``) set it, so a mistyped ``schema`` option fails with one
line naming the schema and the database instead of creating the schema, every table in
it, and then reporting empty queues. A schema an earlier release made is still upgraded:
that is an upgrade to do, not a typo. Nothing may be left behind by a refusal.
"""

from __future__ import annotations

import asyncio
import textwrap
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from click.testing import CliRunner

from lexigram.contracts.tasks import BackendConnectionError, Job, TaskBackendSpec
from lexigram.tasks.backends.postgres import (
    PostgresTaskConfig,
    PostgresTaskQueue,
    backend,
)
from lexigram.tasks.backends.postgres._schema import (
    QUEUE_MIGRATIONS,
    STORE_MIGRATIONS,
    STORES_SCOPE,
    queue_scope,
)
from lexigram.tasks.cli import cli
from lexigram.tasks.cli._context import MUST_EXIST_OPTION, existing_only

pytestmark = pytest.mark.postgres

PASSWORD = "s3cret-must-exist"  # noqa: S105 - never checked: the server trusts local logins


async def _fetchval(dsn: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def schema_exists(dsn: str, schema: str) -> bool:
    """Whether `schema` is in the database (what a refusal must not have created)."""
    return bool(
        await _fetchval(
            dsn, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema
        )
    )


async def relations_in(dsn: str, schema: str) -> int:
    """How many tables, indexes, sequences... `schema` holds."""
    return int(
        await _fetchval(
            dsn,
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1",
            schema,
        )
    )


@pytest.fixture
def typo_schema(postgres_dsn: str) -> Iterator[str]:
    """A schema name nothing has created (dropped afterwards, should a test create it)."""
    schema = f"lexigram_typo_{uuid.uuid4().hex[:8]}"
    yield schema
    asyncio.run(_fetchval(postgres_dsn, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.fixture
def database(postgres_dsn: str) -> str:
    """The name of the test database (what the refusal names next to the schema)."""
    return str(asyncio.run(_fetchval(postgres_dsn, "SELECT current_database()")))


def spec(dsn: str, schema: str, **options: Any) -> TaskBackendSpec:
    return TaskBackendSpec(
        name="default",
        type="postgres",
        url=dsn,
        queue_name=f"q-{uuid.uuid4().hex[:8]}",
        options={"schema": schema, **options},
    )


def test_the_read_only_commands_set_it() -> None:
    spec_ = spec("postgresql://app:s3cret@db:5432/app", "app_tasks")
    assert existing_only(spec_).options == {"schema": "app_tasks", MUST_EXIST_OPTION: True}


def with_password(dsn: str) -> str:
    """`dsn` with a password the server (trusting local connections) never asks for."""
    return f"{dsn}{'&' if '?' in dsn else '?'}password={PASSWORD}"


def assert_refusal(message: str, schema: str, database: str) -> None:
    assert "\n" not in message
    assert message.startswith(f"The PostgreSQL schema {schema!r}")  # not wrapped by a retry
    assert f"the database {database!r}" in message
    assert "the option must_exist is set" in message
    assert "Check the schema option" in message
    assert "DSN's database" in message
    assert "lexigram.tasks.backends.postgres.migrate()" in message


async def test_a_queue_refuses_a_mistyped_schema_and_creates_nothing(
    postgres_dsn: str, typo_schema: str, database: str
) -> None:
    queue = backend.create_queue(spec(with_password(postgres_dsn), typo_schema, must_exist=True))
    try:
        with pytest.raises(BackendConnectionError) as caught:
            await queue.count(queue.queue_name)
        message = caught.value.message
        assert_refusal(message, typo_schema, database)
        assert "does not exist" in message
        assert "so it is not created" in message
        assert PASSWORD not in message
        assert "password=***" in message
        assert caught.value.details["schema"] == typo_schema
        # Not marked ready by the refusal: every later use refuses too.
        with pytest.raises(BackendConnectionError):
            await queue.enqueue(Job(name="send", queue_name=queue.queue_name))
    finally:
        await queue.close()
    assert not await schema_exists(postgres_dsn, typo_schema)


async def test_the_queue_config_field_refuses_too(postgres_dsn: str, typo_schema: str) -> None:
    queue = PostgresTaskQueue(PostgresTaskConfig(postgres_dsn, schema=typo_schema, must_exist=True))
    try:
        with pytest.raises(BackendConnectionError, match="must_exist"):
            await queue.connect()
    finally:
        await queue.close()
    assert not await schema_exists(postgres_dsn, typo_schema)


STORE_USES: dict[str, Callable[[Any], Awaitable[Any]]] = {
    "create_result_store": lambda store: store.get("job-1"),
    "create_progress_store": lambda store: store.get("job-1"),
    "create_dlq_backend": lambda store: store.list_all(),
    "create_scheduler_store": lambda store: store.load_jobs(),
    "create_workflow_state_store": lambda store: store.list_active(),
    "create_cache_backend": lambda store: store.get("key"),
    "create_idempotency_store": lambda store: store.get("key"),
}


@pytest.mark.parametrize("factory", sorted(STORE_USES))
async def test_a_store_refuses_a_mistyped_schema_and_creates_nothing(
    postgres_dsn: str, typo_schema: str, database: str, factory: str
) -> None:
    store = getattr(backend, factory)(spec(postgres_dsn, typo_schema, must_exist=True))
    try:
        with pytest.raises(BackendConnectionError) as caught:
            await STORE_USES[factory](store)
        assert_refusal(caught.value.message, typo_schema, database)
    finally:
        await store.close()
    assert not await schema_exists(postgres_dsn, typo_schema)


async def test_a_schema_without_the_backends_tables_is_refused_and_left_empty(
    postgres_dsn: str, typo_schema: str, database: str
) -> None:
    # E.g. `schema: public`, or one a DBA made for something else: nothing to read there.
    await _fetchval(postgres_dsn, f'CREATE SCHEMA "{typo_schema}"')
    queue = backend.create_queue(spec(postgres_dsn, typo_schema, must_exist=True))
    try:
        with pytest.raises(BackendConnectionError) as caught:
            await queue.count(queue.queue_name)
    finally:
        await queue.close()
    assert_refusal(caught.value.message, typo_schema, database)
    assert "holds none of the backend's tables" in caught.value.message
    assert await relations_in(postgres_dsn, typo_schema) == 0


async def test_the_refusal_suggests_a_schema_that_has_the_tables(
    postgres_dsn: str, pg_schema: str
) -> None:
    mistyped = pg_schema[:-1]  # one character short of the session's migrated schema
    store = backend.create_dlq_backend(spec(postgres_dsn, mistyped, must_exist=True))
    try:
        with pytest.raises(BackendConnectionError) as caught:
            await store.list_all()
    finally:
        await store.close()
    assert f"Did you mean {pg_schema!r}?" in caught.value.message
    assert not await schema_exists(postgres_dsn, mistyped)


async def test_an_existing_schema_opens(postgres_dsn: str, pg_schema: str) -> None:
    existing = spec(postgres_dsn, pg_schema, must_exist=True)
    queue = backend.create_queue(existing)
    dlq = backend.create_dlq_backend(existing)
    try:
        await queue.enqueue(Job(name="send", queue_name=queue.queue_name))
        assert await queue.count(queue.queue_name) == 1
        assert isinstance(await dlq.list_all(), list)
    finally:
        await queue.clear()
        await queue.close()
        await dlq.close()


async def _versions(conn: asyncpg.Connection, schema: str) -> dict[str, int]:
    rows = await conn.fetch(
        f'SELECT scope, max(version) AS version FROM "{schema}".schema_migrations GROUP BY scope'  # noqa: S608 - a test's own schema
    )
    return {row["scope"]: row["version"] for row in rows}


async def test_a_schema_at_an_older_version_is_upgraded_not_refused(
    postgres_dsn: str,
    pg_conn: asyncpg.Connection,
    stores_schema_at: Callable[..., Awaitable[str]],
) -> None:
    # An earlier release's schema: the upgrade is the same under must_exist as without.
    schema = await stores_schema_at(len(STORE_MIGRATIONS) - 2, queue=len(QUEUE_MIGRATIONS) - 1)
    queue = backend.create_queue(spec(postgres_dsn, schema, must_exist=True))
    try:
        assert await queue.count(queue.queue_name) == 0
    finally:
        await queue.close()
    assert await _versions(pg_conn, schema) == {
        STORES_SCOPE: STORE_MIGRATIONS[-1].version,
        queue_scope("tasks"): QUEUE_MIGRATIONS[-1].version,
    }


@pytest.fixture
def typo_config(tmp_path: Path, postgres_dsn: str, typo_schema: str) -> Path:
    """A config naming the PostgreSQL backend with a mistyped schema (and the test's URL)."""
    path = tmp_path / "tasks.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            tasks:
              backend:
                type: postgres
                url: "{postgres_dsn}"
                queue_name: jobs
                options: {{schema: {typo_schema}}}
            """
        )
    )
    return path


def _configure(how: str, config: Path, schema: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The command-line arguments (and variables) that give the commands `schema`."""
    if how == "config":
        return ["--config", str(config)]
    monkeypatch.setenv("LEX_TASKS__BACKEND__TYPE", "postgres")
    monkeypatch.setenv("LEX_TASKS__BACKEND__OPTIONS__SCHEMA", schema)
    return []


@pytest.mark.parametrize("how", ["config", "environment"])
@pytest.mark.parametrize(
    "command",
    [
        ["inspect"],
        ["inspect", "--json"],
        ["dlq", "list"],
        ["job", "status", "01a248f3-544f-7b13-9437-b94c3dc920d9"],
        ["schedule", "list"],
        ["workflow", "show", "01a248f3-544f-7b13-9437-b94c3dc920d9"],
    ],
)
def test_read_only_commands_refuse_a_mistyped_schema_in_one_line(  # noqa: PLR0917 - pytest fixtures
    postgres_dsn: str,
    typo_config: Path,
    typo_schema: str,
    database: str,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
    command: list[str],
) -> None:
    args = [*command, "--backend", with_password(postgres_dsn)]
    result = CliRunner().invoke(cli, args + _configure(how, typo_config, typo_schema, monkeypatch))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert_refusal(lines[0].removeprefix("error: "), typo_schema, database)
    assert PASSWORD not in result.output
    assert "Traceback" not in result.output
    assert not asyncio.run(schema_exists(postgres_dsn, typo_schema))


def test_the_dashboard_refuses_a_mistyped_schema_before_serving(
    postgres_dsn: str, typo_config: Path, typo_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    uvicorn = pytest.importorskip("uvicorn")

    def serve(*_args: object, **_kwargs: object) -> None:
        pytest.fail("the dashboard served a schema it should have refused")

    monkeypatch.setattr(uvicorn, "run", serve)
    args = ["dashboard", "--backend", postgres_dsn, "--config", str(typo_config)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: The PostgreSQL schema {typo_schema!r} does not exist")
    assert not asyncio.run(schema_exists(postgres_dsn, typo_schema))


def test_read_only_commands_work_once_enqueue_made_the_schema(
    postgres_dsn: str, typo_config: Path, typo_schema: str
) -> None:
    common = ["--backend", postgres_dsn, "--config", str(typo_config)]
    enqueued = CliRunner().invoke(cli, ["enqueue", "send_welcome", *common])
    assert enqueued.exit_code == 0, enqueued.output
    assert asyncio.run(schema_exists(postgres_dsn, typo_schema))
    inspected = CliRunner().invoke(cli, ["inspect", "--json", *common])
    assert inspected.exit_code == 0, inspected.output
    assert '"waiting": 1' in inspected.stdout
    status = CliRunner().invoke(cli, ["job", "status", enqueued.stdout.strip(), *common])
    assert status.exit_code == 0, status.output


async def test_a_mistyped_table_is_refused_and_not_created(
    postgres_dsn: str, pg_schema: str
) -> None:
    migrated = backend.create_queue(spec(postgres_dsn, pg_schema))
    try:
        await migrated.count(migrated.queue_name)  # the schema and its table "tasks" exist
    finally:
        await migrated.close()
    queue = backend.create_queue(spec(postgres_dsn, pg_schema, table="taks", must_exist=True))
    try:
        with pytest.raises(BackendConnectionError) as caught:
            await queue.count(queue.queue_name)
    finally:
        await queue.close()
    message = caught.value.message
    assert "\n" not in message
    assert message.startswith(f"The PostgreSQL schema {pg_schema!r}")
    assert "has no jobs table 'taks' (the option must_exist is set" in message
    assert "'tasks'" in message
    assert "Did you mean 'tasks'?" in message
    assert caught.value.details["table"] == "taks"
    exists = await _fetchval(
        postgres_dsn, "SELECT to_regclass($1) IS NOT NULL", f'"{pg_schema}".taks'
    )
    assert exists is False
    scopes = await _fetchval(
        postgres_dsn,
        f'SELECT count(*) FROM "{pg_schema}".schema_migrations WHERE scope = $1',  # noqa: S608 - the test's own schema
        queue_scope("taks"),
    )
    assert scopes == 0
