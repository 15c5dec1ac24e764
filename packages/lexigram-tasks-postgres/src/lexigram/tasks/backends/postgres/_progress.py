"""The PostgreSQL progress store: the latest `ProgressInfo` per job, with a TTL.

Its table is one of the ``stores`` migrations (the expiry came with ``stores v4``);
the records are JSON text, like every store's (see `_stores`).
"""

from __future__ import annotations

from lexigram.contracts.tasks import ProgressInfo
from lexigram.tasks.backends.postgres._expiry import UNEXPIRED
from lexigram.tasks.backends.postgres._stores import _ExpiringTable, dumps, loads


class PostgresProgressStore(_ExpiringTable):
    """The latest `ProgressInfo` per job, kept `ttl` seconds after its last change.

    Args:
        db: The database handle.
        schema: Schema holding the tables.
        namespace: Which entries this store sees.
        ttl: Seconds an entry is kept after its last change (None: a day; expired
            entries are neither read nor listed, and saves sweep them out).
    """

    _what = "progress store"
    _table = "progress"
    _rows = "progress entries"
    _default_ttl = 86400.0

    async def save(self, info: ProgressInfo) -> None:
        """Save (or replace) a job's progress (a finished one, see `ProgressInfo.is_active`)."""
        complete = not info.is_active
        self.expiry.written()
        await self._execute(
            f"""
INSERT INTO {self._s}.progress (namespace, job_id, complete, data, updated_at, expires_at)
VALUES ($1, $2, $3, $4::json, clock_timestamp(), clock_timestamp() + make_interval(secs => $5))
ON CONFLICT (namespace, job_id) DO UPDATE SET complete = EXCLUDED.complete,
    data = EXCLUDED.data, updated_at = EXCLUDED.updated_at, expires_at = EXCLUDED.expires_at""",  # noqa: S608 - validated
            self.namespace,
            info.job_id,
            complete,
            dumps(info.to_dict()),
            self.ttl,
        )

    async def get(self, job_id: str) -> ProgressInfo | None:
        """Return a job's progress, or None (also once it expired)."""
        record = await self._live_record(job_id)
        return None if record is None else ProgressInfo.from_dict(record)

    async def delete(self, job_id: str) -> None:
        """Remove a job's progress (no-op when absent)."""
        await self._execute(
            f"DELETE FROM {self._s}.progress WHERE namespace = $1 AND job_id = $2",  # noqa: S608 - validated
            self.namespace,
            job_id,
        )

    async def list_active(self) -> list[ProgressInfo]:
        """Return the progress of jobs that have not completed or failed."""
        rows = await self._fetch(
            f"SELECT data FROM {self._s}.progress WHERE namespace = $1 AND NOT complete "  # noqa: S608 - validated
            f"AND {UNEXPIRED} ORDER BY updated_at",
            self.namespace,
        )
        return [ProgressInfo.from_dict(loads(row["data"])) for row in rows]
