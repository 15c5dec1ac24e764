"""A job row whose id is not UTF-8 text, written by another program into the database.

sqlite3 decodes TEXT strictly, so reading such an id raised in every take that met it: the
worker ran none of that take's jobs, for ever. The take now renames the row to a printable
id in its own transaction and hands it out as poison; the rest of the batch is delivered.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from lexigram.contracts.tasks import POISON_JOB_NAME, Job
from lexigram.tasks.backends.sqlite import SQLiteTaskQueue

RAW_ID = b"foreign-\xff\xfe-id"
PRINTABLE_ID = "foreign-\\xff\\xfe-id"


def store_under_raw_id(path: Path, job_id: str) -> None:
    """Rewrite the id of `job_id`'s rows to `RAW_ID`, as another program could."""
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE lexigram_jobs SET id = CAST(? AS TEXT) WHERE id = ?", (RAW_ID, job_id))
        conn.execute(
            "UPDATE lexigram_job_keys SET job_id = CAST(? AS TEXT) WHERE job_id = ?",
            (RAW_ID, job_id),
        )
    conn.close()


async def test_the_foreign_id_is_renamed_and_handed_out_as_poison_with_its_batch(
    tmp_path: Path,
) -> None:
    path = tmp_path / "foreign.db"
    queue = SQLiteTaskQueue(str(path), queue_name="tasks")
    try:
        foreign = Job(name="send", args=(0,), idempotency_key="order-7")
        good = [Job(name="send", args=(n,)) for n in (1, 2)]
        for job in [foreign, *good]:
            assert (await queue.enqueue(job)).is_ok()
        store_under_raw_id(path, foreign.id)

        batch = await queue.dequeue_batch(10, timeout=1.0)

        by_id = {job.id: job for job in batch}
        assert set(by_id) == {PRINTABLE_ID, *(job.id for job in good)}
        poison = by_id[PRINTABLE_ID]
        assert poison.name == POISON_JOB_NAME
        assert poison.queue_name == "tasks"
        assert (poison.last_error or "").startswith(
            f"Job id {RAW_ID!r} on queue 'tasks' is not UTF-8 text"
        )
        # The idempotency key follows the job to its new id.
        duplicate = Job(name="send", idempotency_key="order-7")
        assert (await queue.enqueue(duplicate)).unwrap() == PRINTABLE_ID
        for job in batch:
            assert await queue.ack(job.id, lease_token=job.lease_token)
        assert await queue.count("tasks") == 0
    finally:
        await queue.close()


async def test_a_taken_printable_id_gets_the_raw_ids_hex(tmp_path: Path) -> None:
    path = tmp_path / "taken.db"
    queue = SQLiteTaskQueue(str(path), queue_name="tasks")
    try:
        holder = Job(name="send", id=PRINTABLE_ID)
        foreign = Job(name="send")
        for job in (holder, foreign):
            assert (await queue.enqueue(job)).is_ok()
        store_under_raw_id(path, foreign.id)

        batch = await queue.dequeue_batch(10, timeout=1.0)

        renamed = f"{PRINTABLE_ID}#{RAW_ID.hex()}"
        assert {(job.id, job.name) for job in batch} == {
            (PRINTABLE_ID, "send"),
            (renamed, POISON_JOB_NAME),
        }
    finally:
        await queue.close()


async def test_an_id_lookup_skips_ids_that_are_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "lookup.db"
    queue = SQLiteTaskQueue(str(path), queue_name="tasks")
    try:
        foreign = Job(name="send", id="foreign-1")
        for job in (foreign, Job(name="send", id="foreign-ok")):
            assert (await queue.enqueue(job)).is_ok()
        store_under_raw_id(path, foreign.id)

        assert await queue.find_job_ids("foreign-", 10) == ["foreign-ok"]
    finally:
        await queue.close()
