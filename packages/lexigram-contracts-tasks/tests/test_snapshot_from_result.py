"""`snapshot_from_result`: the terminal progress of a job that never reported any."""

from __future__ import annotations

from lexigram.contracts.tasks import JobResult, ProgressStatus, snapshot_from_result


def test_a_success_reads_as_complete_at_one_hundred_percent() -> None:
    snapshot = snapshot_from_result("job-1", JobResult.ok(42, duration=0.1))
    assert (snapshot.task_id, snapshot.status, snapshot.percent, snapshot.error) == (
        "job-1",
        ProgressStatus.COMPLETE,
        100.0,
        "",
    )


def test_a_failure_reads_as_failed_with_its_error() -> None:
    snapshot = snapshot_from_result("job-2", JobResult.fail("disk full"))
    assert (snapshot.status, snapshot.error, snapshot.percent) == (
        ProgressStatus.FAILED,
        "disk full",
        0.0,
    )
