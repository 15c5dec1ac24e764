"""The blocked-loop warning names each job that ran during the block once.

A job that ended during the block is remembered as a long job, and may still be in
flight while its ack travels: it was counted twice ("'hog' (x2)").
"""

from __future__ import annotations

import time

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.execution import TaskWorker
from lexigram.tasks.execution._running import Running


def test_a_job_still_settling_is_named_once() -> None:
    worker = TaskWorker("w1", MemoryTaskQueue(), {"hog": lambda: None})
    hog, other = Job(name="hog"), Job(name="other")
    now = time.time()
    for job in (hog, other):
        entry = Running(job, now)
        entry.started_at = now - 10.0
        worker._in_flight[job.id] = entry
    worker._settler.long_jobs.append((hog.id, "hog", now))  # ended, still settling
    worker._settler.long_jobs.append(("gone", "done_earlier", now))  # ended and settled
    assert sorted(worker._running_task_names(5.0)) == ["done_earlier", "hog", "other"]
