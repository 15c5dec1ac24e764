"""A row whose decoding raises an unexpected error is poison; the rest of its batch is delivered.

Decoding is made to raise `RuntimeError` (not `TaskDecodeError`) for one job's payload, as
a bug in the decoder would: the backend decodes through `decode_or_poison`, so that row
becomes the poison stand-in and its siblings in the same `dequeue_batch` are handed out.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lexigram.contracts.tasks import POISON_JOB_NAME, Job, _codec
from lexigram.tasks.backends.sqlite import SQLiteTaskQueue

_BOOM = "decoder.blows.up"


def _explode_on(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make decoding raise RuntimeError for the payload of a job named `name`."""
    real = _codec.decode_job
    marker = f'"{name}"'.encode()

    def flaky(data: bytes | str) -> Job:
        if marker in (data if isinstance(data, bytes) else data.encode()):
            msg = "the decoder blew up"
            raise RuntimeError(msg)
        return real(data)

    monkeypatch.setattr(_codec, "decode_job", flaky)


async def test_a_row_failing_to_decode_unexpectedly_does_not_sink_its_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = SQLiteTaskQueue(str(tmp_path / "batch.db"), queue_name="batch")
    try:
        jobs = [Job(name="send", args=(1,)), Job(name=_BOOM), Job(name="send", args=(3,))]
        for job in jobs:
            assert (await queue.enqueue(job)).is_ok()
        _explode_on(monkeypatch, _BOOM)
        batch = await queue.dequeue_batch(3, timeout=1.0)
        by_id = {job.id: job for job in batch}
        assert set(by_id) == {job.id for job in jobs}, "one bad row dropped its batch"
        assert [by_id[jobs[0].id].args, by_id[jobs[2].id].args] == [(1,), (3,)]
        poison = by_id[jobs[1].id]
        assert poison.name == POISON_JOB_NAME
        assert poison.queue_name == "batch"
        assert "RuntimeError: the decoder blew up" in (poison.last_error or "")
        for job in batch:
            assert await queue.ack(job.id, lease_token=job.lease_token)
        assert await queue.count("batch") == 0
    finally:
        await queue.close()
