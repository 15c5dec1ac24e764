"""`ProgressTrackerProtocol` on Redis: snapshots in keys, live updates over pub/sub.

Every change writes the snapshot and publishes it in one script, so a subscriber in
any process sees each change. A subscriber subscribes first and reads the stored
snapshot second, so nothing published in between is missed (a duplicate is dropped);
one that arrives after the end gets the terminal snapshot once.

A worker writes no snapshot for a job that never reported progress (its handler took
no `ProgressTracker`): for a task with no snapshot at all, `get` answers from the
job's stored result under the same key prefix, and `subscribe` waits for that result
(the result store's wake-up list) as well as for published changes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from lexigram.contracts.tasks import (
    BackendConnectionError,
    JobResult,
    ProgressSnapshot,
    ProgressStatus,
    json_for_storage,
    snapshot_from_result,
)
from lexigram.tasks.backends.redis._base import RedisStore, loads, ttl_ms
from lexigram.tasks.backends.redis._connection import DEFAULT_URL, LuaScript, RedisConnector
from lexigram.tasks.backends.redis._stores import RedisResultStore
from redis import exceptions as rexc

logger = logging.getLogger(__name__)

_TERMINAL = (ProgressStatus.COMPLETE, ProgressStatus.FAILED)
_RESUBSCRIBE_DELAY = 0.2
_RESULT_WAIT = 300.0  # seconds per blocking wait for a job's result (then waits again)

# KEYS: snapshot hash. ARGV: json, ttl ms (0 = none), channel. Each change gets the next
# sequence number; it is published as "<seq>|<json>" so a subscriber can tell which
# messages are older than the snapshot it read.
_PUBLISH = LuaScript(
    "progress_publish",
    """
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('HSET', KEYS[1], 'data', ARGV[1])
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
redis.call('PUBLISH', ARGV[3], seq .. '|' .. ARGV[1])
return seq
""",
)


class RedisProgressTracker(RedisStore):
    """Track task progress in Redis and stream it live to subscribers in any process.

    Args:
        url: Redis URL (when no `connector` is given).
        key_prefix: Namespace ``{<key_prefix>:tracker}``.
        ttl: Seconds a snapshot is kept after its last change.
        connector: Shared connection owner.
        client: Existing redis-py asyncio client.
    """

    _store = "tracker"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        key_prefix: str = "lexigram",
        ttl: float = 86400.0,
        connector: RedisConnector | None = None,
        client: Any | None = None,
    ) -> None:
        super().__init__(url, key_prefix=key_prefix, connector=connector, client=client)
        self._ttl_ms = ttl_ms(ttl) or 0
        # Results of jobs that never reported progress, read on the same connection.
        self._results = RedisResultStore(key_prefix=key_prefix, connector=self._connector)

    async def close(self) -> None:
        """Release the connections (this tracker's and its result reader's share)."""
        await self._results.close()
        await super().close()

    def _key(self, task_id: str) -> str:
        return self.namespace.key("s", task_id)

    def _channel(self, task_id: str) -> str:
        return self.namespace.key("c", task_id)

    async def _publish(self, snapshot: ProgressSnapshot) -> None:
        data = json_for_storage(snapshot.to_dict(), what=f"progress of task {snapshot.task_id}")
        keys = (self._key(snapshot.task_id),)
        args = (data, self._ttl_ms, self._channel(snapshot.task_id))
        await self._call("publish", lambda c: _PUBLISH(c, keys, args))

    async def update(self, task_id: str, current: int, total: int, message: str = "") -> None:
        """Record incremental progress for a task and broadcast it."""
        await self._publish(
            ProgressSnapshot(
                task_id=task_id,
                current=current,
                total=total,
                status=ProgressStatus.RUNNING,
                message=message,
            )
        )

    async def complete(self, task_id: str, result: str = "") -> None:
        """Mark a task completed (current = total) and end its subscriptions."""
        last = await self.get(task_id)
        total = last.total if last is not None else 0
        if total <= 0:
            total = last.current if last is not None else 0
        await self._publish(
            ProgressSnapshot(
                task_id=task_id,
                current=total,
                total=total,
                status=ProgressStatus.COMPLETE,
                message=result,
            )
        )

    async def fail(self, task_id: str, error: str) -> None:
        """Mark a task failed and end its subscriptions."""
        last = await self.get(task_id)
        await self._publish(
            ProgressSnapshot(
                task_id=task_id,
                current=last.current if last is not None else 0,
                total=last.total if last is not None else 0,
                status=ProgressStatus.FAILED,
                message=last.message if last is not None else "",
                error=error,
            )
        )

    async def get(self, task_id: str) -> ProgressSnapshot | None:
        """Return the most recent snapshot, or None if the task is unknown.

        A task with no snapshot whose result is stored (it never reported progress)
        gets the terminal snapshot built from that result.
        """
        _, snapshot = await self._read(task_id)
        if snapshot is not None:
            return snapshot
        result = await self._results.get(task_id)
        return None if result is None else snapshot_from_result(task_id, result)

    async def _read(self, task_id: str) -> tuple[int, ProgressSnapshot | None]:
        seq, raw = await self._call("get", lambda c: c.hmget(self._key(task_id), "seq", "data"))
        if raw is None:
            return 0, None
        return int(seq or 0), ProgressSnapshot.from_dict(loads(raw))

    def subscribe(self, task_id: str) -> AsyncIterator[ProgressSnapshot]:
        """Return an async iterator of snapshots for `task_id` (not a coroutine).

        It yields the current snapshot (if any), then one per change, and ends after
        COMPLETE or FAILED. A lost connection is re-established; the stored snapshot
        is re-read then, so the iterator never ends on a missed terminal update. For a
        job that never reported progress it ends with the snapshot built from the
        job's result once that is stored.
        """
        return self._follow(task_id)

    async def _follow(self, task_id: str) -> AsyncIterator[ProgressSnapshot]:
        channel = self._channel(task_id)
        seen = 0  # sequence number of the last snapshot yielded
        outage_since: float | None = None
        while True:
            pubsub = self._connector.client().pubsub(ignore_subscribe_messages=True)
            events: _Events | None = None
            try:
                try:
                    # Subscribe before reading, so no change falls between the two.
                    await pubsub.subscribe(channel)
                    seq, current = await self._read(task_id)
                    if current is not None and seq > seen:
                        seen = seq
                        yield current
                        if current.status in _TERMINAL:
                            return
                    outage_since = None
                    # While nothing was published, the job's result is waited for too.
                    events = _Events(
                        pubsub,
                        self._wait_result(task_id) if seen == 0 else None,
                        functools.partial(self._on_result, task_id),
                    )
                    while True:
                        seen, snapshot = await events.next(seen)
                        yield snapshot
                        if snapshot.status in _TERMINAL:
                            return
                except (rexc.ConnectionError, rexc.TimeoutError) as exc:
                    outage_since = await self._outage(task_id, exc, outage_since)
            finally:
                if events is not None:
                    await events.close()
                await _close_pubsub(pubsub)

    async def _wait_result(self, task_id: str) -> JobResult:
        """Block until the result of `task_id` is stored (woken by the result store)."""
        while True:
            result = await self._results.wait(task_id, timeout=_RESULT_WAIT)
            if result is not None:
                return result

    async def _on_result(
        self, task_id: str, seen: int, result: JobResult
    ) -> ProgressSnapshot | None:
        """The snapshot that ends a subscription once the task's result is stored.

        None while the task has a snapshot that is not terminal yet: it reported
        progress, and its worker publishes the terminal update after the result.
        """
        seq, current = await self._read(task_id)
        if current is None:
            return snapshot_from_result(task_id, result)
        if seq > seen and current.status in _TERMINAL:
            return current
        return None

    async def _outage(self, task_id: str, exc: BaseException, since: float | None) -> float:
        """Wait before resubscribing, or raise when the failure will not heal in time.

        Returns:
            When the outage began (for the next failure's budget).
        """
        error = self._connector.failure(f"{self._store} subscribe", exc)
        if error is not None:
            raise error from exc
        now = time.monotonic()
        since = since or now
        if now - since > self._connector.retry_timeout:
            msg = (
                f"Progress subscription to task {task_id!r} could not reach Redis at "
                f"{self._connector.masked_url} for {now - since:.1f} s ({exc}). "
                "Check the server; subscribe again once it is back."
            )
            raise BackendConnectionError(msg) from exc
        logger.warning(
            "Progress subscription to %s lost its connection (%s); resubscribing.", task_id, exc
        )
        await asyncio.sleep(_RESUBSCRIBE_DELAY)
        return since


class _Events:
    """What one subscription waits on: its channel, and maybe the job's result.

    Each runs as a task that hands itself to one inbox when done, so `next` waits on
    both without ever cancelling a read of the channel half way.

    Args:
        pubsub: The subscribed redis-py pub/sub object.
        result: Waits for the job's result (None: the job reports progress).
        on_result: ``(seen, result)`` -> the snapshot that ends the subscription, or
            None when the job's own terminal update is still to come.
    """

    def __init__(
        self,
        pubsub: Any,
        result: Coroutine[Any, Any, JobResult] | None,
        on_result: Callable[[int, JobResult], Awaitable[ProgressSnapshot | None]],
    ) -> None:
        self._pubsub = pubsub
        self._on_result = on_result
        self._inbox: asyncio.Queue[asyncio.Future[Any]] = asyncio.Queue()
        self._reader = self._start(_next_message(pubsub))
        self._waiter = None if result is None else self._start(result)

    def _start(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        task.add_done_callback(self._inbox.put_nowait)
        return task

    async def next(self, seen: int) -> tuple[int, ProgressSnapshot]:
        """The next snapshot newer than sequence number `seen`, with its number."""
        while True:
            done = await self._inbox.get()
            if done is not self._reader:  # the result arrived
                snapshot = await self._on_result(seen, done.result())
                if snapshot is not None:
                    return seen, snapshot
                continue
            data: bytes = done.result()
            self._reader = self._start(_next_message(self._pubsub))
            raw_seq, _, payload = data.partition(b"|")
            if int(raw_seq) <= seen:
                continue  # already covered by the snapshot read when subscribing
            self._stop_waiting()  # it reports progress, so it ends with its own update
            return int(raw_seq), ProgressSnapshot.from_dict(loads(payload))

    def _stop_waiting(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.remove_done_callback(self._inbox.put_nowait)
            waiter.cancel()

    async def close(self) -> None:
        """Cancel what is still pending."""
        pending = [t for t in (self._reader, self._waiter) if t is not None and not t.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def _next_message(pubsub: Any) -> bytes:
    """The payload of the next message published on the subscribed channel."""
    while True:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
        if message is not None and message.get("type") == "message":
            return bytes(message["data"])


async def _close_pubsub(pubsub: Any) -> None:
    try:
        await pubsub.aclose()
    except (rexc.RedisError, OSError):  # the connection is already gone; nothing to free
        logger.debug("Closing a progress subscription failed; ignored.", exc_info=True)
