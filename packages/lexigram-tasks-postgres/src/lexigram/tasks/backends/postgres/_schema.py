"""Versioned migrations of the backend's tables, applied on first use or by `migrate`.

Two migration scopes share one ``schema_migrations`` table per schema:

- ``queue:<table>``: the jobs table (its name is configurable) and its key table;
- ``stores``: result, progress, DLQ, schedule, workflow, lock, rate-limit, cache and
  idempotency tables.

Migrations run in one transaction under a transaction-level advisory lock keyed on the
schema, so any number of processes may start at once: the first applies what is
missing, the others wait for it and then find nothing to do. A migration is never
edited once released; a change is a new, higher version.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import asyncpg

from lexigram.contracts.tasks import mask_url, nearest_name
from lexigram.tasks.backends.postgres._connection import REFUSED_ERRORS, Conn, connect_once
from lexigram.tasks.backends.postgres._diagnose import SchemaMissingError, refusal_error
from lexigram.tasks.backends.postgres._options import (
    DEFAULT_SCHEMA,
    quote_ident,
    validate_identifier,
)

logger = logging.getLogger(__name__)

STORES_SCOPE = "stores"

MIGRATION_TIMEOUT = 3600.0
"""Seconds a migration statement (or the wait for another process's migration) may take.

Longer than the pool's per-statement `command_timeout`: a migration that rewrites a
large table (stores v2 converts every record) must not be cancelled half-way.
"""


class Migration(NamedTuple):
    """One versioned schema change.

    `sql` is formatted with ``{s}`` (schema), ``{t}`` (jobs table), ``{k}`` (its key
    table) and ``{i}``/``{j}`` (its index names), all quoted.
    """

    version: int
    name: str
    sql: str


# The jobs table. `available_at` is the one time column the dequeue needs: for a waiting
# job it is when the job may run (enqueue time, or its delay / retry backoff); for a
# leased job it is when the lease expires. "Ready or lease expired" is then the single
# condition `available_at <= now()`, served by one index whose order is also the
# delivery order (priority high to low, then by time, then by `seq`). Leased rows sort
# after the ready ones of their priority (their time is in the future), so the scan for
# a priority stops at the first not-yet-due row and reclaiming an expired lease is part
# of the ordinary dequeue. `status` is 'pending' (ready at enqueue), 'scheduled'
# (delayed or backing off) or 'running' (leased); the partial "timed" index over the
# non-pending rows answered "when is the next delayed job or lease due" (version 2
# drops it).
_QUEUE_V1 = """
CREATE TABLE IF NOT EXISTS {s}.{t} (
    id              text        PRIMARY KEY,
    queue           text        NOT NULL,
    priority        smallint    NOT NULL DEFAULT 0,
    seq             bigint      GENERATED ALWAYS AS IDENTITY,
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'scheduled', 'running')),
    available_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    heartbeat_at    timestamptz,
    delivery_count  integer     NOT NULL DEFAULT 0,
    retry_count     integer     NOT NULL DEFAULT 0,
    idempotency_key text,
    enqueued_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    payload         bytea       NOT NULL
) WITH (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.05,
    autovacuum_vacuum_cost_delay = 0
);
CREATE INDEX IF NOT EXISTS {i}
    ON {s}.{t} (queue, priority DESC, available_at, seq);
CREATE INDEX IF NOT EXISTS {j}
    ON {s}.{t} (queue, available_at) WHERE status <> 'pending';
