r"""PostgreSQL stores: results, dead letters, schedules (progress and workflows: own modules).

Each store keeps its records as JSON text (``json``, not ``jsonb``: jsonb refuses the
escape ``\u0000``, so a record holding a NUL character, such as the traceback of a job
that failed on one, could not be stored) in a table of the backend's schema,
keyed by (namespace, id): stores built from specs with different ``namespace`` options
share the tables without seeing each other's records. Tables come from the ``stores``
migrations, applied on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from typing import Any

import asyncpg

from lexigram.contracts.tasks import (
    JobResult,
    json_for_storage,
)
from lexigram.tasks.backends.postgres._batch import StatementBatcher
from lexigram.tasks.backends.postgres._connection import Conn, Database, Listener
from lexigram.tasks.backends.postgres._expiry import UNEXPIRED, ExpiredRows
from lexigram.tasks.backends.postgres._lookup import find_ids, result_ids_sql
from lexigram.tasks.backends.postgres._options import (
    DEFAULT_SCHEMA,
    channel_name,
    quote_ident,
    validate_identifier,
)
from lexigram.tasks.backends.postgres._schema import ensure_schema

_SAFETY_NET = 5.0
# Most results one statement stores (a worker finishing many jobs at once).
_RESULT_BATCH = 500
# Bytes of one NOTIFY payload naming stored results (PostgreSQL refuses 8,000 and more).
_NOTIFY_BYTES = 7900


def dumps(record: Any) -> str:
    """JSON text for a json column, as every backend's stores write it (`json_for_storage`).

    A value JSON cannot carry is stored as its repr, with a warning; U+0000 and a lone
    surrogate are written as escapes, which the json type keeps as written.
    """
    return json_for_storage(record, what="record")


def loads(text: str) -> Any:
    """Decode a json column (asyncpg hands json over as text)."""
    return json.loads(text)


class _TableStore:
    """Common plumbing: the database handle, the schema migration, the namespace.

    `must_exist` (the backend's option) refuses a schema that holds none of the tables
    instead of creating it (see `ensure_schema`).
    """

    _what = "store"

    def __init__(
        self,
        db: Database,
        *,
        schema: str = DEFAULT_SCHEMA,
        namespace: str = "default",
        must_exist: bool = False,
    ) -> None:
        self._db = db
        self._schema = validate_identifier(schema, field="schema")
        self._must_exist = must_exist
        self._s = quote_ident(schema)
        self.namespace = namespace
        self._ready = False
        self._ready_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(schema={self._schema!r}, namespace={self.namespace!r}, "
            f"dsn={self._db.masked_dsn!r})"
        )

    async def _ensure_ready(self) -> None:
        if self._ready:
            return
        async with self._ready_lock:
            if not self._ready:

                async def _migrate(conn: Conn) -> list[str]:
                    return await ensure_schema(
                        conn, self._schema, None, must_exist=self._must_exist, dsn=self._db.dsn
                    )

                await self._db.run(_migrate, "apply the schema migrations")
                self._ready = True

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        await self._ensure_ready()
        rows: list[asyncpg.Record] = await self._db.run(
            lambda conn: conn.fetch(sql, *args), f"read the {self._what}"
        )
        return rows

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        await self._ensure_ready()
        return await self._db.run(lambda conn: conn.fetchval(sql, *args), f"use the {self._what}")

    async def _execute(self, sql: str, *args: Any) -> str:
        await self._ensure_ready()
        status: str = await self._db.run(
            lambda conn: conn.execute(sql, *args), f"write the {self._what}"
        )
        return status

    async def _rows_deleted(self, sql: str, *args: Any) -> int:
        return _deleted(await self._execute(sql, *args))

    async def close(self) -> None:
        """Release the connection pool (shared pools close with their last user)."""
        await self._db.close()


def notify_payloads(job_ids: list[str]) -> list[str]:
    """NOTIFY payloads announcing `job_ids`: a lone id as itself, several as JSON arrays.

    Each array stays under PostgreSQL's payload limit; an id too long to fit in any
    payload is not announced (its waiters find it at their safety-net re-read).
    """
    if len(job_ids) == 1:
        lone = job_ids[0]
        return [lone] if len(lone.encode()) < _NOTIFY_BYTES else []
    whole = json.dumps(job_ids)  # ASCII (json escapes the rest): characters are bytes
    if len(whole) < _NOTIFY_BYTES:  # a worker's batch of results: one payload, no sizing
        return [whole]
    payloads: list[str] = []
    chunk: list[str] = []
    size = 2  # the brackets
    for job_id in job_ids:
        item = _json_size(job_id) + 2  # and the ", " before the next one
        if item + 2 > _NOTIFY_BYTES:
            continue
        if size + item > _NOTIFY_BYTES:
            payloads.append(json.dumps(chunk))
            chunk, size = [], 2
        chunk.append(job_id)
        size += item
    if chunk:
        payloads.append(json.dumps(chunk))
    return payloads


def _json_size(text: str) -> int:
    """Bytes of `text` as a JSON string (``json.dumps`` escapes all but printable ASCII)."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return len(text) + 2
    return len(json.dumps(text))


def notified_ids(payload: str) -> list[str]:
    """The job ids a result NOTIFY payload may announce (see `notify_payloads`).

    A payload is a lone id or a JSON array of ids; one that parses as an array is also
    taken as a lone id, since an id may itself look like an array. A waiter woken for
    nothing only reads its result once more.
    """
    if not payload.startswith("["):
        return [payload]
    try:
        ids = json.loads(payload)
    except ValueError:
        return [payload]
    if not isinstance(ids, list):
        return [payload]
    return [payload, *(job_id for job_id in ids if isinstance(job_id, str))]


def _deleted(status: str) -> int:
    """Row count of a ``DELETE n`` / ``UPDATE n`` command status."""
    return int(status.rsplit(" ", 1)[-1])


class _SweptTable(_TableStore):
    """A store whose expired rows its writes sweep out (`ExpiredRows`).

    `_table` is its table, `_keys` that table's primary key, `_rows` what the rows are.
    """

    _table = ""
    _keys: tuple[str, ...] = ("namespace", "job_id")
    _rows = ""

    def __init__(
        self,
        db: Database,
        *,
        schema: str = DEFAULT_SCHEMA,
        namespace: str = "default",
        must_exist: bool = False,
    ) -> None:
        super().__init__(db, schema=schema, namespace=namespace, must_exist=must_exist)
        self.expiry = ExpiredRows(
            self._rows_deleted, f"{self._s}.{self._table}", self._rows, keys=self._keys
        )

    async def close(self) -> None:
        """Stop a sweep in progress and release the pool."""
        await self.expiry.close()
        await super().close()


class _ExpiringTable(_SweptTable):
    """A store whose rows expire `ttl` seconds after their last write (None: `_default_ttl`).

    Expired rows are neither read nor listed, and writes sweep them out.
    """

    _default_ttl = 3600.0

    def __init__(
        self,
        db: Database,
        *,
        schema: str = DEFAULT_SCHEMA,
        namespace: str = "default",
        ttl: float | None = None,
        must_exist: bool = False,
    ) -> None:
        super().__init__(db, schema=schema, namespace=namespace, must_exist=must_exist)
        self.ttl = self._default_ttl if ttl is None else ttl

    async def _live_record(self, job_id: str) -> Any:
        """The decoded record of `job_id`, or None when it is absent or expired."""
        text = await self._fetchval(
            f"SELECT data FROM {self._s}.{self._table} WHERE namespace = $1 AND job_id = $2 "  # noqa: S608 - validated
            f"AND {UNEXPIRED}",
            self.namespace,
            job_id,
        )
        return None if text is None else loads(text)


class PostgresResultStore(_ExpiringTable):
    """Job results with a TTL; `wait` is woken by NOTIFY when the result is stored.

    Args:
        db: Database handle.
        schema: Schema of the backend's tables.
        namespace: Which results this store sees.
        ttl: Seconds a result is kept (None: an hour).
        must_exist: Refuse a schema that holds none of the backend's tables instead of
            creating it (the backend's ``must_exist`` option).
    """

    _what = "result store"
    _table = "results"
    _rows = "results"

    def __init__(
        self,
        db: Database,
        *,
        schema: str = DEFAULT_SCHEMA,
        namespace: str = "default",
        ttl: float | None = None,
        must_exist: bool = False,
    ) -> None:
        super().__init__(db, schema=schema, namespace=namespace, ttl=ttl, must_exist=must_exist)
        self.channel = channel_name(schema, "results", namespace)
        self._writes: StatementBatcher[tuple[str, bool, str], None] = StatementBatcher(
            self._store_batch, _RESULT_BATCH
        )
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._listener: Listener | None = None
        self._listen_lock = asyncio.Lock()

    @property
    def results_table(self) -> str:
        """The results table, schema-qualified and quoted (for a statement of the queue's)."""
        return f"{self._s}.results"

    @property
    def dsn(self) -> str | None:
        """The database this store writes to (None: libpq's environment)."""
        return self._db.dsn

    async def prepare(self) -> None:
        """Apply the schema migrations now (otherwise its first call does)."""
        await self._ensure_ready()

    async def store(self, job_id: str, result: JobResult) -> None:
        """Store (or replace) a job's result and wake its waiters in every process.

        Results stored concurrently (a worker finishing many jobs at once) go out in one
        statement and one commit; a lone store is sent at once.
        """
        self.expiry.written()
        await self._writes.submit((job_id, result.success, result.to_json(of=job_id)))

    async def _store_batch(self, batch: list[tuple[str, bool, str]]) -> list[None]:
        # One row per job: the last of two results of one job in a batch wins (a row may
        # not be upserted twice by one statement).
        rows = {job_id: (success, data) for job_id, success, data in batch}
        # Every row is upserted, so the wake-ups are known before the statement runs: a
        # few notifications per batch (see `notify_payloads`) instead of one per result.
        await self._execute(
            f"""
WITH up AS (
    INSERT INTO {self._s}.results (namespace, job_id, success, data, stored_at, expires_at)
    SELECT $1, r.job_id, r.success, r.data::json, clock_timestamp(),
           clock_timestamp() + make_interval(secs => $5)
    FROM unnest($2::text[], $3::boolean[], $4::text[]) AS r(job_id, success, data)
    ON CONFLICT (namespace, job_id) DO UPDATE SET success = EXCLUDED.success,
        data = EXCLUDED.data, stored_at = EXCLUDED.stored_at, expires_at = EXCLUDED.expires_at
)
SELECT count(pg_notify($6, payload)) FROM unnest($7::text[]) AS payload""",  # noqa: S608 - schema identifier validated
            self.namespace,
            list(rows),
            [success for success, _ in rows.values()],
            [data for _, data in rows.values()],
            self.ttl,
            self.channel,
            notify_payloads(list(rows)),
        )
        return [None] * len(batch)

    async def get(self, job_id: str) -> JobResult | None:
        """Return a result, or None if absent or expired."""
        record = await self._live_record(job_id)
        return None if record is None else JobResult.from_dict(record)

    async def find_job_ids(self, prefix: str, limit: int) -> list[str]:
        """Return up to `limit` ids with a live result starting with `prefix`."""
        await self._ensure_ready()
        sql = result_ids_sql(self._schema)
        return await find_ids(self._db, sql, self.namespace, prefix, limit)

    async def delete(self, job_id: str) -> bool:
        """Delete a result; True if it existed."""
        status = await self._execute(
            f"DELETE FROM {self._s}.results WHERE namespace = $1 AND job_id = $2",  # noqa: S608 - validated
            self.namespace,
            job_id,
        )
        return _deleted(status) > 0

    async def wait(
        self, job_id: str, *, timeout: float = 30.0, poll_interval: float = 0.5
    ) -> JobResult | None:
        """Wait up to `timeout` seconds for a result, woken by LISTEN/NOTIFY.

        `poll_interval` is accepted for API compatibility; the store re-reads only on a
        notification, after a LISTEN reconnect, and every few seconds as a safety net.

        Returns:
            The result, or None on timeout.
        """
        del poll_interval  # woken by NOTIFY, not polled
        await self._listen()
        event = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(event)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                event.clear()
                result = await self.get(job_id)
                remaining = deadline - loop.time()
                if result is not None or remaining <= 0:
                    return result
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(remaining, _SAFETY_NET))
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[job_id]

    async def _listen(self) -> None:
        if self._listener is not None:
            return
        async with self._listen_lock:
            if self._listener is None:
                listener = await Listener.acquire(self._db.dsn)
                await listener.subscribe(self.channel, self._on_notify)
                self._listener = listener

    def _on_notify(self, payload: str | None) -> None:
        waiters = self._waiters
        if payload is None:
            targets = [e for events in waiters.values() for e in events]
        else:
            targets = [e for job_id in notified_ids(payload) for e in waiters.get(job_id, ())]
        for event in targets:
            event.set()

    async def cleanup_expired(self) -> int:
        """Remove expired results and return how many were removed.

        Writes of results run the same sweep in the background now and then (see
        `ExpiredRows`), so nothing has to call this for expired results to go.
        """
        return await self.expiry.sweep()

    def _listing_sql(self, *, success: bool) -> str:
        # `success` is written into the statement, not passed: the generic plan of
        # `success = $2` could not use `results_failed_idx` (`WHERE NOT success`).
        which = "success" if success else "NOT success"
        return (
            f"SELECT data FROM {self._s}.results WHERE namespace = $1 AND {which} "  # noqa: S608 - validated
            f"AND {UNEXPIRED} ORDER BY stored_at DESC LIMIT $2"
        )

    async def _listing(self, *, success: bool, limit: int | None) -> list[JobResult]:
        rows = await self._fetch(self._listing_sql(success=success), self.namespace, limit)
        return [JobResult.from_dict(loads(row["data"])) for row in rows]

    async def get_completed(self, limit: int | None = None) -> list[JobResult]:
        """Return stored successful results, newest first."""
        return await self._listing(success=True, limit=limit)

    async def get_failed(self, limit: int | None = None) -> list[JobResult]:
        """Return stored failed results, newest first."""
        return await self._listing(success=False, limit=limit)

    async def close(self) -> None:
        """Finish the results being written, stop listening and release the pool."""
        await self._writes.drain()
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.unsubscribe(self.channel, self._on_notify)
            await listener.release()
        await super().close()


