from __future__ import annotations

import random

from lexigram.contracts.tasks import (
    FailureRecord,
    Job,
    JobResult,
    JobStatus,
    JobTemplate,
    ProgressInfo,
    ProgressSnapshot,
    ProgressStatus,
    StepResult,
    TaskBackendSpec,
    WorkflowResult,
    WorkflowStatus,
)


def test_job_generates_id_and_converts_args_to_tuple() -> None:
    job = Job(name="x", args=[1, 2])  # type: ignore[arg-type]
    assert job.id
    assert job.args == (1, 2)


def test_job_lifecycle_methods_update_status_and_counts() -> None:
    job = Job(name="x", max_retries=1)
    assert job.is_pending
    job.mark_running()
    assert job.is_running
    job.mark_retrying()
    assert job.retry_count == 1
    assert not job.can_retry
    job.mark_failed("boom")
    assert job.is_failed
    assert job.last_error == "boom"
    assert job.duration_ms is not None
    job.mark_completed(JobResult.ok(1))
    assert job.is_completed
    job.mark_cancelled()
    assert job.status is JobStatus.CANCELLED


def test_job_orders_by_priority_then_age() -> None:
    old_low = Job(name="a", priority=0, created_at=1.0)
    new_high = Job(name="b", priority=10, created_at=2.0)
    old_high = Job(name="c", priority=10, created_at=1.5)
    assert sorted([old_low, new_high, old_high]) == [old_high, new_high, old_low]


def test_job_result_factories_and_round_trip() -> None:
    ok = JobResult.ok({"a": 1}, duration=0.5)
    fail = JobResult.fail("boom", retry_count=2)
    assert ok.success
    assert ok.completed_at is not None
    assert not fail.success
    assert fail.failed_at is not None
    assert JobResult.from_dict(ok.to_dict()) == ok
    assert JobResult.from_dict(fail.to_dict()) == fail


def test_template_creates_jobs_and_round_trips() -> None:
    template = JobTemplate(name="cleanup", args=(1,), kwargs={"k": 2}, priority=5)
    job = template.create_job()
    assert job.name == "cleanup"
    assert job.id
    assert template.create_job("fixed").id == "fixed"
    assert JobTemplate.from_job(job) == template
    assert JobTemplate.from_dict(template.to_dict()) == template


def test_progress_snapshot_percent() -> None:
    snap = ProgressSnapshot(task_id="t", current=5, total=10, status=ProgressStatus.RUNNING)
    assert snap.percent == 50.0
    unknown = ProgressSnapshot(task_id="t", current=1, total=0, status=ProgressStatus.RUNNING)
    assert unknown.percent == 0
    over = ProgressSnapshot(task_id="t", current=20, total=10, status=ProgressStatus.RUNNING)
    assert over.percent == 100.0
    assert ProgressSnapshot.from_dict(snap.to_dict()) == snap


def test_progress_info_round_trip_and_completion() -> None:
    info = ProgressInfo(job_id="j", current=10, total=10, started_at=1.0, updated_at=3.0)
    assert info.is_complete
    assert info.elapsed_seconds == 2.0
    assert ProgressInfo.from_dict(info.to_dict()) == info
    assert ProgressInfo(job_id="j").elapsed_seconds == 0.0


def test_progress_info_is_active_until_complete_or_marked_finished() -> None:
    assert ProgressInfo(job_id="j").is_active
    assert ProgressInfo(job_id="j", current=1, total=10, metadata={"status": "running"}).is_active
    assert not ProgressInfo(job_id="j", current=10, total=10).is_active
    # A failed job (or a cancelled one, which the worker marks failed) part-way through.
    failed = ProgressInfo(job_id="j", current=1, total=10, metadata={"status": "failed"})
    cancelled = ProgressInfo(job_id="j", message="cancelled", metadata={"status": "failed"})
    done = ProgressInfo(job_id="j", metadata={"status": ProgressStatus.COMPLETE})
    assert not failed.is_active
    assert not cancelled.is_active
    assert not done.is_active
    assert not ProgressInfo.from_dict(failed.to_dict()).is_active
    # An odd status read from a store is compared, not hashed: it cannot raise.
    assert ProgressInfo(job_id="j", metadata={"status": ["failed"]}).is_active


def test_failure_record_round_trip_keeps_whole_job() -> None:
    job = Job(name="x", correlation_id="c", args=(1,))
    record = FailureRecord(job=job, error="boom", traceback="tb", attempt_count=3)
    data = record.to_dict()
    assert data["job_id"] == job.id
    assert data["job_name"] == "x"
    assert FailureRecord.from_dict(data) == record


def test_failure_record_from_flat_dict_without_job() -> None:
    data = {"job_id": "1", "job_name": "x", "job_args": [1], "error": "e"}
    record = FailureRecord.from_dict(data)
    assert record.job.id == "1"
    assert record.job.args == (1,)


def test_workflow_result_round_trip() -> None:
    result = WorkflowResult(
        workflow_id="w",
        status=WorkflowStatus.PARTIALLY_COMPLETED,
        steps=[StepResult(step_name="a", success=True, data=1)],
        final_result=[1],
    )
    assert WorkflowResult.from_dict(result.to_dict()) == result


def test_backend_spec_repr_masks_password() -> None:
    spec = TaskBackendSpec(type="redis", url="redis://u:topsecret@h/0")
    assert "topsecret" not in repr(spec)
    assert spec.masked_url == "redis://u:***@h/0"


def test_a_record_without_some_fields_decodes_as_one_holding_their_defaults() -> None:
    full = Job(
        name="everything",
        args=(1, "two"),
        kwargs={"k": [3]},
        priority=7,
        max_retries=2,
        timeout=1.5,
        depends_on=["a"],
        idempotency_key="key",
        correlation_id="corr",
        causation_id="cause",
        status=JobStatus.RETRYING,
        started_at=10.0,
        completed_at=11.0,
        retry_count=1,
        last_error="boom",
        result=JobResult(success=False, error="boom", duration=0.5),
        scheduled_at=12.0,
        cron_expression="* * * * *",
        queue_name="q",
        delivery_count=3,
        metadata={"m": 1},
    ).to_dict()
    # An absent priority reads as 0, as every version wrote it (the dataclass's default is
    # NORMAL, which a record always carries).
    defaults = Job(
        id=full["id"], name="everything", created_at=full["created_at"], priority=0
    ).to_dict()
    optional = [key for key in full if key not in ("id", "name", "created_at")]
    rng = random.Random(7)
    for _ in range(200):
        kept = {key for key in optional if rng.random() < 0.5}
        record = {key: value for key, value in full.items() if key in kept or key not in optional}
        expected = {key: (full if key in kept else defaults)[key] for key in full}
        assert Job.from_dict(record) == Job.from_dict(expected)
        assert Job.from_dict(record).to_dict() == expected
