"""`OtherQueues`: a task's queue that no configured backend serves, on the runtime's backend.

``@task(queue="reports")`` names a queue. When a configured backend is called so, or is
the only one whose ``queue_name`` is so, its jobs go there (`routing_table`). Any other
name is a queue of that name on the runtime's own backend (a `TaskProvider`'s primary
one, a worker command's own), the queue ``lexigram-tasks worker APP --queue reports``
consumes: what every door does with it, ``.delay()``, `TaskProvider.enqueue_job`, a
scheduler's fires, and the commands that send jobs (`spec_serving`). A backend that keeps
its jobs in one process (``memory``) has no such queue another process could consume,
so there the name is refused with what to configure.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from lexigram.contracts.tasks import TaskQueueError
from lexigram.tasks._closing import close_each
from lexigram.tasks._presence import describe_backend
from lexigram.tasks.di._stack import build_queue
from lexigram.tasks.handles import register_job_stores
from lexigram.tasks.workflows import register_workflow_store

if TYPE_CHECKING:
    from lexigram.contracts.tasks import TaskQueueProtocol
    from lexigram.tasks.di._stack import BackendStack

logger = logging.getLogger(__name__)


class OtherQueues:
    """Opens, once each, the queues of `stack`'s backend that a task names; `close` closes them.

    A queue opened here shares the stack's result, progress and workflow stores, so the
    handle ``.delay()`` returns reads the results its worker stores.

    Args:
        stack: The runtime's own backend (a provider's primary one).
    """

    def __init__(self, stack: BackendStack) -> None:
        self.stack = stack
        self.opened: dict[str, TaskQueueProtocol] = {}

    def __repr__(self) -> str:
        return f"OtherQueues({self.stack.name!r}, opened={sorted(self.opened)!r})"

    def __call__(self, name: str) -> TaskQueueProtocol:
        """The queue named `name` on the stack's backend.

        Raises:
            TaskQueueError: The backend keeps its queues in this process, where no
                worker consumes `name`.
            TaskConfigurationError: The backend refuses the queue name.
        """
        queue = self.opened.get(name)
        if queue is not None:
            return queue
        stack = self.stack
        if stack.registry.is_process_local(stack.spec.type):
            msg = (
                f"No task queue named {name!r} is configured, and the {stack.spec.type} "
                f"backend keeps its queues in this process, where no worker consumes "
                f"{name!r}. Add a backend named {name!r} (or with queue_name {name!r}) to "
                "the tasks config, or declare the task without queue=."
            )
            raise TaskQueueError(msg, queue_name=name)
        queue = build_queue(
            replace(stack.spec, queue_name=name), field=stack.path, registry=stack.registry
        )
        register_job_stores(
            queue, result_store=stack.result_store, progress_store=stack.progress_store
        )
        if stack.workflow_store is not None:
            register_workflow_store(queue, stack.workflow_store)
        self.opened[name] = queue
        logger.info(
            "Jobs for queue %r go to the queue of that name on %s, which no worker of this "
            "process consumes; `lexigram-tasks worker APP --queue %s` runs them.",
            name,
            describe_backend(stack.spec),
            name,
        )
        return queue

    async def close(self) -> None:
        """Close every queue opened here; a failing close is logged, not raised."""
        opened, self.opened = list(self.opened.values()), {}
        await close_each(*opened, owner=f"task backend {self.stack.name!r}")
