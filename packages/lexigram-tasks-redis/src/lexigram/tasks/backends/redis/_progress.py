"""`ProgressTrackerProtocol` on Redis: snapshots in keys, live updates over pub/sub.

Every change writes the snapshot and publishes it in one script, so a subscriber in
any process sees each change. A subscriber subscribes first and reads the stored
snapshot second, so nothing published in between is missed (a duplicate is dropped);
one that arrives after the end gets the terminal snapshot once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from lexigram.contracts.tasks import BackendConnectionError, ProgressSnapshot, ProgressStatus
from lexigram.tasks.backends.redis._base import RedisStore, dumps, loads, ttl_ms
from lexigram.tasks.backends.redis._connection import DEFAULT_URL, LuaScript, RedisConnector
from redis import exceptions as rexc

logger = logging.getLogger(__name__)

_TERMINAL = (ProgressStatus.COMPLETE, ProgressStatus.FAILED)
_RESUBSCRIBE_DELAY = 0.2

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

    def _key(self, task_id: str) -> str:
        return self.namespace.key("s", task_id)

    def _channel(self, task_id: str) -> str:
        return self.namespace.key("c", task_id)

    async def _publish(self, snapshot: ProgressSnapshot) -> None:
        data = dumps(snapshot.to_dict(), what=f"progress of task {snapshot.task_id}")
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
        """Return the most recent snapshot, or None if the task is unknown."""
        _, snapshot = await self._read(task_id)
        return snapshot

    async def _read(self, task_id: str) -> tuple[int, ProgressSnapshot | None]:
        seq, raw = await self._call("get", lambda c: c.hmget(self._key(task_id), "seq", "data"))
        if raw is None:
            return 0, None
        return int(seq or 0), ProgressSnapshot.from_dict(loads(raw))

    def subscribe(self, task_id: str) -> AsyncIterator[ProgressSnapshot]:
        """Return an async iterator of snapshots for `task_id` (not a coroutine).

        It yields the current snapshot (if any), then one per change, and ends after
        COMPLETE or FAILED. A lost connection is re-established; the stored snapshot
        is re-read then, so the iterator never ends on a missed terminal update.
        """
        return self._follow(task_id)

    async def _follow(self, task_id: str) -> AsyncIterator[ProgressSnapshot]:
        channel = self._channel(task_id)
        seen = 0  # sequence number of the last snapshot yielded
        outage_since: float | None = None
        while True:
            pubsub = self._connector.client().pubsub(ignore_subscribe_messages=True)
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
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        raw_seq, _, data = bytes(message["data"]).partition(b"|")
                        if int(raw_seq) <= seen:
                            continue  # already covered by the snapshot read above
                        seen = int(raw_seq)
                        snapshot = ProgressSnapshot.from_dict(loads(data))
                        yield snapshot
                        if snapshot.status in _TERMINAL:
                            return
                except (rexc.ConnectionError, rexc.TimeoutError) as exc:
                    outage_since = await self._outage(task_id, exc, outage_since)
            finally:
                await _close_pubsub(pubsub)

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


async def _close_pubsub(pubsub: Any) -> None:
    try:
        await pubsub.aclose()
    except (rexc.RedisError, OSError):  # the connection is already gone; nothing to free
        logger.debug("Closing a progress subscription failed; ignored.", exc_info=True)
