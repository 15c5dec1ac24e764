"""Cancellation of jobs in a SQLite file: the cancel write and the announcements.

SQLite has no NOTIFY, so an announcement is a row: cancelling a job that a live lease
holds deletes it and, in the same transaction, records its id in ``lexigram_kv``
under the queue's cancel namespace for `CANCEL_MEMORY` seconds. The commit publishes
the queue's cancel topic, which wakes every subscriber in every process at once (see
`Notifier`); a subscriber that missed the datagram reads the rows at its next poll
(every ``poll_interval``), which is one indexed read of a handful of rows.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator

from lexigram.tasks.backends.sqlite._database import Database

CANCEL_MEMORY = 60.0
"""Seconds an announcement row is kept (a subscriber reads it within its poll)."""

# cancel_in() answers: the job was not there, it waited, it was in flight.
ABSENT, WAITED, RAN = 0, 1, 2


def cancel_topic(queue_name: str) -> str:
    """The wake-up topic announcing cancellations of a queue's running jobs."""
    return f"c:{queue_name}"


def _namespace(queue_name: str) -> str:
    return f"lexigram.cancel:{queue_name}"


def cancel_in(conn: sqlite3.Connection, queue_name: str, job_id: str) -> int:
    """Delete the job and, when a live lease held it, record the announcement.

    Runs inside the write transaction; returns `ABSENT`, `WAITED` or `RAN`.
    """
    now = time.time()
    row = conn.execute(
        "SELECT lease_token IS NOT NULL AND available_at > ? FROM lexigram_jobs "
        "WHERE id = ? AND queue = ?",
        (now, job_id, queue_name),
    ).fetchone()
    if row is None:
        return ABSENT
    conn.execute("DELETE FROM lexigram_jobs WHERE id = ? AND queue = ?", (job_id, queue_name))
    if not row[0]:
        return WAITED
    namespace = _namespace(queue_name)
    conn.execute(
        "DELETE FROM lexigram_kv WHERE namespace = ? AND expires_at <= ?", (namespace, now)
    )
    conn.execute(
        "INSERT OR REPLACE INTO lexigram_kv VALUES (?, ?, ?, ?)",
        (namespace, job_id, repr(now), now + CANCEL_MEMORY),
    )
    return RAN


async def follow_cancellations(
    db: Database, queue_name: str, poll_interval: float
) -> AsyncIterator[str]:
    """Yield the id of every job of `queue_name` cancelled in flight from now on."""
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    namespace = _namespace(queue_name)

    def notified() -> None:  # on the notifier's thread
        if not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    def announced(conn: sqlite3.Connection) -> list[str]:
        rows = conn.execute(
            "SELECT key FROM lexigram_kv WHERE namespace = ? AND expires_at > ? ORDER BY value",
            (namespace, time.time()),
        ).fetchall()
        return [str(row[0]) for row in rows]

    topic = cancel_topic(queue_name)
    db.notifier.subscribe(topic, notified)
    try:
        # Announcements made before the subscription are not this subscriber's.
        seen = set(await db.call(announced, write=False, what="read cancellations"))
        while True:
            try:
                async with asyncio.timeout(poll_interval):
                    await wake.wait()
            except TimeoutError:
                pass  # the poll: a datagram may have been lost
            wake.clear()
            current = await db.call(announced, write=False, what="read cancellations")
            fresh = [job_id for job_id in current if job_id not in seen]
            seen = set(current)
            for job_id in fresh:
                yield job_id
    finally:
        db.notifier.unsubscribe(topic, notified)
