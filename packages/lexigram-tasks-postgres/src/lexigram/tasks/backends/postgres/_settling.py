"""A succeeded job's ack and its stored result in one statement.

A worker settles a succeeded job with an ack (a ``DELETE`` of its row), then a write to
its result store (an ``INSERT`` into the results table): two statements, two commits, and
two awaits in the worker for every job. When the result store is a `PostgresResultStore`
on the queue's own database, `PostgresTaskQueue.result_acker` gives the worker an
`AckAndStore` instead: one statement whose first part is the queue's own ack (the same
``DELETE``, fenced by the lease token) and whose second upserts the results of exactly the
rows that part deleted, then wakes their waiters; one transaction, so no result is stored
for a delivery whose lease was gone. Calls made while one is in flight go together, like
acks.

The results are written by a plain ``INSERT``: a job id rarely has a result already (only
when the id is run again, a dead letter retried or an id the app chose), and the upsert's
speculative insertion cost the server about a quarter of what storing a result costs. When
a job of the batch does have one, the statement fails with a unique violation having
changed nothing, and the batch is sent again as an upsert, as are the next
`_UPSERT_BATCHES` batches (an app that reuses ids pays one failed statement per that many
batches, not one per batch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import asyncpg

from lexigram.contracts.tasks import JobResult
from lexigram.tasks.backends.postgres._batch import StatementBatcher
from lexigram.tasks.backends.postgres._enqueue import Token, parse_token
from lexigram.tasks.backends.postgres._stores import notify_payloads

if TYPE_CHECKING:
    from lexigram.tasks.backends.postgres._connection import Conn, Database
    from lexigram.tasks.backends.postgres._stores import PostgresResultStore

# Most deliveries one statement settles (as many as a batch of acks).
_BATCH = 500
# Batches sent as upserts after one whose plain insert met an existing result.
_UPSERT_BATCHES = 100


def ack_and_store_sql(ack_many: str, results_table: str, *, replace: bool) -> str:
    """The statement acking a batch and storing the results of the deliveries it deleted.

    `ack_many` takes $1 ids, $2 seqs, $3 delivery counts and returns the positions it
    deleted; then come the results (of the jobs $1 names: $4 namespace, $5 successes, $6
    data, $7 ttl seconds) and their wake-ups ($8 channel, $9 payloads). With `replace` a
    job's earlier result is overwritten; without, one fails the statement (a unique
    violation).
    """
    conflict = (
        """
    ON CONFLICT (namespace, job_id) DO UPDATE SET success = EXCLUDED.success,
        data = EXCLUDED.data, stored_at = EXCLUDED.stored_at, expires_at = EXCLUDED.expires_at"""
        if replace
        else ""
    )
    return f"""
WITH acked AS ({ack_many}
), stored AS (
    INSERT INTO {results_table} (namespace, job_id, success, data, stored_at, expires_at)
    SELECT $4, r.job_id, r.success, r.data::json, clock_timestamp(),
           clock_timestamp() + make_interval(secs => $7)
    FROM unnest($1::text[], $5::boolean[], $6::text[]) WITH ORDINALITY
         AS r(job_id, success, data, n)
    WHERE r.n IN (SELECT n FROM acked){conflict}
    RETURNING 1
)
SELECT acked.n, (SELECT count(*) FROM stored) AS kept,
       (SELECT count(pg_notify($8, payload)) FROM unnest($9::text[]) AS payload) AS woken
FROM acked"""  # noqa: S608 - identifiers validated by the queue and the store


class AckAndStore:
    """Acks deliveries and stores their jobs' results together (a `ResultAcker`).

    Args:
        db: The queue's database handle (the store's database, checked by the queue).
        ack_many: The queue's batch ack statement.
        store: The result store the results go to.
    """

    def __init__(self, db: Database, ack_many: str, store: PostgresResultStore) -> None:
        self.store = store
        self._db = db
        self._insert_sql = ack_and_store_sql(ack_many, store.results_table, replace=False)
        self._upsert_sql = ack_and_store_sql(ack_many, store.results_table, replace=True)
        self._upserts_left = 0
        self._batcher: StatementBatcher[tuple[str, Token | None, bool, str], bool] = (
            StatementBatcher(self._settle, _BATCH)
        )
        self._store_ready = False

    async def __call__(self, job_id: str, result: JobResult, lease_token: str | None) -> bool:
        """Ack the delivery of `job_id` and store `result` if its lease held.

        Returns:
            What `PostgresTaskQueue.ack` returns: True if the delivery held its lease (the
            job's row is deleted and its result stored), False (nothing changed) otherwise.
        """
        token = None if lease_token is None else parse_token(lease_token)
        if lease_token is not None and token is None:
            return False
        if not self._store_ready:
            await self.store.prepare()  # its table exists before a statement writes it
            self._store_ready = True
        self.store.expiry.written()
        data = result.to_json(of=job_id)
        return await self._batcher.submit((job_id, token, result.success, data))

    async def drain(self) -> None:
        """Wait for the statements in flight (used by the queue's `close`)."""
        await self._batcher.drain()

    async def _settle(self, batch: list[tuple[str, Token | None, bool, str]]) -> list[bool]:
        ids = [job_id for job_id, _, _, _ in batch]
        args: tuple[Any, ...] = (
            ids,
            [None if token is None else token[0] for _, token, _, _ in batch],
            [None if token is None else token[1] for _, token, _, _ in batch],
            self.store.namespace,
            [success for _, _, success, _ in batch],
            [data for _, _, _, data in batch],
            self.store.ttl,
            self.store.channel,
            # Every job of the batch is announced: a waiter woken for a job whose ack was
            # refused reads no result and waits on (see `notified_ids`).
            notify_payloads(list(dict.fromkeys(ids))),
        )

        async def run(conn: Conn) -> set[int]:
            if self._upserts_left:
                self._upserts_left -= 1
                rows = await conn.fetch(self._upsert_sql, *args)
            else:
                try:
                    rows = await conn.fetch(self._insert_sql, *args)
                except asyncpg.UniqueViolationError:
                    # A job of the batch has a result already; nothing was changed.
                    self._upserts_left = _UPSERT_BATCHES
                    rows = await conn.fetch(self._upsert_sql, *args)
            return {int(row[0]) for row in rows}

        done = await self._db.run(run, "ack jobs and store their results")
        return [position in done for position in range(1, len(batch) + 1)]
