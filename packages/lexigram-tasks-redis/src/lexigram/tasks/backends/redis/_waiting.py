"""How an idle consumer waits: a blocking pop and the lease script, pipelined.

An idle `dequeue_batch` writes two commands at once on a dedicated connection:
``BLPOP <notify> <timeout>`` and ``EVALSHA <dequeue script>``. Redis runs the script the
moment the pop unblocks (a producer pushed a wake-up token), without waiting for the
client, so a new job reaches an idle consumer in one wake-up instead of two round trips.
Each command is still atomic on its own; if the client vanishes between them, the
leased jobs come back when their lease runs out, as after any lost reply.

A waiter that is cancelled (a worker stopping) cannot un-send the script, so the reply is
settled in the background: any job it leased is nacked back at once. A waiter woken by
`close` drops its connection instead (the server then discards the pending script).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from lexigram.contracts.tasks import BackendConnectionError, Job
from lexigram.tasks.backends.redis._connection import RedisConnector
from lexigram.tasks.backends.redis._mux import MuxClient
from lexigram.tasks.backends.redis._scripts import DEQUEUE
from redis import exceptions as rexc

logger = logging.getLogger(__name__)

CLOSED: Final = object()
"""`Waiter.wait` outcome: `close` interrupted the wait."""

_GRACE = 5.0  # client-side bound on a wait beyond its server-side timeout
_OUTAGE_BUDGET = 1.0

Lease = tuple[int, list[Job]]


def server_timeout(seconds: float) -> str:
    """BLPOP timeout text: Redis reads milliseconds, and 0 would mean "forever"."""
    return f"{math.ceil(seconds * 1000) / 1000:.3f}"


class Waiter:
    """The blocking waits of one queue object.

    Args:
        connector: Connection owner (dedicated blocking connections come from it).
        notify: The queue's notify list.
        keys: The queue's fixed keys (the dequeue script's KEYS).
        read: Turns a dequeue script reply into ``(next_due_ms, jobs)``.
        release: Gives a leased job back (nack with requeue).
    """

    def __init__(
        self,
        connector: RedisConnector,
        notify: str,
        keys: Sequence[str],
        read: Callable[[Any], Awaitable[Lease]],
        release: Callable[[Job], Awaitable[None]],
    ) -> None:
        self._connector = connector
        self._notify = notify
        self._keys = tuple(keys)
        self._read = read
        self._release = release
        self._waiting: set[asyncio.Task[Any]] = set()
        self._woken: set[asyncio.Task[Any]] = set()
        self._settling: set[asyncio.Task[None]] = set()

    def wake_all(self) -> bool:
        """Interrupt every wait (for `close`); True if any was interrupted."""
        for task in list(self._waiting):
            self._woken.add(task)
            task.cancel(msg="RedisTaskQueue closed")
        return bool(self._waiting)

    async def wait(self, seconds: float, lease_args: Sequence[Any]) -> Lease | object | None:
        """Block up to `seconds` for a wake-up token, then lease (see the module doc).

        Returns:
            ``(next_due_ms, jobs)`` from the pipelined lease; None when the caller
            should lease itself (no multiplexing, a NOSCRIPT, a connection error);
            `CLOSED` when `close` interrupted the wait.
        """
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 - always inside a task under asyncio
        conn = self._connector.take_blocking()
        self._waiting.add(task)
        try:
            if conn is None:
                await self._plain(seconds)
                return None
            return await self._pipelined(conn, seconds, lease_args, task)
        except asyncio.CancelledError:
            if task in self._woken and task.uncancel() == 0:
                return CLOSED
            raise
        finally:
            self._waiting.discard(task)
            self._woken.discard(task)

    async def _pipelined(
        self, conn: MuxClient, seconds: float, lease_args: Sequence[Any], task: asyncio.Task[Any]
    ) -> Lease | None:
        futures: list[asyncio.Future[Any]] | None = None
        try:
            futures = await conn.send_many(
                ("BLPOP", self._notify, server_timeout(seconds)),
                ("EVALSHA", DEQUEUE.sha, len(self._keys), *self._keys, *lease_args),
            )
            async with asyncio.timeout(seconds + _GRACE):
                await futures[0]
                raw = await futures[1]
        except asyncio.CancelledError:
            if futures is None or task in self._woken:
                self._connector.give_back_blocking(conn, healthy=False)
            else:
                self._settle_later(conn, futures)
            raise
        except rexc.NoScriptError:
            # The pop went through and the connection is in step; the caller's lease
            # loads the script (a restarted server forgot it).
            self._connector.give_back_blocking(conn, healthy=True)
            return None
        except (rexc.RedisError, OSError, TimeoutError):
            self._connector.give_back_blocking(conn, healthy=False)
            return None
        self._connector.give_back_blocking(conn, healthy=True)
        return await self._read(raw)

    async def settle_all(self, grace: float = 1.0) -> None:
        """Wait up to `grace` seconds for interrupted waits to give their jobs back.

        A wait still blocked on the server after that is aborted: a job its lease
        script took is then delivered again when the lease runs out (never lost).
        """
        if not self._settling:
            return
        _, pending = await asyncio.wait(set(self._settling), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    def _settle_later(self, conn: MuxClient, futures: list[asyncio.Future[Any]]) -> None:
        async def settle() -> None:
            try:
                raw = await futures[1]
            except asyncio.CancelledError:
                self._connector.give_back_blocking(conn, healthy=False)
                raise
            except (rexc.RedisError, OSError):
                self._connector.give_back_blocking(conn, healthy=False)
                return
            self._connector.give_back_blocking(conn, healthy=True)
            try:
                _, jobs = await self._read(raw)
            except BackendConnectionError:  # renaming an id; each lease runs out instead
                return
            for job in jobs:
                try:
                    await self._release(job)
                except BackendConnectionError:
                    logger.warning(
                        "Job %s leased by an interrupted wait could not be given back; it is "
                        "delivered again when its lease runs out.",
                        job.id,
                    )

        settling = asyncio.get_running_loop().create_task(settle())
        self._settling.add(settling)
        settling.add_done_callback(self._settling.discard)

    async def _plain(self, seconds: float) -> None:
        """BLPOP through redis-py (no multiplexing): the caller leases afterwards."""
        timeout = server_timeout(seconds)
        notify = self._notify

        async def blpop(client: Any) -> Any:
            async with asyncio.timeout(seconds + _GRACE):
                return await client.execute_command("BLPOP", notify, timeout)

        try:
            await self._connector.call(
                "wait", blpop, retry_timeout=_OUTAGE_BUDGET, blocking=True, fail_fast=False
            )
        except BackendConnectionError as exc:
            if exc.details.get("transient") is False:
                raise
