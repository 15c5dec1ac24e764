"""`IdempotencyManager` and `IdempotentTaskManager`: one job per idempotency key.

The manager records, per key, the id of the first job submitted under it and, once
known, that job's result, for `ttl` seconds. `IdempotentTaskManager.submit` consults it
before enqueueing: the first submission of a key enqueues (SUBMITTED), later ones get
the first job's id back (DUPLICATE) or, once the job succeeded, its result
(COMPLETED). Queues also honour `Job.idempotency_key` natively; going through the
manager adds the reusable result and a store that can be shared across queues.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from lexigram.contracts.tasks import (
    IdempotencyResult,
    IdempotencyResultStatus,
    IdempotencyStoreProtocol,
    Job,
    ResultStoreProtocol,
    TaskQueueProtocol,
    TaskValidationError,
)
from lexigram.tasks.decorators import enqueue_job
from lexigram.tasks.idempotency._store import InMemoryIdempotencyStore

logger = logging.getLogger(__name__)

DEFAULT_TTL = 86400.0
"""Seconds a key is remembered by default (24 h, like the queues' `idempotency_ttl`)."""

_SUBMITTED = IdempotencyResultStatus.SUBMITTED.value
_COMPLETED = IdempotencyResultStatus.COMPLETED.value


def _result_of(
    key: str, record: dict[str, Any], status: IdempotencyResultStatus
) -> IdempotencyResult:
    created = record.get("created_at")
    created_at = datetime.fromisoformat(created) if isinstance(created, str) else datetime.now(UTC)
    return IdempotencyResult(
        task_id=str(record["task_id"]),
        idempotency_key=key,
        status=status,
        created_at=created_at,
        result=record.get("result") if status is IdempotencyResultStatus.COMPLETED else None,
    )


class IdempotencyManager:
    """Remembers, per idempotency key, the first job id and its result.

    Records are JSON-ready dicts in an `IdempotencyStoreProtocol` (in memory by
    default; a backend's `create_idempotency_store` shares them across processes), so a
    stored result must be JSON-serializable.

    Example:
        manager = IdempotencyManager(ttl=3600)
        outcome = await manager.check_and_set("order-42", job.id)
        if outcome.status is IdempotencyResultStatus.SUBMITTED:
            ...  # first time: do the work, then
            await manager.mark_completed("order-42", {"charged": True})

    Args:
        store: Where records live (an `InMemoryIdempotencyStore` if None).
        ttl: Seconds a key is remembered after its last write.

    Raises:
        ValueError: A negative TTL.
    """

    def __init__(
        self, store: IdempotencyStoreProtocol | None = None, *, ttl: float = DEFAULT_TTL
    ) -> None:
        if ttl < 0:
            msg = f"IdempotencyManager ttl={ttl!r} is negative. Pass the seconds to keep a key."
            raise ValueError(msg)
        self.store: IdempotencyStoreProtocol = (
            store if store is not None else InMemoryIdempotencyStore()
        )
        self.ttl = float(ttl)

    def __repr__(self) -> str:
        return f"IdempotencyManager(store={type(self.store).__name__}, ttl={self.ttl!r})"

    async def check_and_set(self, key: str, task_id: str) -> IdempotencyResult:
        """Claim `key` for `task_id` unless it is already held.

        Args:
            key: The idempotency key.
            task_id: Id of the job that would run under it.

        Returns:
            SUBMITTED (the key is now `task_id`'s), DUPLICATE with the first job's id,
            or COMPLETED with the first job's id and stored result.
        """
        record = {
            "task_id": task_id,
            "status": _SUBMITTED,
            "created_at": datetime.now(UTC).isoformat(),
            "result": None,
        }
        existing = await self.store.set_if_absent(key, record, self.ttl)
        if existing is None:
            return _result_of(key, record, IdempotencyResultStatus.SUBMITTED)
        if existing.get("status") == _COMPLETED:
            return _result_of(key, existing, IdempotencyResultStatus.COMPLETED)
        return _result_of(key, existing, IdempotencyResultStatus.DUPLICATE)

    async def get(self, key: str) -> IdempotencyResult | None:
        """Return what is known about `key` (SUBMITTED or COMPLETED), or None."""
        record = await self.store.get(key)
        if record is None:
            return None
        status = (
            IdempotencyResultStatus.COMPLETED
            if record.get("status") == _COMPLETED
            else IdempotencyResultStatus.SUBMITTED
        )
        return _result_of(key, record, status)

    async def mark_completed(self, key: str, result: Any = None) -> None:
        """Store the result of the job that holds `key`, so later submissions reuse it.

        The key's TTL starts again from now.

        Args:
            key: The idempotency key.
            result: JSON-serializable result.

        Raises:
            KeyError: No job holds `key` (never submitted, or expired).
        """
        record = await self.store.get(key)
        if record is None:
            msg = (
                f"No job holds idempotency key {key!r} (never submitted, or expired after "
                f"{self.ttl:g} s); submit the job before marking it completed."
            )
            raise KeyError(msg)
        record["status"] = _COMPLETED
        record["result"] = result
        await self.store.update(key, record, self.ttl)

    async def release(self, key: str) -> bool:
        """Forget `key` so the next submission runs again; True if it was held."""
        return await self.store.delete(key)


class IdempotentTaskManager:
    """Enqueues a job once per idempotency key.

    Example:
        manager = IdempotentTaskManager(queue, IdempotencyManager())
        first = await manager.submit(Job(name="charge", args=(42,), idempotency_key="order-42"))
        again = await manager.submit(Job(name="charge", args=(42,), idempotency_key="order-42"))
        assert again.status is IdempotencyResultStatus.DUPLICATE
        assert again.task_id == first.task_id

    Args:
        queue_client: The queue jobs go to.
        idempotency_manager: Key bookkeeping (a new in-memory one if None).
        result_store: Where workers store results; when given, a duplicate submission
            of a job that already succeeded returns COMPLETED with its result.
    """

    def __init__(
        self,
        queue_client: TaskQueueProtocol,
        idempotency_manager: IdempotencyManager | None = None,
        *,
        result_store: ResultStoreProtocol | None = None,
    ) -> None:
        self.queue = queue_client
        self.idempotency_manager = (
            idempotency_manager if idempotency_manager is not None else IdempotencyManager()
        )
        self.result_store = result_store

    def __repr__(self) -> str:
        return f"IdempotentTaskManager(queue={self.queue.queue_name!r})"

    async def submit(self, job: Job) -> IdempotencyResult:
        """Enqueue `job` unless a job with its idempotency key was already submitted.

        Args:
            job: The job; its `idempotency_key` must be set.

        Returns:
            SUBMITTED (enqueued now), DUPLICATE (the first job's id; nothing enqueued),
            or COMPLETED (the first job's id and result; nothing enqueued).

        Raises:
            TaskValidationError: The job has no `idempotency_key`.
            TaskQueueError: The queue refused the job (the key is released again, so a
                later submission may retry).
        """
        key = job.idempotency_key
        if not key:
            msg = (
                f"Job {job.name!r} ({job.id}) has no idempotency_key, so "
                "IdempotentTaskManager cannot deduplicate it. Set Job.idempotency_key, or "
                "enqueue the job on the queue directly."
            )
            raise TaskValidationError(msg)
        claimed = await self.idempotency_manager.check_and_set(key, job.id)
        if claimed.status is IdempotencyResultStatus.SUBMITTED:
            return await self._enqueue(job, key, claimed)
        if claimed.status is IdempotencyResultStatus.DUPLICATE and self.result_store is not None:
            stored = await self.result_store.get(claimed.task_id)
            if stored is not None and stored.success:
                await self.idempotency_manager.mark_completed(key, stored.data)
                return IdempotencyResult(
                    task_id=claimed.task_id,
                    idempotency_key=key,
                    status=IdempotencyResultStatus.COMPLETED,
                    created_at=claimed.created_at,
                    result=stored.data,
                )
        return claimed

    async def complete(self, key: str, result: Any = None) -> None:
        """Record the result of the job holding `key` (see `IdempotencyManager.mark_completed`)."""
        await self.idempotency_manager.mark_completed(key, result)

    async def _enqueue(self, job: Job, key: str, claimed: IdempotencyResult) -> IdempotencyResult:
        own_id = job.id
        try:
            # The one way the core enqueues: observers see the job as "queued".
            queued_id = (await enqueue_job(self.queue, job)).id
        except BaseException:
            await self.idempotency_manager.release(key)
            raise
        if queued_id == own_id:
            return claimed
        # The queue already held the key (another producer used the queue directly):
        # its first job is the one that runs, so remember that id instead.
        logger.info(
            "Queue %r already held idempotency key %r for job %s; job %s was not added.",
            self.queue.queue_name,
            key,
            queued_id,
            job.id,
        )
        await self.idempotency_manager.store.update(
            key,
            {
                "task_id": queued_id,
                "status": _SUBMITTED,
                "created_at": claimed.created_at.isoformat(),
                "result": None,
            },
            self.idempotency_manager.ttl,
        )
        return IdempotencyResult(
            task_id=queued_id,
            idempotency_key=key,
            status=IdempotencyResultStatus.DUPLICATE,
            created_at=claimed.created_at,
        )
