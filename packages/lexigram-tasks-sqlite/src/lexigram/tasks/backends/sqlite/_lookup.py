"""Job ids by prefix (`JobLookupProtocol`) for the SQLite queue and result store.

A prefix becomes the range ``prefix <= id < bound`` on a unique index, so the lookup
reads only the matching index entries and stops at the limit. SQLite's default BINARY
collation orders TEXT by its UTF-8 bytes, which is code-point order, so the range is
exactly the ids that start with the prefix (no LIKE, so no wildcard to escape).
"""

from __future__ import annotations

import sqlite3
import time

from lexigram.contracts.tasks import id_prefix_upper_bound
from lexigram.tasks.backends.sqlite._database import Database
from lexigram.tasks.backends.sqlite._unnamed import utf8_text


async def queued_ids(db: Database, queue: str, prefix: str, limit: int) -> list[str]:
    """Ids of jobs of `queue` (waiting or in flight) that start with `prefix`."""
    args = (prefix, id_prefix_upper_bound(prefix), queue, limit)

    def run(conn: sqlite3.Connection) -> list[str]:
        # As bytes: an id another program stored that is not UTF-8 would fail the read
        # (sqlite3 decodes TEXT strictly); no command could name it, so it is skipped.
        rows = conn.execute(
            "SELECT CAST(id AS BLOB) FROM lexigram_jobs WHERE id >= ? AND id < ? AND queue = ? "
            "LIMIT ?",
            args,
        )
        return [text for (raw,) in rows if (text := utf8_text(raw)) is not None]

    return await db.call(run, write=False, what="find jobs by id prefix")


async def result_ids(db: Database, prefix: str, limit: int) -> list[str]:
    """Ids of jobs with a live result that start with `prefix`."""
    bound = id_prefix_upper_bound(prefix)

    def run(conn: sqlite3.Connection) -> list[str]:
        rows = conn.execute(
            "SELECT job_id FROM lexigram_results WHERE job_id >= ? AND job_id < ? "
            "AND expires_at > ? LIMIT ?",
            (prefix, bound, time.time(), limit),
        )
        return [str(row[0]) for row in rows]

    return await db.call(run, write=False, what="find results by id prefix")
