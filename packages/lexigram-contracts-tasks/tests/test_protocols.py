from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lexigram.contracts.tasks import (
    Job,
    JobProtocol,
    JobTemplate,
    JobTemplateProtocol,
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
