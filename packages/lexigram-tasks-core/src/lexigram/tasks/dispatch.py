"""`@delay`: fire-and-forget background dispatch of an async function in this process."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Generic, ParamSpec, TypeVar

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")

# Strong references: the event loop keeps only weak ones, and a task nobody holds can
# be garbage-collected before it finishes.
_background: set[asyncio.Task[Any]] = set()


def _finished(task: asyncio.Task[Any]) -> None:
    _background.discard(task)
    if task.cancelled():
        return
    error = task.exception()  # retrieving it also silences "exception never retrieved"
    if error is not None:
        logger.error("Background task %s failed.", task.get_name(), exc_info=error)


class _DelayedCallable(Generic[_P, _R]):
    """An async function plus `.delay()`: run it in the background without awaiting it."""

    def __init__(self, fn: Callable[_P, Coroutine[Any, Any, _R]]) -> None:
        functools.update_wrapper(self, fn)
        self._fn = fn

    def __repr__(self) -> str:
        return f"<delayed {self._fn!r}>"

    def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> Coroutine[Any, Any, _R]:
        """Call the function directly; await the returned coroutine as usual."""
        return self._fn(*args, **kwargs)

    def delay(self, *args: _P.args, **kwargs: _P.kwargs) -> asyncio.Task[_R]:
        """Schedule the call as a background `asyncio.Task` and return it at once.

        The task is referenced until it finishes; a failure is logged.

        Raises:
            RuntimeError: Called outside a running event loop.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            name = getattr(self._fn, "__qualname__", repr(self._fn))
            msg = (
                f"{name}.delay() needs a running event loop. Call it from async code, or "
                f"use asyncio.run({name}(...)) in sync code."
            )
            raise RuntimeError(msg) from None
        name = getattr(self._fn, "__qualname__", "delayed")
        task = loop.create_task(self._fn(*args, **kwargs), name=f"delay:{name}")
        _background.add(task)
        task.add_done_callback(_finished)
        return task


def delay(fn: Callable[_P, Coroutine[Any, Any, _R]]) -> _DelayedCallable[_P, _R]:
    """Decorate an async function to add a ``.delay()`` background-dispatch method.

    The decorated function is unchanged when called directly: it still returns a
    coroutine that must be awaited. ``.delay(...)`` schedules it as a background
    `asyncio.Task` in this process (no queue, no retries) and keeps a reference so it
    is not garbage-collected early.

    Args:
        fn: An async function (coroutine function) to wrap.

    Returns:
        A callable exactly like `fn` that also exposes ``.delay(*args, **kwargs)``.

    Raises:
        TypeError: `fn` is not an async function.

    Example:
        @delay
        async def flush_audit_log(batch: list[AuditEntry]) -> None:
            await audit_store.save_many(batch)

        await flush_audit_log(batch=entries)   # direct call
        flush_audit_log.delay(batch=entries)   # background dispatch
    """
    if not inspect.iscoroutinefunction(fn):
        msg = f"@delay needs an async function, got {fn!r}. Declare it with 'async def'."
        raise TypeError(msg)
    return _DelayedCallable(fn)


def pending_count() -> int:
    """Return how many `.delay()` tasks are still running."""
    return len(_background)


__all__ = ["delay", "pending_count"]
