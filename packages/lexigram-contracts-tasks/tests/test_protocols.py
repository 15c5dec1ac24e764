from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from lexigram.contracts.tasks import (
    CancellableQueueProtocol,
    CancelOutcome,
    Job,
    JobProtocol,
    JobResult,
    JobStatus,
    JobTemplate,
    JobTemplateProtocol,
    LeaseRenewerProtocol,
    LeaseRenewingQueueProtocol,
    Ok,
    Result,
    TaskBackendProtocol,
    TaskBackendSpec,
    TaskQueueError,
    TaskQueueProtocol,
)


class _ListQueue:
    """The smallest third-party queue that satisfies TaskQueueProtocol structurally."""

    def __init__(self, spec: TaskBackendSpec) -> None:
        self._name = spec.queue_name
        self._jobs: list[Job] = []

    @property
    def queue_name(self) -> str:
        return self._name

    async def enqueue(self, task: Any) -> Result[str, TaskQueueError]:
        self._jobs.append(task)
        return Ok(task.id)

    async def enqueue_many(self, tasks: Sequence[Any]) -> list[Result[str, TaskQueueError]]:
        return [await self.enqueue(task) for task in tasks]

    async def dequeue(self) -> Any | None:
        return self._jobs.pop(0) if self._jobs else None

    async def dequeue_batch(self, max_jobs: int, *, timeout: float = 0.0) -> list[Any]:
        batch, self._jobs = self._jobs[:max_jobs], self._jobs[max_jobs:]
        return batch

    @property
    def lease_seconds(self) -> float:
        return 30.0

    async def extend_lease(
        self, task_id: str, seconds: float | None = None, *, lease_token: str | None = None
    ) -> bool:
        return True

    async def ack(self, task_id: str, *, lease_token: str | None = None) -> bool:
        return True

    async def nack(
        self, task_id: str, requeue: bool = True, *, lease_token: str | None = None
    ) -> bool:
        return True

    async def retry_later(self, task: Any, *, delay: float = 0.0) -> bool:
        self._jobs.append(task)
        return True

    async def get_task_count(self) -> int:
        return len(self._jobs)

    async def get_job(self, job_id: str) -> Any | None:
        return next((job for job in self._jobs if job.id == job_id), None)

    async def delete_job(self, job_id: str) -> bool:
        return False

    async def count(self, queue_name: str, status: Any | None = None) -> int:
        return len(self._jobs)

    async def clear(self) -> None:
        self._jobs.clear()

    async def close(self) -> None:
        return None


class _Backend:
    def create_queue(self, spec: TaskBackendSpec, /) -> TaskQueueProtocol:
        return _ListQueue(spec)


def test_third_party_queue_satisfies_protocol() -> None:
    queue = _Backend().create_queue(TaskBackendSpec(queue_name="q"))
    assert isinstance(queue, TaskQueueProtocol)
    assert isinstance(_Backend(), TaskBackendProtocol)


def test_object_missing_methods_is_not_a_queue() -> None:
    assert not isinstance(object(), TaskQueueProtocol)


def test_concrete_job_and_template_satisfy_structural_protocols() -> None:
    assert isinstance(Job(name="x"), JobProtocol)
    assert isinstance(JobTemplate(name="x"), JobTemplateProtocol)


class _CancellableListQueue(_ListQueue):
    """A third-party queue with the optional cancellation capability, from the contracts alone."""

    def __init__(self, spec: TaskBackendSpec) -> None:
        super().__init__(spec)
        self.announced: list[str] = []

    async def cancel(self, job_id: str) -> CancelOutcome:
        for job in self._jobs:
            if job.id == job_id:
                self._jobs.remove(job)
                return CancelOutcome.REMOVED
        return CancelOutcome.NOT_FOUND

    async def cancellations(self) -> AsyncIterator[str]:
        for job_id in self.announced:
            yield job_id


def test_cancellation_is_an_optional_capability_a_third_party_queue_can_offer() -> None:
    spec = TaskBackendSpec(queue_name="q")
    plain: TaskQueueProtocol = _ListQueue(spec)
    cancellable: CancellableQueueProtocol = _CancellableListQueue(spec)
    assert not isinstance(plain, CancellableQueueProtocol)
    assert isinstance(cancellable, CancellableQueueProtocol)
    assert isinstance(cancellable, TaskQueueProtocol)  # it is still a queue


def test_cancel_outcome_says_whether_the_job_was_cancelled() -> None:
    assert {o for o in CancelOutcome if o.cancelled} == {
        CancelOutcome.REMOVED,
        CancelOutcome.STOPPING,
    }


def test_a_cancelled_result_round_trips_and_reads_as_cancelled() -> None:
    result = JobResult(success=False, error="Job j1 was cancelled.", cancelled=True)
    again = JobResult.from_dict(result.to_dict())
    assert again.cancelled
    assert again.status is JobStatus.CANCELLED
    # Results stored before the field existed read as not cancelled.
    old = {k: v for k, v in JobResult.fail("boom").to_dict().items() if k != "cancelled"}
    assert JobResult.from_dict(old).status is JobStatus.FAILED
    assert JobResult.ok(1).status is JobStatus.COMPLETED


class _Renewer:
    """A renewer from the contracts alone: it remembers which leases it kept."""

    def __init__(self, held: dict[str, str]) -> None:
        self.held = held

    async def renew(self, leases: Sequence[tuple[str, str]], seconds: float) -> list[str]:
        return [job_id for job_id, token in leases if self.held.get(job_id) != token]

    async def close(self) -> None:
        self.held = {}


class _RenewingListQueue(_ListQueue):
    """A third-party queue with the optional lease renewer, from the contracts alone."""

    def open_lease_renewer(self) -> LeaseRenewerProtocol | None:
        return _Renewer({})


async def test_a_lease_renewer_is_an_optional_capability_a_third_party_queue_can_offer() -> None:
    spec = TaskBackendSpec(queue_name="q")
    plain: TaskQueueProtocol = _ListQueue(spec)
    renewing: LeaseRenewingQueueProtocol = _RenewingListQueue(spec)
    assert not isinstance(plain, LeaseRenewingQueueProtocol)
    assert isinstance(renewing, LeaseRenewingQueueProtocol)
    assert isinstance(renewing, TaskQueueProtocol)  # it is still a queue
    renewer = renewing.open_lease_renewer()
    assert isinstance(renewer, LeaseRenewerProtocol)
    assert await renewer.renew([("a", "t1")], 30.0) == ["a"]
    await renewer.close()
