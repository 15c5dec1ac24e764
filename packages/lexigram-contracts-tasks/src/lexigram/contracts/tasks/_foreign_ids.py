"""Job ids that are not UTF-8 text: what a backend does with one a foreign writer stored.

Producers refuse such ids (`validate_job`), but a store that holds bytes (Redis keys, a
SQLite column another program wrote) takes any. No client can name the job again to
settle it, since each encodes text as UTF-8; a backend that decoded the id as it took the
job would fail the whole batch, every time. So a backend renames the job in its own store
to `printable_job_id` and hands it out as `make_renamed_poison_job`, which the worker
dead-letters like any undecodable job.
"""

from __future__ import annotations

from lexigram.contracts.tasks._codec import make_poison_job
from lexigram.contracts.tasks._models import Job

__all__ = ["make_renamed_poison_job", "printable_job_id"]


def printable_job_id(raw_id: bytes, *, taken: bool = False) -> str:
    r"""The id a job stored under `raw_id` (not UTF-8) is renamed to.

    Args:
        raw_id: The stored id.
        taken: The first form is the id of another job already: make it unique.

    Returns:
        `raw_id` decoded with the bytes that are not UTF-8 escaped (``b"a\xff"`` becomes
        ``"a\\xff"``); with `taken`, followed by ``#`` and the hex of `raw_id`.
    """
    text = raw_id.decode("utf-8", "backslashreplace")
    return f"{text}#{raw_id.hex()}" if taken else text


def make_renamed_poison_job(
    job_id: str, raw_id: bytes, raw: bytes | str, *, queue_name: str | None
) -> Job:
    """The stand-in job for a job renamed from `raw_id` to `job_id`; see `make_poison_job`.

    Args:
        job_id: The new id (`printable_job_id`), under which the job is settled.
        raw_id: The id it was stored under.
        raw: Its payload (kept, truncated, for inspection in the DLQ).
        queue_name: The queue it was taken from.
    """
    error = (
        f"Job id {raw_id!r} on queue {queue_name!r} is not UTF-8 text, so no client could "
        f"name it to run or settle it; it was renamed {job_id!r} and not run. Job ids must "
        "be UTF-8 text: find the writer that stored it (lexigram's producers refuse such ids)."
    )
    return make_poison_job(job_id, raw, error, queue_name=queue_name)
