"""`settle_idempotency_key`: what a job's end records under its idempotency key.

The worker's side of idempotent submission (`IdempotencyManager`, given to the worker as
`TaskWorkerServices.idempotency_manager`): a job that succeeded is remembered under its
key with its result's data, so a later submission with the key gets that result instead
of a new job; a job that failed for good frees its key, so it can be submitted again.
"""

from __future__ import annotations

import logging
from typing import Any

from lexigram.contracts.tasks import JobResult


async def settle_idempotency_key(
    manager: Any,
    key: str,
    result: JobResult,
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> None:
    """Remember a success under the job's key; free the key of a dead-lettered job.

    `manager` offers ``mark_completed(key, data)`` and ``release(key)`` (either may be
    missing). Its errors are logged on `logger`, never raised.
    """
    try:
        if result.success:
            mark = getattr(manager, "mark_completed", None)
            if mark is not None:
                await mark(key, result.data)
        else:
            release = getattr(manager, "release", None)
            if release is not None:
                await release(key)
    except KeyError:
        pass  # the job was not submitted through the manager: nothing to record
    except Exception:
        logger.exception("Recording idempotency key %r failed.", key)
