"""`MemoryBackend`: the object the ``memory`` entry point names."""

from __future__ import annotations

from typing import ClassVar

from lexigram.contracts.tasks import TaskBackendSpec, parse_options
from lexigram.tasks.backends.memory._options import BACKEND_TYPE, MemoryOptions
from lexigram.tasks.backends.memory._queue import MemoryTaskQueue


class MemoryBackend:
    """Builds `MemoryTaskQueue` objects; offers no stores (core's in-memory ones serve).

    Attributes:
        url_schemes: None: a memory queue is chosen by type, never by a URL.
        url_field: None: there is no URL to read.
        options_type: `MemoryOptions`, what `TaskBackendSpec.options` may carry.
        process_local: True: jobs and records live in this process; nothing another
            process (or command) can see.
    """

    url_schemes: ClassVar[tuple[str, ...]] = ()
    url_field: ClassVar[str | None] = None
    options_type: ClassVar[type[MemoryOptions]] = MemoryOptions
    process_local: ClassVar[bool] = True

    def __repr__(self) -> str:
        return "MemoryBackend()"

    def create_queue(self, spec: TaskBackendSpec, /) -> MemoryTaskQueue:
        """Build a `MemoryTaskQueue` for `spec`.

        Args:
            spec: The backend spec; `queue_name` and the `MemoryOptions` in `options`
                are read, `url` is ignored.

        Returns:
            A new, empty queue.

        Raises:
            TaskConfigurationError: An option is unknown or has a wrong value.
        """
        options = parse_options(BACKEND_TYPE, spec.name, spec.options, MemoryOptions)
        return MemoryTaskQueue(
            queue_name=spec.queue_name,
            visibility_timeout=options.visibility_timeout,
            max_size=options.max_size,
            idempotency_ttl=options.idempotency_ttl,
        )


backend = MemoryBackend()
"""The ``memory`` entry point's target."""


def create_queue(spec: TaskBackendSpec, /) -> MemoryTaskQueue:
    """Build a `MemoryTaskQueue` for `spec` (the same as ``backend.create_queue``)."""
    return backend.create_queue(spec)


__all__ = ["MemoryBackend", "backend", "create_queue"]
