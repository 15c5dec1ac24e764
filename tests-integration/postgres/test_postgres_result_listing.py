"""Listing stored results: failed ones through their own index, successful ones by a scan.

Every result used to be written into an index on (namespace, success, stored_at) that
only these listings read; ``stores v5`` keeps an index of the failed results alone
(``results_failed_idx``, ``WHERE NOT success``), so a job that succeeds writes one index
entry fewer. Listing the failed results must still read that index, on a table of many
successful ones, and both listings must still return the newest results first.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from lexigram.contracts.tasks import TaskBackendSpec
from lexigram.tasks.backends.postgres import backend, migrate

pytestmark = pytest.mark.postgres

SUCCEEDED = 50_000
FAILED = 20


def _index_names(plan: dict[str, Any]) -> list[str]:
    names = [plan["Index Name"]] if "Index Name" in plan else []
    for child in plan.get("Plans", ()):
        names.extend(_index_names(child))
    return names


@pytest_asyncio.fixture
async def schema(postgres_dsn: str) -> AsyncIterator[str]:
    """A migrated schema of this test's own with many successes and a few failures."""
    name = f"lexigram_listing_{uuid.uuid4().hex[:8]}"
    await migrate(postgres_dsn, name)
    conn = await asyncpg.connect(postgres_dsn)
    try:
        for prefix, count, success in (("ok", SUCCEEDED, "true"), ("bad", FAILED, "false")):
            await conn.execute(
                f'INSERT INTO "{name}".results '  # noqa: S608 - a test's own schema
                "(namespace, job_id, success, data, stored_at, expires_at) "
                f"SELECT 'listing', '{prefix}-' || g, {success}, "
                f"""json_build_object('success', {success}, 'data', g), """
                "now() - make_interval(secs => 1000000 - g), now() + interval '1 day' "
                f"FROM generate_series(1, {count}) AS g"
            )
        await conn.execute(f'ANALYZE "{name}".results')
        yield name
    finally:
        await conn.execute(f'DROP SCHEMA "{name}" CASCADE')
        await conn.close()


async def test_failed_results_are_listed_through_their_index(
    postgres_dsn: str, schema: str
) -> None:
    store = backend.create_result_store(
        TaskBackendSpec(url=postgres_dsn, options={"schema": schema, "namespace": "listing"})
    )
    conn = await asyncpg.connect(postgres_dsn)
    try:
        indexes = {
            row["indexname"]
            for row in await conn.fetch(
                "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'results'",
                schema,
            )
        }
        assert "results_failed_idx" in indexes
        assert "results_listing_idx" not in indexes

        raw = await conn.fetchval(
            f"EXPLAIN (FORMAT JSON) {store._listing_sql(success=False)}", "listing", 5
        )
        plan = json.loads(raw)[0]["Plan"]
        assert "results_failed_idx" in _index_names(plan), plan

        failed = await store.get_failed(limit=5)
        assert [result.data for result in failed] == [20, 19, 18, 17, 16]
        succeeded = await store.get_completed(limit=3)
        assert [result.data for result in succeeded] == [SUCCEEDED, SUCCEEDED - 1, SUCCEEDED - 2]
    finally:
        await store.close()
        await conn.close()
