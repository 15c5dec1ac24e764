"""The tables, and the migrations that create them, recorded in ``lexigram_schema``.

Each migration is a list of statements applied in one ``BEGIN IMMEDIATE`` transaction
together with the new version number, so two processes opening a fresh file at once
apply it once, and a crash in the middle leaves the previous version intact.

Times are epoch seconds (REAL). Every process on the machine shares the clock, which
is all SQLite's single-host model needs.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # One row per job a queue holds. `lease_token` NULL = waiting, available from
        # `available_at`; set = leased until `available_at` (the lease expiry).
        """CREATE TABLE lexigram_jobs (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            queue TEXT NOT NULL,
            priority INTEGER NOT NULL,
            available_at REAL NOT NULL,
            lease_token TEXT,
            delivery_count INTEGER NOT NULL DEFAULT 0,
            retry_count INTEGER NOT NULL DEFAULT 0,
            idempotency_key TEXT,
            payload BLOB NOT NULL
        )""",
        # Delivery order: priority high to low, then due time, then enqueue order.
        (
            "CREATE INDEX lexigram_jobs_order ON lexigram_jobs "
            "(queue, priority DESC, available_at, seq)"
        ),
        # The next delayed job or lease to fall due, for an idle consumer's wait bound.
        "CREATE INDEX lexigram_jobs_due ON lexigram_jobs (queue, available_at)",
        """CREATE TABLE lexigram_job_keys (
            queue TEXT NOT NULL,
            key TEXT NOT NULL,
            job_id TEXT NOT NULL,
            expires_at REAL NOT NULL,
            PRIMARY KEY (queue, key)
        ) WITHOUT ROWID""",
        """CREATE TABLE lexigram_results (
            job_id TEXT PRIMARY KEY,
            success INTEGER NOT NULL,
            data TEXT NOT NULL,
            stored_at REAL NOT NULL,
            expires_at REAL NOT NULL
        )""",
        "CREATE INDEX lexigram_results_listed ON lexigram_results (success, stored_at)",
        "CREATE INDEX lexigram_results_expiry ON lexigram_results (expires_at)",
        """CREATE TABLE lexigram_progress (
            job_id TEXT PRIMARY KEY,
            data TEXT NOT NULL,
            complete INTEGER NOT NULL,
            expires_at REAL NOT NULL
        )""",
        """CREATE TABLE lexigram_progress_events (
            task_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            data TEXT NOT NULL,
            at REAL NOT NULL,
            PRIMARY KEY (task_id, seq)
        ) WITHOUT ROWID""",
        "CREATE INDEX lexigram_progress_events_at ON lexigram_progress_events (at)",
        """CREATE TABLE lexigram_dlq (
            record_id TEXT PRIMARY KEY,
            data TEXT NOT NULL,
            added_at REAL NOT NULL
        )""",
        "CREATE INDEX lexigram_dlq_added ON lexigram_dlq (added_at)",
        """CREATE TABLE lexigram_schedules (
            job_id TEXT PRIMARY KEY,
            data TEXT NOT NULL,
            next_run REAL
        )""",
        """CREATE TABLE lexigram_workflows (
            workflow_id TEXT PRIMARY KEY,
            data TEXT NOT NULL,
            active INTEGER NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
        """CREATE TABLE lexigram_locks (
            key TEXT PRIMARY KEY,
            token TEXT NOT NULL,
            expires_at REAL NOT NULL
        )""",
        """CREATE TABLE lexigram_buckets (
            name TEXT PRIMARY KEY,
            tokens REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
        """CREATE TABLE lexigram_kv (
            namespace TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            expires_at REAL,
            PRIMARY KEY (namespace, key)
        ) WITHOUT ROWID""",
    ),
    (
        # Every stored result paid for this index (a worker stores one per job) while
        # only the rare "list completed / failed results" read used it: that read now
        # scans the table, which the TTL keeps bounded.
        "DROP INDEX IF EXISTS lexigram_results_listed",
    ),
    (
        # Queue-driven workflow runs: the run, a row per ended step, and a row per joined
        # stage naming the one member that completed it (see `_runs`).
        """CREATE TABLE lexigram_workflow_runs (
            workflow_id TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            definition TEXT NOT NULL,
            result TEXT,
            error TEXT,
            failer TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
        """CREATE TABLE lexigram_workflow_steps (
            workflow_id TEXT NOT NULL,
            stage INTEGER NOT NULL,
            member INTEGER NOT NULL,
            record TEXT NOT NULL,
            PRIMARY KEY (workflow_id, stage, member)
        ) WITHOUT ROWID""",
        """CREATE TABLE lexigram_workflow_stages (
            workflow_id TEXT NOT NULL,
            stage INTEGER NOT NULL,
            completer INTEGER NOT NULL,
            PRIMARY KEY (workflow_id, stage)
        ) WITHOUT ROWID""",
    ),
    (
        # Every lease moved its row in this index as well as in `lexigram_jobs_order` (two
        # more B-tree descents per job, three with the ack's delete) while it only served
        # an idle consumer's next-due bound and `count`, which `lexigram_jobs_order`
        # answers per priority level (see `_queue`).
        "DROP INDEX IF EXISTS lexigram_jobs_due",
    ),
    (
        # Saving progress deletes expired entries now and then, as storing results does;
        # before, only `list_active` did, so a process that never listed kept them all.
        "CREATE INDEX IF NOT EXISTS lexigram_progress_expiry ON lexigram_progress (expires_at)",
    ),
    (
        # Acquiring a lock deletes expired lock rows now and then: a released lock's row
        # is deleted, but that of a holder killed before releasing stayed until its key
        # was acquired again, which for a key naming one job may be never.
        "CREATE INDEX IF NOT EXISTS lexigram_locks_expiry ON lexigram_locks (expires_at)",
    ),
    (
        # `list_runs` (the dashboard, `lexigram-tasks workflow list`) read and sorted every
        # run for each page it showed, and runs stay until deleted. An index entry holds
        # the rowid after its columns, so a backward walk of these gives the listing's
        # order (newest first, the latest rowid first among equal times) and stops at
        # `limit`: one for every run, one for the runs in one status.
        (
            "CREATE INDEX IF NOT EXISTS lexigram_workflow_runs_created "
            "ON lexigram_workflow_runs (created_at)"
        ),
        (
            "CREATE INDEX IF NOT EXISTS lexigram_workflow_runs_status "
            "ON lexigram_workflow_runs (status, created_at)"
        ),
    ),
)
"""Migration N (1-based) is ``MIGRATIONS[N - 1]``; never edit one that shipped."""

