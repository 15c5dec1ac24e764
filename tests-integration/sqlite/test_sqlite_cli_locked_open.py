"""A command on a file that needs the write lock to open, while another process holds it.

A file written by an older schema version is migrated by the first process that opens
it, which needs the write lock. While another program holds a long write transaction,
the commands used to give up at ``--connect-timeout`` with the generic "did not answer
... Check that the server is running" line, while the SQLite backend's own message says
what is going on: another process holds the write lock, and what to do.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from lexigram.tasks.backends.sqlite import SQLiteTaskQueue
from lexigram.tasks.backends.sqlite._schema import SCHEMA_VERSION

pytestmark = [pytest.mark.slow]


def _cli() -> str:
    return str(Path(sys.executable).with_name("lexigram-tasks"))


def _file_of_the_previous_version(path: Path) -> None:
    async def create() -> None:
        queue = SQLiteTaskQueue(str(path))
        await queue.check_connection()
        await queue.close()

    asyncio.run(create())
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("DELETE FROM lexigram_schema WHERE version = ?", (SCHEMA_VERSION,))


@pytest.mark.parametrize(
    "command",
    [["inspect"], ["job", "status", "some-job"], ["enqueue", "greet"]],
    ids=["inspect", "job-status", "enqueue"],
)
def test_the_command_shows_the_backends_lock_message(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "tasks.db"
    _file_of_the_previous_version(path)
    with closing(sqlite3.connect(path, isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")  # another program's long write transaction
        done = subprocess.run(  # noqa: S603 - our own command, fixed arguments
            [_cli(), *command, "--backend", f"sqlite:///{path}", "--connect-timeout", "1"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        writer.execute("ROLLBACK")
    assert done.returncode == 2, done.stderr
    assert "did not answer" not in done.stderr
    assert (
        f"it needs the write lock to migrate its tables from schema version "
        f"{SCHEMA_VERSION - 1} to {SCHEMA_VERSION}, and another process held a write "
        "transaction on it for 1 s" in done.stderr  # --connect-timeout's, not busy_timeout's
    )
    assert "Find the process holding the long write transaction" in done.stderr
