"""Opening an up-to-date database needs no write lock; one that needs it waits `open_timeout`.

The file is in WAL mode, where readers never wait for the writer. Opening used to take
the write lock (``BEGIN IMMEDIATE``) only to read the schema version, so while another
program held a long write transaction no new process could open the file: not
`lexigram-tasks inspect` nor `job status`, nor a new worker.

A file to create or migrate does need the lock. How long opening waits for it is the
option `open_timeout` (the command line's ``--connect-timeout``, which the backend names
as its first-answer option), so that a command gives up with the message saying what
holds it up, rather than the command's generic "did not answer".
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from lexigram.contracts.tasks import BackendConnectionError, TaskBackendSpec
from lexigram.tasks.backends.sqlite import backend
from lexigram.tasks.backends.sqlite._database import Database
from lexigram.tasks.backends.sqlite._open import open_database
from lexigram.tasks.backends.sqlite._schema import SCHEMA_VERSION


def _open(path: Path, busy_timeout: float, open_timeout: float | None = None) -> sqlite3.Connection:
    return open_database(
        str(path),
        synchronous="NORMAL",
        busy_timeout=busy_timeout,
        allow_network_filesystem=True,
        open_timeout=open_timeout,
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
        with pytest.raises(BackendConnectionError) as raised:
            _open(path, 0.3)
        writer.execute("ROLLBACK")
    with closing(_open(path, 1.0)) as conn:
        version = conn.execute("SELECT max(version) FROM lexigram_schema").fetchone()[0]
    assert version == SCHEMA_VERSION
    assert (
        f"it needs the write lock to migrate its tables from schema version 0 to "
        f"{SCHEMA_VERSION}, and another process held a write transaction on it for 0.3 s"
    ) in str(raised.value)


def test_open_timeout_bounds_the_wait_for_the_lock_apart_from_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    with closing(_hold_the_write_lock(path)) as writer:  # a new file: its tables to create
        started = time.monotonic()
        with pytest.raises(BackendConnectionError) as raised:
            _open(path, busy_timeout=30.0, open_timeout=0.2)
        took = time.monotonic() - started
        writer.execute("ROLLBACK")
    assert took < 5.0
    text = str(raised.value)
    assert "it needs the write lock to create its tables" in text
    assert "for 0.2 s" in text
    assert "raise the open_timeout option (--connect-timeout on the command line)" in text


def test_the_backend_names_open_timeout_as_what_connect_timeout_sets(tmp_path: Path) -> None:
    spec = TaskBackendSpec(
        type="sqlite", url=f"sqlite:///{tmp_path}/x.db", options={"open_timeout": 0.5}
    )
    queue = backend.create_queue(spec)
    assert backend.first_answer_options == ("open_timeout",)
    assert queue.database.open_timeout == 0.5
    assert queue.database.busy_timeout == 10.0  # writes keep waiting as long as before


async def test_a_database_opens_on_a_later_call_once_the_lock_is_released(tmp_path: Path) -> None:
    # The failed open of a long-lived process (an application's producer) used to be
    # kept: every later call failed with the same "locked" error, long after the other
    # program had committed.
    path = tmp_path / "tasks.db"
    db = Database(str(path), busy_timeout=0.2, allow_network_filesystem=True)
    try:
        with closing(_hold_the_write_lock(path)) as writer:
            with pytest.raises(BackendConnectionError, match="needs the write lock"):
                await db.call(_one, write=False)
            writer.execute("ROLLBACK")
        assert await db.call(_one, write=False) == 1
    finally:
        await db.close()


def _one(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT 1").fetchone()[0])