SCHEMA_VERSION = len(MIGRATIONS)
"""The version this code writes and reads."""


def recorded_version(conn: sqlite3.Connection) -> int | None:
    """The version recorded in the file, read without a write lock (None: no record yet)."""
    try:
        row = conn.execute("SELECT max(version) FROM lexigram_schema").fetchone()
    except sqlite3.OperationalError:  # no such table: a new file, or not ours
        return None
    return None if row[0] is None else int(row[0])


def schema_version(conn: sqlite3.Connection) -> int:
    """The version recorded in the file (0 for a new file, whose table it creates)."""
    conn.execute("CREATE TABLE IF NOT EXISTS lexigram_schema (version INTEGER NOT NULL)")
    return recorded_version(conn) or 0


def migrate(conn: sqlite3.Connection) -> list[int]:
    """Apply the pending migrations (the caller holds a write transaction).

    Returns:
        The versions applied now (empty when the file was up to date).

    Raises:
        RuntimeError: The file was written by a newer version of this backend.
    """
    current = schema_version(conn)
    if current > SCHEMA_VERSION:
        msg = (
            f"The SQLite database has schema version {current}, newer than this "
            f"lexigram-tasks-sqlite ({SCHEMA_VERSION}). Upgrade lexigram-tasks-sqlite."
        )
        raise RuntimeError(msg)
    applied: list[int] = []
    for version in range(current + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[version - 1]:
            conn.execute(statement)
        conn.execute("INSERT INTO lexigram_schema (version) VALUES (?)", (version,))
        applied.append(version)
    return applied
