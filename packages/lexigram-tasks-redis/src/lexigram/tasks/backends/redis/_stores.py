"""Redis versions of the progress, DLQ and workflow-state stores.

The result store is in `_results` (and importable from here), the scheduler store in
`_schedules`.

Each store keeps its keys under one hash tag ``{<key_prefix>:<store>}`` so that its
multi-key scripts run on Redis Cluster; see docs/backends/redis.md for the layout.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from lexigram.contracts.tasks import (
    ProgressInfo,
    WorkflowResult,
    WorkflowStatus,
    WorkflowSummary,
    json_for_storage,
)
from lexigram.tasks.backends.redis._base import RedisStore, loads, ttl_ms
from lexigram.tasks.backends.redis._connection import DEFAULT_URL, LuaScript, RedisConnector
from lexigram.tasks.backends.redis._results import RESULT_LUA, RedisResultStore, ResultKeys
from lexigram.tasks.backends.redis._runs import RedisWorkflowRuns

__all__ = [
    "RESULT_LUA",
    "RedisDLQBackend",
    "RedisProgressStore",
    "RedisResultStore",
    "RedisWorkflowStateStore",
    "ResultKeys",
]


class RedisProgressStore(RedisStore):
    """`ProgressStoreProtocol` on Redis: the latest `ProgressInfo` per job, with a TTL.

    Args:
        url: Redis URL (when no `connector` is given).
        key_prefix: Namespace ``{<key_prefix>:progress}``.
        ttl: Seconds an entry is kept after its last save.
        connector: Shared connection owner.
        client: Existing redis-py asyncio client.
    """

    _store = "progress"

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
        self._ttl_ms = ttl_ms(ttl)
        self._active = self.namespace.key("active")

    def _key(self, job_id: str) -> str:
        return self.namespace.key("p", job_id)

    async def save(self, info: ProgressInfo) -> None:
        """Save progress state (a finished entry leaves the active set).

        Finished is the rule of `ProgressInfo.is_active`: complete by its count, or
        marked complete or failed (a failed or cancelled job).
        """
        data = json_for_storage(info.to_dict(), what="progress of job", of=info.job_id)

        async def run(client: Any) -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.set(self._key(info.job_id), data, px=self._ttl_ms)
                if info.is_active:
                    pipe.sadd(self._active, info.job_id)
                else:
                    pipe.srem(self._active, info.job_id)
                await pipe.execute()

        await self._call("save", run)

    async def get(self, job_id: str) -> ProgressInfo | None:
        """Return progress for a job, or None."""
        raw = await self._call("get", lambda c: c.get(self._key(job_id)))
        return None if raw is None else ProgressInfo.from_dict(loads(raw))

    async def delete(self, job_id: str) -> None:
        """Remove a progress entry."""

        async def run(client: Any) -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.delete(self._key(job_id))
                pipe.srem(self._active, job_id)
                await pipe.execute()

        await self._call("delete", run)

    async def list_active(self) -> list[ProgressInfo]:
        """Return entries whose job has not completed or failed (expired ones are pruned)."""

        async def run(client: Any) -> list[ProgressInfo]:
            ids = sorted(raw.decode() for raw in await client.smembers(self._active))
            if not ids:
                return []
            raws = await client.mget([self._key(job_id) for job_id in ids])
            gone = [job_id for job_id, raw in zip(ids, raws, strict=True) if raw is None]
            if gone:
                await client.srem(self._active, *gone)
            infos = [ProgressInfo.from_dict(loads(raw)) for raw in raws if raw is not None]
            return [info for info in infos if info.is_active]

        return await self._call("list_active", run)


# KEYS: records, index. ARGV: id, json, score (epoch ms), max entries (0 = unbounded).
_DLQ_ADD = LuaScript(
    "dlq_add",
    """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], tonumber(ARGV[3]), ARGV[1])
local cap = tonumber(ARGV[4])
if cap > 0 then
  local excess = redis.call('ZCARD', KEYS[2]) - cap
  if excess > 0 then
    local old = redis.call('ZRANGE', KEYS[2], 0, excess - 1)
    redis.call('ZREM', KEYS[2], unpack(old))
    redis.call('HDEL', KEYS[1], unpack(old))
  end
