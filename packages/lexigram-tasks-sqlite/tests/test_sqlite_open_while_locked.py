"""Opening an up-to-date database needs no write lock.

The file is in WAL mode, where readers never wait for the writer. Opening used to take
the write lock (``BEGIN IMMEDIATE``) only to read the schema version, so while another
program held a long write transaction no new process could open the file: not
`lexigram-tasks inspect` nor `job status`, nor a new worker.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from lexigram.contracts.tasks import BackendConnectionError
from lexigram.tasks.backends.sqlite._open import open_database
from lexigram.tasks.backends.sqlite._schema import SCHEMA_VERSION


def _open(path: Path, busy_timeout: float) -> sqlite3.Connection:
    return open_database(
        str(path), synchronous="NORMAL", busy_timeout=busy_timeout, allow_network_filesystem=True
    )


def _hold_the_write_lock(path: Path) -> sqlite3.Connection:
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    return writer


def test_an_up_to_date_file_opens_while_another_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    _open(path, 1.0).close()  # created and migrated
    with closing(_hold_the_write_lock(path)) as writer:
        started = time.monotonic()
        with closing(_open(path, 0.5)) as conn:
            version = conn.execute("SELECT max(version) FROM lexigram_schema").fetchone()[0]
        assert time.monotonic() - started < 0.4
        writer.execute("COMMIT")
    assert version == SCHEMA_VERSION


def test_a_file_that_needs_its_migrations_still_waits_for_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as old:
        old.execute("PRAGMA journal_mode=WAL")
        old.execute("CREATE TABLE lexigram_schema (version INTEGER NOT NULL)")
        old.execute("INSERT INTO lexigram_schema (version) VALUES (0)")
    with closing(_hold_the_write_lock(path)) as writer:
        with pytest.raises(BackendConnectionError, match="stayed locked by another process"):
            _open(path, 0.3)
        writer.execute("ROLLBACK")
    with closing(_open(path, 1.0)) as conn:
        version = conn.execute("SELECT max(version) FROM lexigram_schema").fetchone()[0]
    assert version == SCHEMA_VERSION
