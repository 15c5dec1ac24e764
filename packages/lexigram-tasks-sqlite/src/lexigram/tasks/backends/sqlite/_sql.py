"""The statements of `SQLiteTaskQueue` on ``lexigram_jobs``: inserting, picking and leasing.

`insert_rows` adds jobs (claiming their idempotency keys), `pick` finds the next due rows
in delivery order and `lease_rows` leases them; `HELD`, `ANY_HOLDER` and `LEASED` are the
conditions the settling statements and the counts share.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any

logger = logging.getLogger("lexigram.tasks.backends.sqlite")

_INSERT = (
    "INSERT INTO lexigram_jobs (id, queue, priority, available_at, retry_count, "
    "idempotency_key, payload) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
# Delivery order is `lexigram_jobs_order`: priority high to low, then due time, then
# enqueue order. A take reads it one priority level at a time: the level's due rows are
# one range of the index, which ends at its first row not due yet. One statement over
# every level ("ORDER BY priority DESC, available_at, seq") could not stop there: it
# filtered each delayed or leased row on its way to the next level, or to the end when
# fewer rows than asked for were due (56 ms a take with a million of them).
# INDEXED BY: a plan that sorts the due rows instead would read all of them per take.
# SQLite keeps whatever another program wrote into a column (its types are affinities):
# a delivery count that is not a number reads as 0 rather than failing every take.
_PICK_LEVEL = (
    "SELECT seq, id, payload, CAST(delivery_count AS INTEGER) FROM lexigram_jobs "
    "INDEXED BY lexigram_jobs_order "
    "WHERE queue = ? AND priority = ? AND available_at <= ? "
    "ORDER BY available_at, seq LIMIT ?"
)
# The levels are found one seek each (SQLite's min/max optimisation), not by a scan.
_TOP_LEVEL = "SELECT max(priority) FROM lexigram_jobs WHERE queue = ?"
_NEXT_LEVEL = "SELECT max(priority) FROM lexigram_jobs WHERE queue = ? AND priority < ?"
_NEXT_DUE_AT_LEVEL = (
    "SELECT min(available_at) FROM lexigram_jobs "
    "WHERE queue = ? AND priority = ? AND available_at > ?"
)
# A due time that is not a number sorts after every number, so its row would never fall
# due (nor be the level's earliest while a number is there): an idle take looks at the
# level's last due time (one seek) and makes such rows due now.
_LAST_DUE_AT_LEVEL = "SELECT max(available_at) FROM lexigram_jobs WHERE queue = ? AND priority = ?"
_DUE_NOW_IF_NOT_A_TIME = (
    "UPDATE lexigram_jobs SET available_at = ?, lease_token = NULL "
    "WHERE queue = ? AND typeof(available_at) NOT IN ('integer', 'real')"
)
# The rows of a take are leased by one statement per `_LEASE_CHUNK` of them, not one per
# row: one statement moves its rows in the order index through one cursor, which spares
# most of the descents from the root (lease pages per job 5.0 -> 2.1 at 10k jobs waiting,
# about 8k fewer instructions per job). A shorter chunk repeats its last seq, so the text,
# and the prepared statement, is always the same.
_LEASE_CHUNK = 100
_LEASE = (
    "UPDATE lexigram_jobs SET lease_token = ?, delivery_count = delivery_count + 1, "  # noqa: S608 - constant text
    f"available_at = ? WHERE seq IN ({', '.join('?' * _LEASE_CHUNK)})"
)
HELD = "id = ? AND queue = ? AND lease_token = ? AND available_at > ?"
ANY_HOLDER = "id = ? AND queue = ? AND lease_token IS NOT NULL"
LEASED = "lease_token IS NOT NULL AND available_at > ?"


def pick(
    conn: sqlite3.Connection, queue: str, now: float, limit: int
) -> tuple[list[Any], float | None]:
    """Up to `limit` due rows of `queue` in delivery order, level by level.

    Returns:
        The rows (seq, id, payload, delivery_count), and when there are none, the
        earliest time a row of the queue falls due (a delayed job or a lease; None for
        an empty queue).
    """
    picked: list[Any] = []
    next_due: float | None = None
    level = conn.execute(_TOP_LEVEL, (queue,)).fetchone()[0]
    while level is not None:
        picked += conn.execute(_PICK_LEVEL, (queue, level, now, limit - len(picked))).fetchall()
        if len(picked) >= limit:
            break
        if not picked:
            last = conn.execute(_LAST_DUE_AT_LEVEL, (queue, level)).fetchone()[0]
            if isinstance(last, int | float):
                due = conn.execute(_NEXT_DUE_AT_LEVEL, (queue, level, now)).fetchone()[0]
            else:
                _make_due(conn, queue, now)
                due = now
            if due is not None and (next_due is None or due < next_due):
                next_due = due
        level = conn.execute(_NEXT_LEVEL, (queue, level)).fetchone()[0]
    return picked, next_due


def _make_due(conn: sqlite3.Connection, queue: str, now: float) -> None:
    repaired = conn.execute(_DUE_NOW_IF_NOT_A_TIME, (now, queue)).rowcount
    logger.error(
        "SQLite queue %r: %d job row(s) had a due time (lexigram_jobs.available_at) that "
        "is not a number, written by something other than lexigram-tasks; they are due "
        "now. Write times as epoch seconds.",
        queue,
        repaired,
    )


def lease_rows(conn: sqlite3.Connection, token: str, expiry: float, seqs: list[int]) -> None:
    """Lease the rows `seqs` under `token` until `expiry` (see `_LEASE`)."""
    for first in range(0, len(seqs), _LEASE_CHUNK):
        chunk = seqs[first : first + _LEASE_CHUNK]
        chunk += chunk[-1:] * (_LEASE_CHUNK - len(chunk))
        conn.execute(_LEASE, (token, expiry, *chunk))


def insert_rows(
    conn: sqlite3.Connection, queue: str, ttl: float, rows: list[tuple[Any, ...]]
) -> list[str]:
    """Insert `rows` (see `_INSERT`); return the id each row resolved to."""
    if all(row[5] is None for row in rows):
        conn.executemany(_INSERT, rows)
        return [row[0] for row in rows]
    now = time.time()
    ids: list[str] = []
    for row in rows:
        job_id, key = row[0], row[5]
        if key is not None:
            held = conn.execute(
                "SELECT job_id, expires_at FROM lexigram_job_keys WHERE queue = ? AND key = ?",
                (queue, key),
            ).fetchone()
            if held is not None and held[0] != job_id:
                alive = held[1] > now or (
                    conn.execute("SELECT 1 FROM lexigram_jobs WHERE id = ?", (held[0],)).fetchone()
                    is not None
                )
                if alive:
                    ids.append(held[0])
                    continue
            conn.execute(
                "INSERT OR REPLACE INTO lexigram_job_keys (queue, key, job_id, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (queue, key, job_id, now + ttl),
            )
        conn.execute(_INSERT, row)
        ids.append(job_id)
    return ids
