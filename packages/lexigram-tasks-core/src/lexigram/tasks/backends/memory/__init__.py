"""The in-memory backend: `MemoryTaskQueue` and the `backend` entry-point object.

Core registers it under the entry-point group ``lexigram.tasks.backends`` as
``memory = "lexigram.tasks.backends.memory:backend"``, the same way a third-party
backend registers itself. It offers only `create_queue`: core's in-memory stores are
what every backend without its own store factories gets anyway.
"""

from __future__ import annotations

from collections.abc import Mapping

from lexigram.contracts.tasks import TaskBackendSpec, TaskConfigurationError
from lexigram.tasks.backends.memory._queue import MemoryTaskQueue

_OPTIONS = ("visibility_timeout", "max_size", "idempotency_ttl")


def _float_option(options: Mapping[str, object], name: str, default: float) -> float:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        msg = (
            f"Memory backend option {name}={value!r} is not a number of seconds. "
            f"Set options.{name} to a number, e.g. {default!r}."
        )
        raise TaskConfigurationError(msg)
    try:
        return float(value)
    except ValueError:
        msg = (
            f"Memory backend option {name}={value!r} is not a number of seconds. "
            f"Set options.{name} to a number, e.g. {default!r}."
        )
        raise TaskConfigurationError(msg) from None


def _max_size_option(options: Mapping[str, object]) -> int | None:
    value = options.get("max_size")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        msg = (
            f"Memory backend option max_size={value!r} is not a whole number. "
            "Set options.max_size to a positive integer, or leave it out for no limit."
        )
        raise TaskConfigurationError(msg)
    try:
        return int(value)
    except ValueError:
        msg = (
            f"Memory backend option max_size={value!r} is not a whole number. "
            "Set options.max_size to a positive integer, or leave it out for no limit."
        )
        raise TaskConfigurationError(msg) from None


class MemoryBackend:
    """The object the ``memory`` entry point names: builds `MemoryTaskQueue` objects."""

    def __repr__(self) -> str:
        return "MemoryBackend()"

    def create_queue(self, spec: TaskBackendSpec, /) -> MemoryTaskQueue:
        """Build a `MemoryTaskQueue` for `spec`.

        Args:
            spec: The backend spec; `queue_name` and the options `visibility_timeout`,
                `max_size` and `idempotency_ttl` are read, `url` is ignored.

        Returns:
            A new, empty queue.

        Raises:
            TaskConfigurationError: An option is unknown or has a wrong value.
        """
        options = spec.options
        unknown = sorted(str(name) for name in options if name not in _OPTIONS)
        if unknown:
            msg = (
                f"Memory backend {spec.name!r} got unknown option(s) {unknown}. "
                f"It accepts {list(_OPTIONS)}; check the spelling in the backend's options."
            )
            raise TaskConfigurationError(msg)
        return MemoryTaskQueue(
            queue_name=spec.queue_name,
            visibility_timeout=_float_option(options, "visibility_timeout", 30.0),
            max_size=_max_size_option(options),
            idempotency_ttl=_float_option(options, "idempotency_ttl", 86400.0),
        )


backend = MemoryBackend()
"""The ``memory`` entry point's target."""


def create_queue(spec: TaskBackendSpec, /) -> MemoryTaskQueue:
    """Build a `MemoryTaskQueue` for `spec` (the same as ``backend.create_queue``)."""
    return backend.create_queue(spec)


__all__ = ["MemoryBackend", "MemoryTaskQueue", "backend", "create_queue"]
