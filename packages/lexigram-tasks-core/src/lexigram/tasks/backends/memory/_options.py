"""`MemoryOptions`: what a memory backend's `TaskBackendSpec.options` may carry.

Read with the contracts' `parse_options`, which converts strings from YAML or the
environment, rejects unknown keys naming the nearest valid one, and names the backend,
the option and the fix in every error.
"""

from __future__ import annotations

from dataclasses import dataclass

BACKEND_TYPE = "memory"
"""The entry-point name of this backend."""


@dataclass(frozen=True, slots=True)
class MemoryOptions:
    """Options of the memory backend (the backend object's ``options_type``).

    Attributes:
        visibility_timeout: Lease length in seconds of every delivery.
        max_size: Most jobs that may wait at once; None for no limit.
        idempotency_ttl: Seconds an idempotency key stays held after its job was
            enqueued (it is also held while that job is in the queue).
    """

    visibility_timeout: float = 30.0
    max_size: int | None = None
    idempotency_ttl: float = 86400.0


__all__ = ["BACKEND_TYPE", "MemoryOptions"]
