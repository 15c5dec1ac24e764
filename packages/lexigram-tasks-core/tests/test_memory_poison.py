"""A memory queue's kept envelope that no longer decodes comes back as poison, never raises.

The memory queue lends the job objects it was given, and rebuilds a job that comes back
(nack, lapsed lease) from the envelope it kept at enqueue. With signing turned on
(`configure_envelope`) after an unsigned job was enqueued, that envelope no longer
decodes: the job comes back as the poison stand-in, which a worker dead-letters, instead
of `nack` or the next `dequeue` raising `TaskDecodeError`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lexigram.contracts.tasks import POISON_JOB_NAME, EnvelopeSigner, Job, configure_envelope
from lexigram.tasks.backends.memory import MemoryTaskQueue


@pytest.fixture
def restore_envelope() -> Iterator[None]:
    yield
    configure_envelope()


@pytest.mark.usefixtures("restore_envelope")
async def test_a_job_nacked_after_signing_was_turned_on_comes_back_as_poison() -> None:
    queue = MemoryTaskQueue(queue_name="mem")
    job = Job(name="send", args=(1,))
    assert (await queue.enqueue(job)).is_ok()
    leased = await queue.dequeue()
    assert leased is not None
    assert leased.name == "send"
    configure_envelope(signer=EnvelopeSigner("k" * 32))
    assert await queue.nack(leased.id, lease_token=leased.lease_token) is True
    again = await queue.dequeue()
    assert again is not None
    assert again.id == job.id
    assert again.name == POISON_JOB_NAME
    assert again.queue_name == "mem"
    assert "not signed" in (again.last_error or "")
    assert await queue.ack(again.id, lease_token=again.lease_token) is True
