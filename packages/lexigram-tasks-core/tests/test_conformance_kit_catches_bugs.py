"""The conformance kit fails deliberately broken queues (and passes the real one).

Each case writes a small backend test module into pytester's temporary directory,
exactly as a third-party backend would, and runs it in pytest-asyncio's strict mode
(the kit must not depend on the repo's auto mode).
"""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

_MODULE = '''
import heapq
import uuid

import pytest

from lexigram.contracts.tasks import JobStatus
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.testing import {theme}


class IgnoresPriorityQueue(MemoryTaskQueue):
    """Bug: every ready job goes in at the same priority (FIFO only)."""

    def _push_ready(self, job, seq):
        heapq.heappush(self._ready, (0, seq, job))


class LosesExpiredLeaseQueue(MemoryTaskQueue):
    """Bug: a job whose lease runs out is dropped instead of delivered again."""

    def _expire(self, job_id):
        self._jobs.pop(job_id)


class DeleteKeepsLeaseQueue(MemoryTaskQueue):
    """Bug: deleting an in-flight job hides it but leaves its lease running."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._hidden = set()

    async def delete_job(self, job_id):
        if job_id in self._in_flight and job_id not in self._hidden:
            self._hidden.add(job_id)
            return True
        return await super().delete_job(job_id)

    async def get_job(self, job_id):
        return None if job_id in self._hidden else await super().get_job(job_id)


class AckIgnoresTokenQueue(MemoryTaskQueue):
    """Bug: ack settles whatever delivery holds the job, whatever token it is given."""

    async def ack(self, task_id, *, lease_token=None):
        return await super().ack(task_id)


class CountsExpiredLeasesQueue(MemoryTaskQueue):
    """Bug: count(RUNNING) counts every lease, also those that ran out."""

    async def count(self, queue_name, status=None):
        if status is JobStatus.RUNNING and queue_name == self.queue_name:
            return len(self._in_flight)
        return await super().count(queue_name, status)


@pytest.fixture
def make_queue(lease_seconds):
    queue = {queue_class}(
        queue_name=f"kit-{{uuid.uuid4().hex[:8]}}", visibility_timeout=lease_seconds
    )

    async def factory():
        return queue

    return factory


class TestKit({theme}):
    prompt_seconds = 1.0  # a broken queue makes the kit wait this long; keep it short

    @pytest.fixture
    def lease_seconds(self):
        return 0.3
'''


def _test_name(report: pytest.TestReport | pytest.CollectReport) -> str:
    return report.nodeid.rsplit("::", 1)[-1]


def _run_kit(
    pytester: pytest.Pytester, *, queue_class: str, theme: str, select: str | None = None
) -> tuple[set[str], set[str]]:
    pytester.makepyfile(
        test_backend=textwrap.dedent(_MODULE.format(queue_class=queue_class, theme=theme))
    )
    args = [
        "-p",
        "no:cacheprovider",
        "-o",
        "asyncio_mode=strict",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
    ]
    if select is not None:
        args += ["-k", select]
    recorder = pytester.inline_run(*args)
    passed, skipped, failed = recorder.listoutcomes()
    assert not skipped, "the kit must never skip"
    for report in failed:
        # A planted bug must trip one of the kit's checks, not crash the harness.
        assert "AssertionError" in str(report.longrepr), report.longrepr
    return {_test_name(report) for report in passed}, {_test_name(report) for report in failed}


def test_kit_fails_queue_that_ignores_priority(pytester: pytest.Pytester) -> None:
    passed, failed = _run_kit(
        pytester, queue_class="IgnoresPriorityQueue", theme="QueueOrderingConformance"
    )
    assert {"test_higher_priority_dequeued_first", "test_many_priorities_then_fifo"} <= failed
    # FIFO within one priority is all this queue still gets right.
    assert "test_same_priority_is_fifo" in passed


def test_kit_fails_queue_that_loses_expired_lease(pytester: pytest.Pytester) -> None:
    _, failed = _run_kit(
        pytester,
        queue_class="LosesExpiredLeaseQueue",
        theme="QueueLeaseConformance",
        select="redelivers",
    )
    assert failed == {
        "test_lease_expiry_redelivers_job",
        "test_lease_expiry_redelivers_to_another_consumer",
    }


def test_kit_fails_queue_whose_delete_keeps_the_lease(pytester: pytest.Pytester) -> None:
    _, failed = _run_kit(
        pytester,
        queue_class="DeleteKeepsLeaseQueue",
        theme="QueueJobManagementConformance",
        select="delete",
    )
    assert "test_delete_in_flight_job_is_never_redelivered" in failed
    assert "test_deleted_in_flight_job_cannot_be_extended_or_requeued" in failed


def test_kit_fails_queue_whose_ack_ignores_the_token(pytester: pytest.Pytester) -> None:
    _, failed = _run_kit(
        pytester,
        queue_class="AckIgnoresTokenQueue",
        theme="QueueFencingConformance",
        select="ack_after_redelivery",
    )
    assert failed == {"test_stale_holder_cannot_ack_after_redelivery"}


def test_kit_fails_queue_that_counts_expired_leases(pytester: pytest.Pytester) -> None:
    _, failed = _run_kit(
        pytester,
        queue_class="CountsExpiredLeasesQueue",
        theme="QueueBoundsConformance",
        select="count_running",
    )
    assert failed == {"test_count_running_excludes_expired_leases"}


@pytest.mark.parametrize(
    ("theme", "select"),
    [
        ("QueueOrderingConformance", None),
        ("QueueLeaseConformance", "redelivers"),
        ("QueueJobManagementConformance", "delete"),
        ("QueueFencingConformance", "ack_after_redelivery"),
        ("QueueBoundsConformance", "count_running"),
    ],
)
def test_kit_passes_correct_memory_queue(
    pytester: pytest.Pytester, theme: str, select: str | None
) -> None:
    # The control: the same selections pass on the real queue, so the failures above
    # come from the planted bugs and not from the harness.
    passed, failed = _run_kit(pytester, queue_class="MemoryTaskQueue", theme=theme, select=select)
    assert not failed
    assert passed
