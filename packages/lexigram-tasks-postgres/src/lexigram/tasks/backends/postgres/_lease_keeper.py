"""Lease renewal for a worker's lease keeper: one UPDATE renews every held lease.

The renewer runs on the keeper's thread and event loop over one connection of its own
(asyncpg connections belong to the loop that opened them), so a blocked worker loop, or
a busy pool, never stands between the leases and the database. The statement checks
each token as `extend_lease` does, so a stale one changes nothing and is reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from lexigram.contracts.tasks import BackendConnectionError
from lexigram.tasks.backends.postgres._connection import connect_once
from lexigram.tasks.backends.postgres._enqueue import parse_token
from lexigram.tasks.backends.postgres._options import quote_ident


def extend_many_sql(schema: str, table: str) -> str:
    """$1 ids, $2 seqs, $3 delivery counts, $4 lease seconds -> the ids still held."""
    jobs = f"{quote_ident(schema)}.{quote_ident(table)}"
    # Each entry finds its row by primary key (no `j.id = ANY($1)`, whose generic plan
    # joins every row against every entry on a large table, as the acks' did); the
    # token must be the delivery's and its lease unexpired, as for extend_lease.
    return f"""
UPDATE {jobs} AS j
SET available_at = clock_timestamp() + make_interval(secs => $4),
    heartbeat_at = clock_timestamp()
FROM unnest($1::text[], $2::bigint[], $3::int[]) AS a(id, seq, dc)
WHERE j.id = a.id AND j.status = 'running'
  AND j.seq = a.seq AND j.delivery_count = a.dc AND j.available_at > clock_timestamp()
RETURNING j.id"""  # noqa: S608 - identifiers validated and quoted


class PostgresLeaseRenewer:
    """`LeaseRenewerProtocol` for one PostgreSQL queue: its own connection, one UPDATE.

    Args:
        dsn: Where to connect (None: libpq's environment defaults, as the queue).
        sql: The statement from `extend_many_sql`.
        connect_timeout: Seconds to open the connection.
        command_timeout: Seconds the statement may take.
    """

    def __init__(
        self, dsn: str | None, sql: str, *, connect_timeout: float, command_timeout: float
    ) -> None:
        self._dsn = dsn
        self._sql = sql
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._conn: asyncpg.Connection[Any] | None = None

    async def renew(self, leases: Sequence[tuple[str, str]], seconds: float) -> list[str]:
        """Extend every lease still held under its token; return the ids of the others."""
        ids: list[str] = []
        seqs: list[int] = []
        counts: list[int] = []
        for job_id, token in leases:
            parsed = parse_token(token)
            if parsed is not None:  # a malformed token holds nothing: reported as lost
                ids.append(job_id)
                seqs.append(parsed[0])
                counts.append(parsed[1])
        kept: set[str] = set()
        if ids:
            conn = self._conn
            if conn is None or conn.is_closed():
                conn = self._conn = await connect_once(self._dsn, timeout=self._connect_timeout)
            try:
                rows = await conn.fetch(
                    self._sql, ids, seqs, counts, float(seconds), timeout=self._command_timeout
                )
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                await self.close()  # the next tick reconnects
                msg = (
                    f"Renewing {len(ids)} lease(s) on PostgreSQL failed ({type(exc).__name__}: "
                    f"{exc}); the lease keeper tries again at its next tick."
                )
                raise BackendConnectionError(msg) from exc
            kept = {row[0] for row in rows}
        return [job_id for job_id, _ in leases if job_id not in kept]

    async def close(self) -> None:
        """Close the renewer's connection; safe to call twice."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=2.0)
            except Exception:
                conn.terminate()
