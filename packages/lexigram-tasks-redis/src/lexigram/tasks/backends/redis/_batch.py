"""Group commit: concurrent calls share one round trip, a lone call pays nothing extra.

The first caller runs its own item at once (no task, no timer, no added latency).
Callers that arrive while that round trip is in flight queue up; when it returns, one
background drain sends everything that queued in as few round trips as `max_batch`
allows. A worker finishing 100 jobs in one loop iteration thus acks them with one
EVALSHA instead of 100, while a single sequential producer sees plain calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Coalesce concurrent `submit` calls into batched calls of `run`.

    Args:
        run: Sends a batch and returns one result per item, in order.
        max_batch: Most items per call of `run`.
    """

    def __init__(self, run: Callable[[list[T]], Awaitable[list[R]]], max_batch: int) -> None:
        self._run = run
        self._max_batch = max_batch
        self._busy = False
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._drain_task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Send `item` (alone, or with others submitted meanwhile) and return its result."""
        if self._busy:
            future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
            self._pending.append((item, future))
            return await future
        self._busy = True
        try:
            return (await self._run([item]))[0]
        finally:
            if self._pending:
                self._drain_task = asyncio.get_running_loop().create_task(self._drain())
            else:
                self._busy = False

    async def _send(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._send(batch)
        finally:
            self._busy = False
            # Anything queued after a cancellation must not hang forever.
            for _, future in self._pending:
                if not future.done():
                    future.cancel()
            self._pending.clear()

    def reset(self) -> None:
        """Forget in-flight state (after the event loop it ran on is gone)."""
        if self._drain_task is not None and not self._drain_task.done():
            self._drain_task.cancel()
        self._drain_task = None
        self._busy = False
        self._pending.clear()