end
return 1
""",
)


class RedisDLQBackend(RedisStore):
    """`DLQBackendProtocol` on Redis: dead-letter records, newest first, optionally capped.

    Records (the dicts of `FailureRecord.to_dict`) live in one hash; a sorted set by
    `failed_at` gives the order. When `max_entries` is set, the oldest records beyond
    it are dropped as new ones arrive.

    Args:
        url: Redis URL (when no `connector` is given).
        key_prefix: Namespace ``{<key_prefix>:dlq}``.
        max_entries: Most records kept (None: unbounded).
        connector: Shared connection owner.
        client: Existing redis-py asyncio client.
    """

    _store = "dlq"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        key_prefix: str = "lexigram",
        max_entries: int | None = 100_000,
        connector: RedisConnector | None = None,
        client: Any | None = None,
    ) -> None:
        super().__init__(url, key_prefix=key_prefix, connector=connector, client=client)
        self._max_entries = max_entries or 0
        self._records = self.namespace.key("records")
        self._index = self.namespace.key("index")

    async def add(self, record_id: str, record_data: Mapping[str, Any]) -> None:
        """Store (or replace) a record."""
        failed_at = record_data.get("failed_at")
        when = float(failed_at) if isinstance(failed_at, int | float) else time.time()
        data = json_for_storage(dict(record_data), what=f"dead-letter record {record_id}")
        args = (record_id, data, math.floor(when * 1000), self._max_entries)
        keys = (self._records, self._index)
        await self._call("add", lambda c: _DLQ_ADD(c, keys, args))

    async def get(self, record_id: str) -> dict[str, Any] | None:
        """Return a record, or None."""
        raw = await self._call("get", lambda c: c.hget(self._records, record_id))
        return None if raw is None else dict(loads(raw))

    async def list_all(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Return records newest first, at most `limit` of them."""
        if limit is not None and limit <= 0:
            return []
        stop = -1 if limit is None else limit - 1

        async def run(client: Any) -> list[Any]:
            ids = await client.zrevrange(self._index, 0, stop)
            if not ids:
                return []
            values: list[Any] = await client.hmget(self._records, ids)
            return values

        raws = await self._call("list_all", run)
        return [dict(loads(raw)) for raw in raws if raw is not None]

    async def remove(self, record_id: str) -> bool:
        """Delete a record; True if it existed."""

        async def run(client: Any) -> int:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hdel(self._records, record_id)
                pipe.zrem(self._index, record_id)
                removed, _ = await pipe.execute()
            return int(removed)

        return bool(await self._call("remove", run))

    async def clear(self) -> int:
        """Delete every record and return how many there were."""

        async def run(client: Any) -> int:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hlen(self._records)
                pipe.delete(self._records, self._index)
                count, _ = await pipe.execute()
            return int(count)

        return await self._call("clear", run)

    async def size(self) -> int:
        """Return the number of records."""
        return int(await self._call("size", lambda c: c.hlen(self._records)))


_ACTIVE_WORKFLOW = (WorkflowStatus.PENDING, WorkflowStatus.RUNNING)


class RedisWorkflowStateStore(RedisWorkflowRuns):
    """`WorkflowStateStoreProtocol` on Redis, so a chain resumes after a crash.

    It is also the `WorkflowRunStoreProtocol` of queue-driven workflows
    (`RedisWorkflowRuns`).

    Args:
        url: Redis URL (when no `connector` is given).
        key_prefix: Namespace ``{<key_prefix>:workflows}``.
        connector: Shared connection owner.
        client: Existing redis-py asyncio client.
    """

    _store = "workflows"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        key_prefix: str = "lexigram",
        connector: RedisConnector | None = None,
        client: Any | None = None,
    ) -> None:
        super().__init__(url, key_prefix=key_prefix, connector=connector, client=client)
        self._state = self.namespace.key("state")
        self._created = self.namespace.key("created")
        self._updated = self.namespace.key("updated")
        self._active = self.namespace.key("active")

    async def save_state(self, workflow_id: str, result: WorkflowResult) -> None:
        """Save a workflow's state (PENDING/RUNNING ones are listed as active)."""
        data = json_for_storage(result.to_dict(), what=f"state of workflow {workflow_id}")
        now = repr(time.time())

        async def run(client: Any) -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hset(self._state, workflow_id, data)
                pipe.hsetnx(self._created, workflow_id, now)
                pipe.hset(self._updated, workflow_id, now)
                if result.status in _ACTIVE_WORKFLOW:
                    pipe.sadd(self._active, workflow_id)
                else:
                    pipe.srem(self._active, workflow_id)
                await pipe.execute()

        await self._call("save_state", run)

    async def load_state(self, workflow_id: str) -> WorkflowResult | None:
        """Return a workflow's saved state, or None."""
        raw = await self._call("load_state", lambda c: c.hget(self._state, workflow_id))
        return None if raw is None else WorkflowResult.from_dict(loads(raw))

    async def list_active(self) -> list[WorkflowSummary]:
        """Return workflows that have not finished (PENDING or RUNNING), oldest first."""

        async def run(client: Any) -> list[tuple[str, Any, Any, Any]]:
            ids = [raw.decode() for raw in await client.smembers(self._active)]
            if not ids:
                return []
            async with client.pipeline(transaction=True) as pipe:
                pipe.hmget(self._state, ids)
                pipe.hmget(self._created, ids)
                pipe.hmget(self._updated, ids)
                states, created, updated = await pipe.execute()
            return list(zip(ids, states, created, updated, strict=True))

        summaries: list[WorkflowSummary] = []
        for workflow_id, raw, created, updated in await self._call("list_active", run):
            if raw is None:
                continue
            result = WorkflowResult.from_dict(loads(raw))
            summaries.append(
                WorkflowSummary(
                    workflow_id=workflow_id,
                    status=result.status,
                    completed_steps=[step.step_name for step in result.steps if step.success],
                    created_at=_when(created),
                    last_updated=_when(updated),
                )
            )
        summaries.sort(key=lambda summary: summary.created_at)
        return summaries

    async def delete_state(self, workflow_id: str) -> None:
        """Delete a workflow's state."""

        async def run(client: Any) -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hdel(self._state, workflow_id)
                pipe.hdel(self._created, workflow_id)
                pipe.hdel(self._updated, workflow_id)
                pipe.srem(self._active, workflow_id)
                await pipe.execute()

        await self._call("delete_state", run)


def _when(raw: bytes | None) -> datetime:
    return datetime.fromtimestamp(float(raw) if raw is not None else time.time(), UTC)
