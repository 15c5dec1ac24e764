"""`QueueOpener`: the queue a name leads to, for the commands that open queues by name.

A scheduler fire, a dead letter put back, a schedule run now: each names its queue, and
the command opens the queue that name leads to as ``.delay()`` would route it
(`spec_serving`): another configured backend's queue when the name is that backend's
name or queue, else a queue of the command's own backend. A worker's handlers and a
scheduler's fires reach every other configured backend this way, and their start-up check
covers those backends through `configured_backends`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from lexigram.contracts.tasks import MUST_EXIST_OPTION
from lexigram.tasks._backends import ProbeWords, QueueCheck, release_backends
from lexigram.tasks.cli._context import close_quietly, open_queue
from lexigram.tasks.cli._named import backend_field, spec_serving

if TYPE_CHECKING:
    from lexigram.contracts.tasks import Job, TaskBackendSpec, TaskQueueProtocol
    from lexigram.tasks.config import TaskConfig


class QueueOpener:
    """Opens (once each) the queues a command's jobs name; `close` closes them.

    Args:
        config: The command's configuration (its ``backends`` list, if any).
        spec: The command's own backend.
        own: The command's own queue, returned for its own name.
        sending: Whether the queues are for sending jobs (then the spec's `must_exist`,
            which keeps a read-only command from creating storage, is dropped).
    """

    def __init__(
        self,
        config: TaskConfig | None,
        spec: TaskBackendSpec,
        own: TaskQueueProtocol | None = None,
        *,
        sending: bool = True,
    ) -> None:
        self.config = config
        # Sending a job may create what the send needs, as `enqueue` does (a RabbitMQ
        # queue no worker has declared yet): `must_exist` is for the command's reads.
        self.spec = _for_sending(spec) if sending else spec
        self.own = own if self.spec is spec else None
        self.opened: dict[tuple[str, str], TaskQueueProtocol] = {}
        self._borrowed: set[str] = set()

    def __repr__(self) -> str:
        return f"QueueOpener({self.spec.name!r}, opened={len(self.opened)})"

    def __call__(self, name: str | None = None) -> TaskQueueProtocol:
        """The queue `name` leads to (None: the command's own queue)."""
        return self._open(spec_serving(self.config, self.spec, name or self.spec.queue_name))

    def _open(self, target: TaskBackendSpec) -> TaskQueueProtocol:
        """The queue of `target` (a spec `spec_serving` gave), opened once."""
        own = self.own
        if own is not None and (target.name, target.queue_name) == (self.spec.name, own.queue_name):
            return own
        key = (target.name, target.queue_name)
        queue = self.opened.get(key)
        if queue is None:
            queue = self.opened[key] = open_queue(target)
            if target.type != self.spec.type:
                self._borrowed.add(target.type)
        return queue

    def route(self, job: Job) -> TaskQueueProtocol:
        """The queue ``job.queue_name`` leads to; the job is given that queue's own name.

        So a job naming a backend (``@scheduled(..., queue="reports")``) is recorded on,
        retried onto and dead-lettered from the queue it is on, as `route_job` does.
        """
        queue = self(job.queue_name)
        if job.queue_name:
            job.queue_name = queue.queue_name
        return queue

    def configured_backends(self) -> dict[str, QueueCheck]:
        """The queue of every other configured backend, by its name, opened here.

        Each comes with the words of its start-up check (`probe_all`): a failure names the
        entry's URL (``tasks.backends[1].url``), which is what to fix.
        """
        if self.config is None:
            return {}
        checks: dict[str, QueueCheck] = {}
        for entry in self.config.backends:
            if entry.name == self.spec.name:
                continue
            target = spec_serving(self.config, self.spec, entry.name)
            words = ProbeWords(timeout="--connect-timeout", address=f"{backend_field(target)}.url")
            checks[entry.name] = QueueCheck(self._open(target), target, words)
        return checks

    async def close(self) -> None:
        """Close the queues opened here, and the pools of other backends they used."""
        await close_quietly(*self.opened.values())
        self.opened.clear()
        if self._borrowed:
            await release_backends(sorted(self._borrowed))
            self._borrowed.clear()


def _for_sending(spec: TaskBackendSpec) -> TaskBackendSpec:
    """`spec` without `MUST_EXIST_OPTION` (itself when it does not set it)."""
    if not spec.options.get(MUST_EXIST_OPTION):
        return spec
    options = {key: value for key, value in spec.options.items() if key != MUST_EXIST_OPTION}
    return replace(spec, options=options)