CREATE TABLE IF NOT EXISTS {s}.{k} (
    queue      text        NOT NULL,
    key        text        NOT NULL,
    job_id     text        NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (queue, key)
);
"""

_STORES_V1 = """
CREATE TABLE IF NOT EXISTS {s}.results (
    namespace  text        NOT NULL,
    job_id     text        NOT NULL,
    success    boolean     NOT NULL,
    data       jsonb       NOT NULL,
    stored_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at timestamptz,
    PRIMARY KEY (namespace, job_id)
);
CREATE INDEX IF NOT EXISTS results_listing_idx ON {s}.results (namespace, success, stored_at DESC);
CREATE INDEX IF NOT EXISTS results_expiry_idx ON {s}.results (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS {s}.progress (
    namespace  text        NOT NULL,
    job_id     text        NOT NULL,
    complete   boolean     NOT NULL,
    data       jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (namespace, job_id)
);
CREATE TABLE IF NOT EXISTS {s}.dead_letters (
    namespace text        NOT NULL,
    record_id text        NOT NULL,
    seq       bigint      GENERATED ALWAYS AS IDENTITY,
    data      jsonb       NOT NULL,
    added_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (namespace, record_id)
);
CREATE INDEX IF NOT EXISTS dead_letters_listing_idx
    ON {s}.dead_letters (namespace, added_at DESC, seq DESC);
CREATE TABLE IF NOT EXISTS {s}.schedules (
    namespace  text             NOT NULL,
    job_id     text             NOT NULL,
    data       jsonb            NOT NULL,
    next_run   double precision,
    updated_at timestamptz      NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (namespace, job_id)
);
CREATE TABLE IF NOT EXISTS {s}.workflows (
    namespace   text        NOT NULL,
    workflow_id text        NOT NULL,
    status      text        NOT NULL,
    data        jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (namespace, workflow_id)
);
CREATE TABLE IF NOT EXISTS {s}.locks (
    key        text        PRIMARY KEY,
    token      text        NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.rate_limits (
    name       text             PRIMARY KEY,
    tokens     double precision NOT NULL,
    granted    boolean          NOT NULL DEFAULT false,
    updated_at timestamptz      NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS {s}.cache (
    key        text COLLATE "C" PRIMARY KEY,
    value      text             NOT NULL,
    expires_at timestamptz
);
CREATE TABLE IF NOT EXISTS {s}.idempotency (
    key        text        PRIMARY KEY,
    record     jsonb       NOT NULL,
    expires_at timestamptz NOT NULL
);
"""

# Records move from jsonb to json, and cache values from text to bytea: jsonb and text
# refuse U+0000 ("\u0000 cannot be converted to text"), so a failing job whose error,
# traceback or arguments held a NUL could not be dead-lettered (nor its result or
# progress stored). json keeps the JSON text as written, escapes included; nothing
# queries inside these records, so jsonb's operators are not missed. The conversion
# rewrites each table once; the existing records stay readable.
_STORES_V2 = """
ALTER TABLE {s}.results ALTER COLUMN data TYPE json USING data::json;
ALTER TABLE {s}.progress ALTER COLUMN data TYPE json USING data::json;
ALTER TABLE {s}.dead_letters ALTER COLUMN data TYPE json USING data::json;
ALTER TABLE {s}.schedules ALTER COLUMN data TYPE json USING data::json;
ALTER TABLE {s}.workflows ALTER COLUMN data TYPE json USING data::json;
ALTER TABLE {s}.idempotency ALTER COLUMN record TYPE json USING record::json;
ALTER TABLE {s}.cache ALTER COLUMN value TYPE bytea USING convert_to(value, 'UTF8');
"""

# Queue-driven workflow runs: a run row that every join locks, a row per ended step, and
# a row per joined stage naming the one member that completed it (its advance).
_STORES_V3 = """
CREATE TABLE IF NOT EXISTS {s}.workflow_runs (
    namespace   text        NOT NULL,
    workflow_id text        NOT NULL,
    status      text        NOT NULL,
    definition  json        NOT NULL,
    result      json,
    error       text,
    failer      text,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (namespace, workflow_id)
);
CREATE TABLE IF NOT EXISTS {s}.workflow_steps (
    namespace   text    NOT NULL,
    workflow_id text    NOT NULL,
    stage       integer NOT NULL,
    member      integer NOT NULL,
    record      json    NOT NULL,
    PRIMARY KEY (namespace, workflow_id, stage, member)
);
CREATE TABLE IF NOT EXISTS {s}.workflow_stages (
    namespace   text    NOT NULL,
    workflow_id text    NOT NULL,
    stage       integer NOT NULL,
    completer   integer NOT NULL,
    PRIMARY KEY (namespace, workflow_id, stage)
);
"""

# Progress entries expire a day after their last change (option `progress_ttl`), as they
# do on Redis and SQLite; before, a job's progress stayed until something deleted it.
# Entries written before this version get the default day from their last change.
_STORES_V4 = """
ALTER TABLE {s}.progress ADD COLUMN IF NOT EXISTS expires_at timestamptz;
UPDATE {s}.progress SET expires_at = updated_at + interval '1 day' WHERE expires_at IS NULL;
CREATE INDEX IF NOT EXISTS progress_expiry_idx ON {s}.progress (expires_at)
    WHERE expires_at IS NOT NULL;
"""

# Every result (one per job) paid for an entry in (namespace, success, stored_at), which
# only the rare listing of stored results read: about a tenth of the server's work per
# job. Failed results keep an index of their own (failures are few, and they are what
# one lists); listing the successful ones scans the table, which the expiry sweeps keep
# to a TTL's worth of results. Building the partial index reads the table once.
_STORES_V5 = """
DROP INDEX IF EXISTS {s}.results_listing_idx;
CREATE INDEX IF NOT EXISTS results_failed_idx ON {s}.results (namespace, stored_at DESC)
    WHERE NOT success;
"""

# Every dequeue (the row becomes 'running') and every delayed enqueue wrote an entry into
# the partial "timed" index, which only answered the idle consumer's next-due bound, the
# count of running jobs and `requeue_stalled`. The dequeue index answers them too, one
# priority level at a time (see `levels` in `_sql`), as SQLite's queue does.
_QUEUE_V2 = """
DROP INDEX IF EXISTS {s}.{j};
"""

# Idempotency records and cache entries are swept like results (`ExpiredRows`): by their
# writes, in the background, in chunks found through an index on their expiry. Before,
# each writer ran one unbounded DELETE a minute that read the whole table.
_STORES_V6 = """
CREATE INDEX IF NOT EXISTS idempotency_expiry_idx ON {s}.idempotency (expires_at);
CREATE INDEX IF NOT EXISTS cache_expiry_idx ON {s}.cache (expires_at)
    WHERE expires_at IS NOT NULL;
"""


def _as_bytes(table: str, *columns: str) -> str:
    """The statement giving `columns` of `table` (a template name) the "C" collation."""
    altered = ", ".join(f'ALTER COLUMN {column} TYPE text COLLATE "C"' for column in columns)
    return f"ALTER TABLE {{s}}.{table} {altered};\n"


# Identifiers compare as bytes. A text column compares under the database's collation,
# and on PostgreSQL 15 only "C" and "POSIX" compare with memcmp: under any other (en_US,
# an ICU locale, even C.UTF-8) every comparison in a primary key or in the dequeue
# index's `queue` goes through the locale's collation function. A job's ids are
# compared a few dozen times on its way (its lease's index entries, its ack's lookup,
# its result's key): in an ICU en-US database the W2 drain ran 8-10 % faster with "C"
# identifiers (9-13 % steady), in C.UTF-8 1-2 %. Byte order is also what a prefix lookup
# needs (`_lookup`): a linguistic collation sorts some punctuation apart, and a
# prefix ending in a UUID's "-" missed ids. Nothing sorts identifiers for people.
# Changing a column's collation keeps its rows and rebuilds the indexes that hold it.
_QUEUE_V3 = _as_bytes("{t}", "id", "queue", "idempotency_key") + _as_bytes(
    "{k}", "queue", "key", "job_id"
)

# The store tables' identifiers compare as bytes, as the jobs table's do (queue v3).
_STORES_V7 = "".join(
    [
        _as_bytes("results", "namespace", "job_id"),
        _as_bytes("progress", "namespace", "job_id"),
        _as_bytes("dead_letters", "namespace", "record_id"),
        _as_bytes("schedules", "namespace", "job_id"),
        *(
            _as_bytes(table, "namespace", "workflow_id")
            for table in ("workflows", "workflow_runs", "workflow_steps", "workflow_stages")
        ),
        _as_bytes("locks", "key"),
        _as_bytes("rate_limits", "name"),
        _as_bytes("idempotency", "key"),
    ]
)

# Locks are swept like idempotency records (`ExpiredRows`): a released lock's row is
# deleted, but that of a holder killed before its release stayed until someone acquired
# the same key again, which for a key naming one job or one user may be never.
_STORES_V8 = """
CREATE INDEX IF NOT EXISTS locks_expiry_idx ON {s}.locks (expires_at);
"""

# `list_runs` (the dashboard, `lexigram-tasks workflow list`) read and sorted every run of
# its namespace for each page it showed, and runs stay until deleted. A backward walk of
# these stops after the page: one index for every run, one for the runs in one status.
# `workflow_id` (the tie-break of equal times) is in both, so no sort is left; building
# them reads the runs table once and blocks writes to it meanwhile (plain CREATE INDEX:
# CONCURRENTLY cannot run inside the migration's transaction). `status` becomes an
# indexed identifier, so it compares as bytes like the others (stores v7); changing only
# its collation rewrites no row.
_STORES_V9 = (
    _as_bytes("workflow_runs", "status")
    + """
CREATE INDEX IF NOT EXISTS workflow_runs_created_idx
    ON {s}.workflow_runs (namespace, created_at DESC, workflow_id DESC);
CREATE INDEX IF NOT EXISTS workflow_runs_status_idx
    ON {s}.workflow_runs (namespace, status, created_at DESC, workflow_id DESC);
"""
)

QUEUE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "jobs table, indexes, keys", _QUEUE_V1),
    Migration(2, "no timed index (the dequeue index answers its reads)", _QUEUE_V2),
    Migration(3, "identifiers compare as bytes (COLLATE C)", _QUEUE_V3),
)
"""Migrations of a jobs table (scope ``queue:<table>``), oldest first."""

STORE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "store tables", _STORES_V1),
    Migration(2, "NUL-safe records (json) and cache values (bytea)", _STORES_V2),
    Migration(3, "queue-driven workflow runs", _STORES_V3),
    Migration(4, "progress entries expire", _STORES_V4),
    Migration(5, "only failed results indexed for listing", _STORES_V5),
    Migration(6, "idempotency and cache entries indexed by expiry", _STORES_V6),
    Migration(7, "identifiers compare as bytes (COLLATE C)", _STORES_V7),
    Migration(8, "locks indexed by expiry", _STORES_V8),
    Migration(9, "workflow runs indexed for listing", _STORES_V9),
)
"""Migrations of the store tables (scope ``stores``), oldest first."""

_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS {s}.schema_migrations (
    scope      text        NOT NULL,
    version    integer     NOT NULL,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, version)
)
"""


def queue_scope(table: str) -> str:
    """Migration scope of the jobs table `table`."""
    return f"queue:{table}"


def _render(migration: Migration, schema: str, table: str) -> str:
    return migration.sql.format(
        s=quote_ident(schema),
        t=quote_ident(table),
        k=quote_ident(f"{table}_keys"),
        i=quote_ident(f"{table}_dequeue_idx"),
        j=quote_ident(f"{table}_timed_idx"),
    )


async def _applied_versions(conn: Conn, schema: str) -> dict[str, int]:
    rows = await conn.fetch(
        f"SELECT scope, max(version) AS version FROM {quote_ident(schema)}.schema_migrations "  # noqa: S608 - validated identifier
        "GROUP BY scope"
    )
    return {row["scope"]: row["version"] for row in rows}


def _pending(applied: dict[str, int], table: str | None) -> list[tuple[str, Migration]]:
    plans: list[tuple[str, tuple[Migration, ...]]] = [(STORES_SCOPE, STORE_MIGRATIONS)]
    if table is not None:
        plans.append((queue_scope(table), QUEUE_MIGRATIONS))
    return [
        (scope, migration)
        for scope, migrations in plans
        for migration in migrations
        if migration.version > applied.get(scope, 0)
    ]


# The catalog, for the refusal of a schema under `must_exist`: the database the connection
# is on, whether the schema is there at all, and which schemas hold the backend's tables
# (a `schema_migrations` table with a `scope` column), to suggest the one meant.
_MISSING_SCHEMA_FACTS = """
SELECT current_database() AS database,
       EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS present,
       ARRAY(
           SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relname = 'schema_migrations' AND c.relkind IN ('r', 'p')
             AND EXISTS (SELECT 1 FROM pg_attribute a
                         WHERE a.attrelid = c.oid AND a.attname = 'scope' AND NOT a.attisdropped)
       ) AS ours
"""


async def _refuse_missing(conn: Conn, schema: str, dsn: str | None) -> SchemaMissingError:
    """The error for `schema`, which holds no ``schema_migrations``, under ``must_exist``."""
    facts = await conn.fetchrow(_MISSING_SCHEMA_FACTS, schema)
    database, present, ours = (
        (str(facts["database"]), bool(facts["present"]), [str(n) for n in facts["ours"]])
        if facts is not None  # always a row: the query has no FROM
        else ("?", False, [])
    )
    where = f"the database {database!r}" + (f" at {mask_url(dsn)}" if dsn else "")
    if present:
        what = (
            f"The PostgreSQL schema {schema!r} in {where} holds none of the backend's tables "
            "(no schema_migrations table; the option must_exist is set, so they are not "
            "created)."
        )
    else:
        what = (
            f"The PostgreSQL schema {schema!r} does not exist in {where} (the option "
            "must_exist is set, so it is not created)."
        )
    near = nearest_name(schema, ours)
    guess = f" Did you mean {near!r}?" if near is not None else ""
    msg = (
        f"{what}{guess} Check the schema option (default {DEFAULT_SCHEMA!r}) and the DSN's "
        "database; a worker, `lexigram-tasks scheduler` or `lexigram-tasks enqueue` creates "
        "the schema and its tables on first use, as does "
        "lexigram.tasks.backends.postgres.migrate()."
    )
    return SchemaMissingError(
        msg, details={"schema": schema, "database": database, "schema_exists": present}
    )


def _refuse_missing_table(
    schema: str, table: str, applied: dict[str, int], dsn: str | None
) -> SchemaMissingError:
    """The error for a jobs table `schema` never had, under ``must_exist``."""
    prefix = queue_scope("")
    tables = sorted(scope.removeprefix(prefix) for scope in applied if scope.startswith(prefix))
    near = nearest_name(table, tables)
    guess = f" Did you mean {near!r}?" if near is not None else ""
    there = ", ".join(repr(t) for t in tables) if tables else "none"
    where = f" at {mask_url(dsn)}" if dsn else ""
    msg = (
        f"The PostgreSQL schema {schema!r}{where} has no jobs table {table!r} (the option "
        f"must_exist is set, so it is not created; jobs tables there: {there}).{guess} Check "
        "the table option (default 'tasks'); a worker, `lexigram-tasks enqueue` or "
        "lexigram.tasks.backends.postgres.migrate(table=...) creates it."
    )
    return SchemaMissingError(
        msg, details={"schema": schema, "table": table, "schema_exists": True}
    )


async def ensure_schema(
    conn: Conn,
    schema: str = DEFAULT_SCHEMA,
    table: str | None = "tasks",
    *,
    must_exist: bool = False,
    dsn: str | None = None,
) -> list[str]:
    """Apply the migrations `schema` (and the jobs table `table`) still lack.

    A fast read decides whether anything is missing; only then is the advisory lock
    taken and the state read again under it.

    With `must_exist`, a schema without a ``schema_migrations`` table (absent, mistyped,
    or holding none of the backend's tables) is refused and nothing is created, and so
    is a jobs table `table` the schema never had (a mistyped ``table`` option). A
    schema that has them is still brought up to date: a schema an earlier release made
    is an upgrade to do, not a typo.

    Args:
        conn: A connection (not inside a transaction).
        schema: Schema to migrate; created if absent (unless `must_exist`).
        table: Jobs table to migrate as well, or None for the store tables only.
        must_exist: Refuse to create the schema (the ``must_exist`` option).
        dsn: The DSN `conn` came from, named (masked) in the refusal; None names the
            database alone.

    Returns:
        Names of the migrations applied (``scope vN name``); empty if up to date.

    Raises:
        SchemaMissingError: `must_exist` is set and `schema` holds no
            ``schema_migrations`` table, or no jobs table `table` (a
            `BackendConnectionError`: the message names what is missing and says what
            to check).
    """
    validate_identifier(schema, field="schema")
    if table is not None:
        validate_identifier(table, field="table")
    try:
        applied = await _applied_versions(conn, schema)
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        # A fresh database: the locked path below creates it, unless that is refused.
        if must_exist:
            raise await _refuse_missing(conn, schema, dsn) from None
    else:
        if must_exist and table is not None and queue_scope(table) not in applied:
            raise _refuse_missing_table(schema, table, applied, dsn)
        if not _pending(applied, table):
            return []
    applied_names: list[str] = []
    async with conn.transaction():
        # Serialises concurrent starters; released automatically at commit/rollback.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            f"lexigram_tasks:{schema}",
            timeout=MIGRATION_TIMEOUT,
        )
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        await conn.execute(_MIGRATIONS_TABLE.format(s=quote_ident(schema)))
        for scope, migration in _pending(await _applied_versions(conn, schema), table):
            await conn.execute(_render(migration, schema, table or ""), timeout=MIGRATION_TIMEOUT)
            await conn.execute(
                f"INSERT INTO {quote_ident(schema)}.schema_migrations (scope, version, name) "  # noqa: S608 - validated identifier
                "VALUES ($1, $2, $3)",
                scope,
                migration.version,
                migration.name,
            )
            applied_names.append(f"{scope} v{migration.version} {migration.name}")
    if applied_names:
        logger.info("Applied PostgreSQL migrations in schema %s: %s", schema, applied_names)
    return applied_names


async def migrate(
    dsn: str | None, schema: str = DEFAULT_SCHEMA, *, table: str = "tasks", timeout: float = 10.0
) -> list[str]:
    """Create or upgrade the backend's tables in `schema` (e.g. from a deploy script).

    Safe to run while workers are running and from several processes at once.

    Args:
        dsn: PostgreSQL DSN; None uses the libpq environment variables.
        schema: Schema to create or upgrade.
        table: Name of the jobs table.
        timeout: Seconds to wait for the connection.

    Returns:
        Names of the migrations applied; empty if the schema was up to date.

    Raises:
        BackendConnectionError: The server cannot be reached, refuses the login, or
            refuses the role the rights to create the schema or its tables.

    Example:
        applied = await migrate("postgresql://app@db/app", "lexigram_tasks")
    """
    conn = await connect_once(dsn, timeout=timeout)
    try:
        return await ensure_schema(conn, schema, table)
    except REFUSED_ERRORS as exc:
        raise refusal_error(dsn, f"create the tables of schema {schema!r}", exc) from exc
    finally:
        await conn.close()
