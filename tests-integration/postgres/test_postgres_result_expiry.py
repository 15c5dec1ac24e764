"""Sweeping expired results reads the expired end of the expiry index, not the table.

Every stored result is also written into ``results_expiry_idx``. The sweep
(`cleanup_expired`) compared ``expires_at`` with ``clock_timestamp()``, which is volatile:
PostgreSQL cannot use a volatile bound as an index condition, so every sweep read the
whole results table (a day of results with the default TTL) while the index was paid for
on every write and never read. The table here holds many live results and a few expired
ones; the sweep's plan must be a scan of that index, and it must delete exactly those.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import pytest

from lexigram.contracts.tasks import TaskBackendSpec
from lexigram.tasks.backends.postgres import backend, migrate

pytestmark = pytest.mark.postgres

LIVE_ROWS = 100_000
EXPIRED_ROWS = 25


def _index_names(plan: dict[str, Any]) -> list[str]:
    names = [plan["Index Name"]] if "Index Name" in plan else []
    for child in plan.get("Plans", ()):
        names.extend(_index_names(child))
    return names


async def test_the_sweep_uses_the_expiry_index_and_deletes_only_the_expired(
    postgres_dsn: str,
) -> None:
    schema = f"lexigram_expiry_{uuid.uuid4().hex[:8]}"
    await migrate(postgres_dsn, schema)
    store = backend.create_result_store(
        TaskBackendSpec(url=postgres_dsn, options={"schema": schema, "namespace": "sweep"})
    )
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(
            f'INSERT INTO "{schema}".results (namespace, job_id, success, data, expires_at) '  # noqa: S608 - a test's own schema
            "SELECT 'sweep', 'live-' || g, true, '{}'::json, now() + interval '1 day' "
            f"FROM generate_series(1, {LIVE_ROWS}) AS g "
            "UNION ALL "
            "SELECT 'sweep', 'old-' || g, true, '{}'::json, now() - interval '1 minute' "
            f"FROM generate_series(1, {EXPIRED_ROWS}) AS g"
        )
        await conn.execute(f'ANALYZE "{schema}".results')

        raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {store._cleanup_sql}")
        plan = json.loads(raw)[0]["Plan"]
        assert "results_expiry_idx" in _index_names(plan), plan

        assert await store.cleanup_expired() == EXPIRED_ROWS
        left = await conn.fetchval(f'SELECT count(*) FROM "{schema}".results')  # noqa: S608 - a test's own schema
        assert left == LIVE_ROWS
    finally:
        await store.close()
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()
