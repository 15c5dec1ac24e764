"""Where `TaskProvider` sends jobs: routed to the queue they name, or submitted at most once.

`enqueue_job` and the scheduler's enqueue pick a job's queue by its ``queue_name`` as
``.delay()`` does (a configured backend's queue, else the queue of that name on the
primary backend, `OtherQueues`; the primary queue for none); the idempotency managers
submit a job at most once per key, over the primary backend's stores. A mixin of `TaskProvider`, as
`HandlerRegistrationMixin` is: what producers ask of the provider, kept out of
``_provider.py``, which builds the backends and runs the lifecycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lexigram.contracts.tasks import (
    Err,
    IdempotencyStoreProtocol,
    Job,
    Ok,
    Result,
    TaskQueueError,
    TaskQueueProtocol,
)
from lexigram.tasks import decorators
from lexigram.tasks._backends import TaskBackendRegistry
from lexigram.tasks._producer import route_job, routing_table
from lexigram.tasks.di._other_queues import OtherQueues
from lexigram.tasks.di._stack import BackendStack, build_store

if TYPE_CHECKING:
    from lexigram.tasks.idempotency import IdempotencyManager, IdempotentTaskManager


class ProviderJobsMixin:
    """Routes jobs to the provider's queues and builds its idempotency managers."""

    stacks: dict[str, BackendStack]
    backend_registry: TaskBackendRegistry
    _other_queues: OtherQueues | None = None

    if TYPE_CHECKING:
        # `TaskProvider`'s own, which build the stacks on first use.
        @property
        def queues(self) -> dict[str, TaskQueueProtocol]:
            """Every queue by backend name."""

        @property
        def _primary(self) -> BackendStack: ...

    # ------------------------------------------------------------------ jobs

    def _queues_by_name(self) -> dict[str, TaskQueueProtocol]:
        """Every queue under its backend name and, where no other claims it, its queue name."""
        return routing_table(self.queues)

    def _open_other_queue(self, name: str) -> TaskQueueProtocol:
        """The queue `name` on the primary backend, for a name no configured backend has."""
        others = self._other_queues
        if others is None or others.stack is not self._primary:
            others = self._other_queues = OtherQueues(self._primary)
        return others(name)

    async def _close_other_queues(self) -> None:
        others, self._other_queues = self._other_queues, None
        if others is not None:
            await others.close()

    def _route(self, job: Job) -> TaskQueueProtocol:
        """Pick the queue ``job.queue_name`` names, as `.delay()` does (None: the primary)."""
        return route_job(job, self._queues_by_name(), self._primary.queue, self._open_other_queue)

    async def enqueue_job(self, job: Job) -> str:
        """Enqueue a job for processing.

        A job whose ``queue_name`` names a configured backend (or exactly one backend's
        queue) goes there, any other name to the queue of that name on the primary
        backend (which ``lexigram-tasks worker APP --queue NAME`` consumes), a job with
        none to the primary queue.

        Args:
            job: The job.

        Returns:
            The job id (the first job's id for a duplicate idempotency key).

        Raises:
            TaskQueueError: The queue refused the job, or its queue name is no configured
                backend's and the primary backend keeps its queues in this process.
        """
        return (await decorators.enqueue_job(self._route(job), job)).id

    async def _enqueue_scheduled(self, job: Job) -> Result[str, TaskQueueError]:
        try:
            queue = self._route(job)
            return Ok((await decorators.enqueue_job(queue, job)).id)
        except TaskQueueError as exc:
            return Err(exc)

    # ------------------------------------------------------------------ idempotency

    def build_idempotency_manager(
        self, storage: IdempotencyStoreProtocol | None = None
    ) -> IdempotencyManager:
        """Build an idempotency manager over `storage`.

        Args:
            storage: Where keys are kept; None uses the primary backend's idempotency
                store (Redis and Postgres offer one), else an in-memory store.

        Returns:
            The manager.
        """
        # Imported on use: idempotency is optional and most applications never load it.
        from lexigram.tasks.idempotency import IdempotencyManager  # noqa: PLC0415

        if storage is None:
            main = self._primary
            storage = build_store(
                main.spec, "create_idempotency_store", main.path, registry=self.backend_registry
            )
        return IdempotencyManager(storage)

    def build_idempotent_task_manager(
        self,
        queue_client: TaskQueueProtocol | None = None,
        idempotency_manager: IdempotencyManager | None = None,
    ) -> IdempotentTaskManager:
        """Build a manager that submits a job at most once per idempotency key.

        Args:
            queue_client: The queue to submit to; None uses the primary queue.
            idempotency_manager: The key manager; None builds one with
                `build_idempotency_manager`.

        Returns:
            The manager; its results go to the primary backend's result store.
        """
        from lexigram.tasks.idempotency import IdempotentTaskManager  # noqa: PLC0415

        main = self._primary
        return IdempotentTaskManager(
            queue_client if queue_client is not None else main.queue,
            idempotency_manager or self.build_idempotency_manager(),
            result_store=main.result_store,
        )
