"""A wait that times out says where the job is: running, waiting, or nowhere.

It used to give the same advice whatever the job was doing ("check that a worker consumes
its queue..."), also for a job that was simply still running.
"""

from __future__ import annotations

import pytest

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.handles import JobHandle
from lexigram.tasks.results import InMemoryResultStore


async def test_the_timeout_message_says_where_the_job_is() -> None:
    queue = MemoryTaskQueue(queue_name="emails")
    results = InMemoryResultStore()
    waiting = Job(name="send")
    (await queue.enqueue(waiting)).unwrap()
    handle: JobHandle[object] = JobHandle(queue, waiting, result_store=results)
    with pytest.raises(TimeoutError, match=r"still waiting in queue 'emails' \(pending\)"):
        await handle.wait(timeout=0.01)

    running = await queue.dequeue()
    assert running is not None
    with pytest.raises(TimeoutError, match=r"it is still running\. Wait longer\."):
        await handle.wait(timeout=0.01)

    gone: JobHandle[object] = JobHandle(queue, "no-such-job", result_store=results)
    with pytest.raises(TimeoutError, match="neither waiting nor running"):
        await gone.wait(timeout=0.01)
