"""Job ids by prefix (`JobLookupProtocol`) for the PostgreSQL queue and result store.

A prefix becomes the primary-key range ``prefix <= id < bound`` and ``starts_with``
keeps only true matches, so the lookup walks the index entries of the range and stops
at the LIMIT (no LIKE, so no wildcard to escape). The range is exactly the matching ids
because the id columns compare as bytes (``COLLATE "C"``, queue v3 and stores v7): under
a collation that ignores punctuation at its first level, a prefix ending in a UUID's
``-`` missed ids.
"""

from __future__ import annotations

from lexigram.contracts.tasks import id_prefix_upper_bound
from lexigram.tasks.backends.postgres._connection import Database
from lexigram.tasks.backends.postgres._expiry import UNEXPIRED
from lexigram.tasks.backends.postgres._options import quote_ident


def queued_ids_sql(schema: str, table: str) -> str:
    """``$1`` prefix, ``$2`` bound, ``$3`` queue, ``$4`` limit -> ids of held jobs."""
    jobs = f"{quote_ident(schema)}.{quote_ident(table)}"
    return (
        f"SELECT id FROM {jobs} WHERE id >= $1 AND id < $2 AND starts_with(id, $1) "  # noqa: S608 - identifiers validated
        "AND queue = $3 LIMIT $4"
    )


def result_ids_sql(schema: str) -> str:
    """``$1`` prefix, ``$2`` bound, ``$3`` namespace, ``$4`` limit -> ids with a result."""
    return (
        f"SELECT job_id FROM {quote_ident(schema)}.results WHERE namespace = $3 "  # noqa: S608 - identifiers validated
        "AND job_id >= $1 AND job_id < $2 AND starts_with(job_id, $1) "
        f"AND {UNEXPIRED} LIMIT $4"
    )


async def find_ids(db: Database, sql: str, scope: str, prefix: str, limit: int) -> list[str]:
    """Run a statement of this module for `prefix` in `scope` (a queue or a namespace)."""
    bound = id_prefix_upper_bound(prefix)
    rows = await db.run(
        lambda conn: conn.fetch(sql, prefix, bound, scope, limit), "find jobs by id prefix"
    )
    return [str(row[0]) for row in rows]
