"""What the server refuses to a role or a session is one line saying what to grant or fix.

A role with CONNECT alone, or a read-only session, used to surface as asyncpg's own
exception: "unexpected InsufficientPrivilegeError ... report it" from the command line,
the raw exception from `migrate` and `enqueue`. A `table` or `schema` option naming one
of the backend's own tables, or a schema PostgreSQL keeps, is a configuration error.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio

from lexigram.contracts.tasks import BackendConnectionError, Job, TaskConfigurationError
from lexigram.tasks.backends.postgres import PostgresTaskConfig, PostgresTaskQueue, migrate

pytestmark = pytest.mark.postgres


def _as(dsn: str, role: str) -> str:
    parts = urlsplit(dsn)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{role}@{netloc}"))


@pytest_asyncio.fixture
async def connect_only_role(postgres_dsn: str) -> AsyncIterator[str]:
    """A role that may connect and nothing else (dropped afterwards)."""
    role = f"lexigram_ro_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(postgres_dsn)
    try:
        database = await admin.fetchval("SELECT current_database()")
        await admin.execute(f'CREATE ROLE "{role}" LOGIN')
        await admin.execute(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"')
        await admin.execute(f'REVOKE CREATE ON DATABASE "{database}" FROM "{role}"')
        yield role
    finally:
        await admin.execute(f'REVOKE ALL ON DATABASE "{database}" FROM "{role}"')
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()


async def test_a_role_without_rights_is_told_what_to_grant(
    postgres_dsn: str, pg_schema: str, connect_only_role: str
) -> None:
    await migrate(postgres_dsn, pg_schema)  # the tables exist; the role may not use them
    dsn = _as(postgres_dsn, connect_only_role)
    queue = PostgresTaskQueue(PostgresTaskConfig(dsn, schema=pg_schema, max_attempts=2))
    try:
        with pytest.raises(BackendConnectionError) as caught:
            await queue.enqueue(Job(name="send"))
    finally:
        await queue.close()
    message = caught.value.message
    assert "\n" not in message
    assert "refused to" in message
    assert "permission denied" in message
    assert f"Grant the role {connect_only_role!r} what the backend needs" in message
    assert caught.value.details["sqlstate"] == "42501"
    with pytest.raises(BackendConnectionError, match="refused to create the tables"):
        await migrate(dsn, f"{pg_schema}_new")


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"table": "results"}, "is a name of the backend's own tables"),
        ({"table": "tasks_keys"}, "is a name of the backend's own tables"),
        ({"schema": "pg_catalog"}, "is a name PostgreSQL keeps for itself"),
    ],
)
def test_a_name_the_backend_or_postgres_owns_is_refused(
    postgres_dsn: str, options: dict[str, str], words: str
) -> None:
    with pytest.raises(TaskConfigurationError, match=words):
        PostgresTaskQueue(PostgresTaskConfig(postgres_dsn, **options))
