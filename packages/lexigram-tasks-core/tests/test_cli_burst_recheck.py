"""`--burst` ends only when two readings of the queues, a moment apart, find no job.

On RabbitMQ a retry moves between a delay queue and the queue, which `count` reads one
after the other: a single reading could miss it, and the worker stopped with the retry
still to run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from lexigram.tasks._presence import WorkerTotals
from lexigram.tasks.cli import _worker_run


class _Queue:
    queue_name = "jobs"

    def __init__(self, readings: Iterator[int]) -> None:
        self._readings = readings

    async def count(self, queue_name: str) -> int:
        return next(self._readings)


class _Runtime:
    def __init__(self, readings: list[int], processed: list[int]) -> None:
        self.queues = [_Queue(iter(readings))]
        self._processed = iter(processed)

    def totals(self) -> WorkerTotals:
        return WorkerTotals(processed=next(self._processed))


async def _empty(readings: list[int], processed: list[int]) -> bool:
    runtime: Any = _Runtime(readings, processed)
    return await _worker_run._queues_empty(runtime)


async def test_a_job_seen_by_the_second_reading_keeps_the_worker_up(monkeypatch: Any) -> None:
    monkeypatch.setattr(_worker_run, "_BURST_RECHECK", 0.0)
    assert await _empty([0, 1], [5, 5]) is False  # the retry reached the counted queue
    assert await _empty([1], [5]) is False
    assert await _empty([0, 0], [5, 6]) is False  # a job ran in between: not idle
    assert await _empty([0, 0], [5, 5]) is True
