"""The entry-point object: builds `RabbitMQTaskQueue`s, and borrows stores from another backend.

Without the ``stores`` option every store factory here returns None and the core uses
its in-memory store; with it, each factory hands the call to that backend (see
`lexigram.tasks.backends.rabbitmq._stores`).
"""

from __future__ import annotations

from typing import Any

from lexigram.contracts.tasks import TaskBackendSpec
from lexigram.tasks.backends.rabbitmq._options import DEFAULT_AMQP_URL, RabbitMQOptions
from lexigram.tasks.backends.rabbitmq._queue import RabbitMQTaskQueue
from lexigram.tasks.backends.rabbitmq._stores import borrow, close_lenders


class RabbitMQBackend:
    """What the ``rabbitmq`` entry point names: a factory of RabbitMQ task queues.

    `spec.options` takes the fields of `RabbitMQOptions` (``durable``, ``queue_type``,
    ``max_priority``, ``visibility_timeout``, ``delay_mode``, ``stores``,
    ``state_store``, ...), read with the contracts' `parse_options`.

    Attributes:
        url_schemes: The URL schemes this backend serves.
        url_field: The older config field holding its URL.
        options_type: The dataclass of its options.
        first_answer_options: The options ``--connect-timeout`` sets (the connection
            and the AMQP handshake).
    """

    url_schemes: tuple[str, ...] = ("amqp", "amqps")
    url_field: str | None = "amqp_url"
    options_type: type[RabbitMQOptions] = RabbitMQOptions
    first_answer_options: tuple[str, ...] = ("connect_timeout",)

    def __repr__(self) -> str:
        return "RabbitMQBackend()"

    async def close(self) -> None:
        """Release the shared pools of a ``stores`` backend found without the core's lookup.

        A command calls this when it ends; the stores themselves are closed by whoever
        built them. A ``stores`` backend found through the spec's lookup (every spec the
        core builds) is released by the core after this one, unless another program of
        the process still holds it.
        """
        await close_lenders()

    def create_queue(self, spec: TaskBackendSpec, /) -> RabbitMQTaskQueue:
        """Build the queue for `spec` (nothing connects until first use).

        Raises:
            TaskConfigurationError: An option is unknown or invalid, or ``state_store`` /
                ``stores`` names a backend that is not installed or offers no cache.
        """
        options = RabbitMQOptions.from_options(spec.options, name=spec.name)
        return RabbitMQTaskQueue(
            spec.url or DEFAULT_AMQP_URL, spec.queue_name, options=options, backends=spec.backends
        )

    # -- stores borrowed from the ``stores`` backend (None: the core's in-memory one) ----

    def create_result_store(self, spec: TaskBackendSpec, /) -> Any | None:
        """The ``stores`` backend's result store, or None."""
        return borrow(spec, "create_result_store")

    def create_progress_store(self, spec: TaskBackendSpec, /) -> Any | None:
        """The ``stores`` backend's progress store, or None."""
        return borrow(spec, "create_progress_store")

    def create_progress_tracker(self, spec: TaskBackendSpec, /) -> Any | None:
        """The ``stores`` backend's progress tracker, or None."""
        return borrow(spec, "create_progress_tracker")

    def create_dlq_backend(self, spec: TaskBackendSpec, /) -> Any | None:
        """The ``stores`` backend's dead-letter store, or None."""
        return borrow(spec, "create_dlq_backend")

    def create_scheduler_store(self, spec: TaskBackendSpec, /) -> Any | None:
        """The ``stores`` backend's scheduler store, or None.

        Without one, schedulers still fire each cron occurrence once: the queue claims
        each occurrence's idempotency key on the broker (``broker_idempotency``).
        """
        return borrow(spec, "create_scheduler_store")

    def create_workflow_state_store(self, spec: TaskBackendSpec, /) -> Any | None:
        """The ``stores`` backend's workflow state store, or None."""
        return borrow(spec, "create_workflow_state_store")

    def create_lock_manager(self, spec: TaskBackendSpec, /) -> Any | None:
        """The ``stores`` backend's lock manager, or None."""
        return borrow(spec, "create_lock_manager")

    def create_cache_backend(self, spec: TaskBackendSpec, /) -> Any | None:
        """The ``stores`` backend's cache, or None."""
        return borrow(spec, "create_cache_backend")

    def create_idempotency_store(self, spec: TaskBackendSpec, /) -> Any | None:
        """The ``stores`` backend's idempotency store, or None."""
        return borrow(spec, "create_idempotency_store")

    def create_rate_limiter(self, spec: TaskBackendSpec, /, **kwargs: Any) -> Any | None:
        """The ``stores`` backend's rate limiter (same keyword arguments), or None."""
        return borrow(spec, "create_rate_limiter", **kwargs)


backend = RabbitMQBackend()
"""The object the ``rabbitmq`` entry point names."""


def create_queue(spec: TaskBackendSpec, /) -> RabbitMQTaskQueue:
    """Build a `RabbitMQTaskQueue` for `spec` (the same as `backend.create_queue`)."""
    return backend.create_queue(spec)
