"""The progress snapshot a job ends with when it never reported progress."""

from __future__ import annotations

from lexigram.contracts.tasks._enums import ProgressStatus
from lexigram.contracts.tasks._job_result import JobResult
from lexigram.contracts.tasks._models import ProgressSnapshot


def snapshot_from_result(task_id: str, result: JobResult) -> ProgressSnapshot:
    """The terminal progress snapshot of a job that never reported progress.

    A worker writes no progress for a job whose handler took no `ProgressTracker`; its
    end is its stored result. Progress readers (every `ProgressTrackerProtocol`) turn
    that result into the snapshot the job would have ended with: COMPLETE at 100 % for
    a success, FAILED with the error otherwise.

    Args:
        task_id: The job's id.
        result: Its stored result.
    """
    if result.success:
        return ProgressSnapshot(task_id=task_id, current=1, total=1, status=ProgressStatus.COMPLETE)
    return ProgressSnapshot(
        task_id=task_id,
        current=0,
        total=0,
        status=ProgressStatus.FAILED,
        error=result.error or "failed",
    )
