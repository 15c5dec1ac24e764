"""Closing what a runtime built: stores, queues, limiters, whatever they are.

Stores and queues come from backends, so core cannot know how each one closes: an
object is closed through its ``close()`` or ``aclose()``, sync or async, and one that
has neither holds nothing. The runtime is ending its use of them anyway, so a failing
close is logged (with its traceback) and the others are still closed.
"""

from __future__ import annotations

import inspect
import logging

logger = logging.getLogger(__name__)


async def close_each(*objects: object, owner: str, level: int = logging.ERROR) -> None:
    """Close every one of `objects` that can be closed; log a failure at `level`.

    Args:
        *objects: What to close, in order (None and objects without a close are skipped).
        owner: What they belong to, for the log line (e.g. ``"task backend 'main'"``).
        level: The level a failure is logged at (a command exiting logs at DEBUG).
    """
    for obj in objects:
        close = getattr(obj, "close", None) or getattr(obj, "aclose", None)
        if close is None:
            continue
        try:
            result = close()
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.log(level, "Closing %r of %s failed.", obj, owner, exc_info=True)


__all__ = ["close_each"]
