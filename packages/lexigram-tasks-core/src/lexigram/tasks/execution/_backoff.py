"""`retry_delay`: how long a failed job waits before its next attempt.

A task's own backoff (``@task(retry_backoff=..., retry_backoff_max=...,
retry_jitter=...)``) decides for its jobs; for a task that sets none of them, the
worker's retry policy service (`TaskWorkerServices.retry_policy`) does when there is
one, else `TaskWorkerConfig.retry`.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any

from lexigram.tasks.execution._options import TaskOptions

if TYPE_CHECKING:
    from lexigram.tasks._worker_settings import AnyRetrySettings


def retry_delay(
    attempt: int,
    options: TaskOptions | None,
    retry: AnyRetrySettings,
    policy: Any,
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> float:
    """Seconds before retry number `attempt` (0-based), as the task or config says.

    A task's ``retry_backoff=N`` waits N, 2N, 4N... seconds (capped at
    ``retry_backoff_max``, else the configured ``max_delay``); ``retry_jitter=True``
    picks a random delay between 0 and that (Celery's full jitter). Otherwise `policy`
    (``compute_delay(attempt)`` or ``get_delay(attempt)``), else `retry` decides; a
    policy that raises is logged on `logger` and `retry` decides.
    """
    own = options is not None and (
        options.retry_backoff is not None
        or options.retry_backoff_max is not None
        or options.retry_jitter is not None
    )
    if not own and policy is not None:
        compute = getattr(policy, "compute_delay", None) or getattr(policy, "get_delay", None)
        if compute is not None:
            try:
                return max(0.0, float(compute(attempt)))
            except Exception:
                logger.exception("retry_policy failed; using TaskWorkerConfig.retry.")
    initial, factor, cap = retry.initial_delay, retry.backoff_factor, retry.max_delay
    if options is not None:
        if options.retry_backoff is not None:
            initial, factor = options.retry_backoff, 2.0
        if options.retry_backoff_max is not None:
            cap = options.retry_backoff_max
    delay = min(cap, initial * factor**attempt)
    jitter = None if options is None else options.retry_jitter
    if jitter is True:
        delay = random.uniform(0.0, delay)  # noqa: S311 - jitter, not security
    elif jitter is None and retry.jitter:
        spread = delay * retry.jitter
        delay += random.uniform(-spread, spread)  # noqa: S311 - jitter, not security
    return max(0.0, delay)