class PostgresDLQBackend(_TableStore):
    """Dead-letter records (the dicts of `FailureRecord.to_dict`), newest first."""

    _what = "dead-letter store"

    async def add(self, record_id: str, record_data: Mapping[str, Any]) -> None:
        """Store (or replace, as the newest) a record."""
        await self._execute(
            f"""
INSERT INTO {self._s}.dead_letters (namespace, record_id, data, added_at)
VALUES ($1, $2, $3::json, clock_timestamp())
ON CONFLICT (namespace, record_id) DO UPDATE SET data = EXCLUDED.data,
    added_at = EXCLUDED.added_at""",  # noqa: S608 - validated
            self.namespace,
            record_id,
            dumps(dict(record_data)),
        )

    async def get(self, record_id: str) -> dict[str, Any] | None:
        """Return a record, or None."""
        text = await self._fetchval(
            f"SELECT data FROM {self._s}.dead_letters WHERE namespace = $1 AND record_id = $2",  # noqa: S608 - validated
            self.namespace,
            record_id,
        )
        return None if text is None else dict(loads(text))

    async def list_all(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Return records newest first, at most `limit` of them."""
        rows = await self._fetch(
            f"SELECT data FROM {self._s}.dead_letters WHERE namespace = $1 "  # noqa: S608 - validated
            "ORDER BY added_at DESC, seq DESC LIMIT $2",
            self.namespace,
            limit,
        )
        return [dict(loads(row["data"])) for row in rows]

    async def remove(self, record_id: str) -> bool:
        """Delete a record; True if it existed."""
        status = await self._execute(
            f"DELETE FROM {self._s}.dead_letters WHERE namespace = $1 AND record_id = $2",  # noqa: S608 - validated
            self.namespace,
            record_id,
        )
        return _deleted(status) > 0

    async def clear(self) -> int:
        """Delete every record of this namespace and return how many there were."""
        status = await self._execute(
            f"DELETE FROM {self._s}.dead_letters WHERE namespace = $1",  # noqa: S608 - validated
            self.namespace,
        )
        return _deleted(status)

    async def size(self) -> int:
        """Return the number of records."""
        value = await self._fetchval(
            f"SELECT count(*) FROM {self._s}.dead_letters WHERE namespace = $1",  # noqa: S608 - validated
            self.namespace,
        )
        return int(value)


SCHEDULE_STATE_FIELDS = frozenset(
    {"enabled", "next_run", "last_run", "last_outcome", "last_error", "last_job_id"}
)
"""Record fields `PostgresSchedulerStore.update_fields` changes (others are ignored)."""


class PostgresSchedulerStore(_TableStore):
    """Cron schedules as records (the dicts of `ScheduledJob.to_dict`)."""

    _what = "scheduler store"

    async def update_fields(self, job_id: str, fields: Mapping[str, Any]) -> None:
        """Change state fields of a schedule, leaving the rest (no-op for an unknown id).

        The row is locked while it is read and rewritten, so a scheduler recording a
        fire and a command pausing the schedule never undo each other's change.
        """
        changes = {k: v for k, v in fields.items() if k in SCHEDULE_STATE_FIELDS}
        if not changes:
            return
        await self._ensure_ready()
        select = (
            f"SELECT data FROM {self._s}.schedules "  # noqa: S608 - validated
            "WHERE namespace = $1 AND job_id = $2 FOR UPDATE"
        )
        update = (
            f"UPDATE {self._s}.schedules SET data = $3::json, "  # noqa: S608 - validated
            "next_run = COALESCE($4, next_run), updated_at = clock_timestamp() "
            "WHERE namespace = $1 AND job_id = $2"
        )
        next_run = changes.get("next_run")
        at = None if next_run is None else float(next_run)

        async def run(conn: Conn) -> None:
            async with conn.transaction():
                text = await conn.fetchval(select, self.namespace, job_id)
                if text is None:
                    return
                record = {**loads(text), **changes}
                await conn.execute(update, self.namespace, job_id, dumps(record), at)

        await self._db.run(run, f"write the {self._what}")

    async def save_job(self, job_id: str, job: Mapping[str, Any]) -> None:
        """Store (or replace) a schedule."""
        record = dict(job)
        next_run = record.get("next_run")
        await self._execute(
            f"""
INSERT INTO {self._s}.schedules (namespace, job_id, data, next_run, updated_at)
VALUES ($1, $2, $3::json, $4, clock_timestamp())
ON CONFLICT (namespace, job_id) DO UPDATE SET data = EXCLUDED.data,
    next_run = EXCLUDED.next_run, updated_at = EXCLUDED.updated_at""",  # noqa: S608 - validated
            self.namespace,
            job_id,
            dumps(record),
            None if next_run is None else float(next_run),
        )

    async def load_jobs(self) -> dict[str, dict[str, Any]]:
        """Return every stored schedule by id (with its latest `next_run`)."""
        rows = await self._fetch(
            f"SELECT job_id, data, next_run FROM {self._s}.schedules WHERE namespace = $1",  # noqa: S608 - validated
            self.namespace,
        )
        loaded: dict[str, dict[str, Any]] = {}
        for row in rows:
            record = dict(loads(row["data"]))
            if row["next_run"] is not None:
                record["next_run"] = row["next_run"]
            loaded[row["job_id"]] = record
        return loaded

    async def update_next_run(self, job_id: str, next_run: float) -> None:
        """Record a schedule's next fire time (no-op for an unknown id)."""
        await self._execute(
            f"UPDATE {self._s}.schedules SET next_run = $3, updated_at = clock_timestamp() "  # noqa: S608 - validated
            "WHERE namespace = $1 AND job_id = $2",
            self.namespace,
            job_id,
            float(next_run),
        )

    async def delete_job(self, job_id: str) -> None:
        """Remove a schedule (no-op for an unknown id)."""
        await self._execute(
            f"DELETE FROM {self._s}.schedules WHERE namespace = $1 AND job_id = $2",  # noqa: S608 - validated
            self.namespace,
            job_id,
        )
