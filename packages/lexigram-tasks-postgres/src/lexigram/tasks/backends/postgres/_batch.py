"""Coalescing of concurrent statements: what arrives while one runs goes out together next.

A worker finishing 100 jobs in one loop iteration would otherwise commit 100 acks and 100
results one by one, each a transaction and a WAL flush on the server. Here the first call
starts a flush; calls that arrive while its statement is in flight form the next batch,
so a batch is as large as the load makes it, with no timer and no added latency when
calls are rare.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class StatementBatcher(Generic[T, R]):
    """Run `run` on batches of concurrently submitted items; each caller gets its result.

    Args:
        run: Sends one batch (one statement or transaction) and returns one result per
            item, in order.
        max_batch: Most items per call of `run`.
    """

    def __init__(self, run: Callable[[list[T]], Awaitable[list[R]]], max_batch: int) -> None:
        self._run = run
        self._max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, item: T) -> R:
        """Send `item` with whatever else is submitted meanwhile; return its result.

        Raises:
            Exception: What `run` raised for the batch that held `item`.
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a flush of another (closed) loop never finishes
            self._pending, self._task, self._loop = [], None, loop
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._flush())
        return await future

    async def drain(self) -> None:
        """Wait until everything submitted so far has been sent."""
        if self._task is not None and self._loop is asyncio.get_running_loop():
            await asyncio.gather(self._task, return_exceptions=True)

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                results = await self._run([item for item, _ in batch])
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:  # every waiting caller must learn the outcome
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
