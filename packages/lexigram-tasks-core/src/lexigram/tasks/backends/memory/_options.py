"""`MemoryOptions`: what a memory backend's `TaskBackendSpec.options` may carry.

Read with the contracts' `parse_options`, which converts strings from YAML or the
environment, rejects unknown keys naming the nearest valid one, and names the backend,
the option and the fix in every error. `check_queue_settings` is the range check a
`MemoryTaskQueue` makes of the same settings, however it was built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lexigram.contracts.tasks import TaskConfigurationError, require_number

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


def check_queue_settings(
    visibility_timeout: float, max_size: int | None, idempotency_ttl: float
) -> None:
    """Refuse settings a `MemoryTaskQueue` cannot run with, naming the setting and the fix.

    Raises:
        TaskConfigurationError: `visibility_timeout` is not a positive finite number,
            `max_size` is below 1, or `idempotency_ttl` is negative.
    """
    require_number("MemoryTaskQueue", "visibility_timeout", visibility_timeout)
    require_number("MemoryTaskQueue", "idempotency_ttl", idempotency_ttl)
    if max_size is not None:
        require_number("MemoryTaskQueue", "max_size", max_size, whole=True)
    if not visibility_timeout > 0 or not math.isfinite(visibility_timeout):
        msg = (
            f"MemoryTaskQueue visibility_timeout={visibility_timeout!r} is not a positive "
            "number of seconds. Use e.g. 30.0."
        )
        raise TaskConfigurationError(msg, details={"option": "visibility_timeout"})
    if max_size is not None and max_size < 1:
        msg = f"MemoryTaskQueue max_size={max_size!r} is below 1. Use None for no limit."
        raise TaskConfigurationError(msg, details={"option": "max_size"})
    if not idempotency_ttl >= 0:
        msg = (
            f"MemoryTaskQueue idempotency_ttl={idempotency_ttl!r} is negative. "
            "Use 0 or more seconds."
        )
        raise TaskConfigurationError(msg, details={"option": "idempotency_ttl"})


__all__ = ["BACKEND_TYPE", "MemoryOptions", "check_queue_settings"]
