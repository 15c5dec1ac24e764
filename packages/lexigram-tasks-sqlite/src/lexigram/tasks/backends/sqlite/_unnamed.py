"""Job rows whose id is not UTF-8 text (another program wrote them).

SQLite stores whatever bytes a program puts in a TEXT column, and Python's sqlite3
decodes TEXT as UTF-8, raising for anything else: one such row failed every take that
read it, so the worker ran none of the jobs of that take, for ever. No client could name
the job to settle it either. `rename_unnamed` gives each such row of a queue a printable
id (`lexigram.contracts.tasks.printable_job_id`) inside the take's own transaction, and
the queue hands those jobs out as poison (`make_renamed_poison_job`), which the worker
dead-letters.
"""

from __future__ import annotations

import sqlite3

from lexigram.contracts.tasks import printable_job_id

__all__ = ["rename_unnamed", "undecodable_text", "utf8_text"]


def undecodable_text(exc: sqlite3.OperationalError) -> bool:
    """True when sqlite3 raised `exc` for a TEXT value that is not UTF-8."""
    return "Could not decode to UTF-8" in str(exc)


def utf8_text(raw: bytes) -> str | None:
    """`raw` decoded as UTF-8, or None when it is not UTF-8."""
    try:
        return bytes(raw).decode()
    except UnicodeDecodeError:
        return None


def rename_unnamed(conn: sqlite3.Connection, queue: str) -> dict[str, bytes]:
    """Rename the rows of `queue` whose id is not UTF-8; new id -> the id stored.

    Reads every id of the queue (as bytes): this runs only after a take met such a row.
    A renamed job keeps its idempotency key, which names it by its new id.
    """
    renamed: dict[str, bytes] = {}
    rows = conn.execute(
        "SELECT seq, CAST(id AS BLOB) FROM lexigram_jobs WHERE queue = ?", (queue,)
    ).fetchall()
    for seq, stored in rows:
        raw_id = bytes(stored)
        if utf8_text(raw_id) is not None:
            continue
        for taken in (False, True):
            new_id = printable_job_id(raw_id, taken=taken)
            if conn.execute("SELECT 1 FROM lexigram_jobs WHERE id = ?", (new_id,)).fetchone():
                continue
            conn.execute("UPDATE lexigram_jobs SET id = ? WHERE seq = ?", (new_id, seq))
            conn.execute(
                "UPDATE lexigram_job_keys SET job_id = ? "
                "WHERE queue = ? AND CAST(job_id AS BLOB) = ?",
                (new_id, queue, raw_id),
            )
            renamed[new_id] = raw_id
            break
    return renamed
