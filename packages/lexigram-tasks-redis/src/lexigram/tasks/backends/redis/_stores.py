"""Redis versions of the result, progress, DLQ and workflow-state stores.

The scheduler store is in `_schedules`.

Each store keeps its keys under one hash tag ``{<key_prefix>:<store>}`` so that its
multi-key scripts run on Redis Cluster; see docs/backends/redis.md for the layout.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from lexigram.contracts.tasks import (
    BackendConnectionError,
    JobResult,
    ProgressInfo,
    WorkflowResult,
    WorkflowStatus,
    WorkflowSummary,
    json_for_storage,
)
from lexigram.tasks.backends.redis._base import NOW_MS, RedisStore, loads, ttl_ms
from lexigram.tasks.backends.redis._batch import GroupCommit
from lexigram.tasks.backends.redis._connection import DEFAULT_URL, LuaScript, RedisConnector
from lexigram.tasks.backends.redis._lookup import result_ids
from lexigram.tasks.backends.redis._runs import RedisWorkflowRuns

_WAIT_GRACE = 5.0
_MIN_WAIT = 0.001  # Redis blocks with millisecond resolution

# Writes one job's result and wakes its waiters; drops index entries whose result has
# expired (cheap: they are the oldest). Shared with the queue's ACK_AND_STORE script.
# Only a job somebody waits for gets a wake-up token: `wait` registers in the waiting
# index (job id by the server time its waiter gives up) before it blocks, in the same
# script that found no result, so a result stored in between cannot go unannounced. A
# token for every job was a list key created and expired per job for nobody.
RESULT_LUA = """
local function store_result(done, failed, waiting, result, notify, id, data, success, now,
    ttl)
  redis.call('SET', result, data, 'PX', ttl)
  if success == '1' then
    redis.call('ZADD', done, now, id)
    redis.call('ZREM', failed, id)
  else
    redis.call('ZADD', failed, now, id)
    redis.call('ZREM', done, id)
  end
  if redis.call('ZREM', waiting, id) == 1 then
    redis.call('DEL', notify)
    redis.call('RPUSH', notify, 1)
    redis.call('PEXPIRE', notify, math.min(ttl, 60000))
  end
end
local function trim_results(done, failed, waiting, now, ttl)
  redis.call('ZREMRANGEBYSCORE', done, '-inf', now - ttl)
  redis.call('ZREMRANGEBYSCORE', failed, '-inf', now - ttl)
  redis.call('ZREMRANGEBYSCORE', waiting, '-inf', now)
end
"""

# KEYS: completed index, failed index, waiting index, then a result key and a notify key
# per job. ARGV: ttl ms, then json, success (1/0) and id per job. Stores a batch at once.
_STORE_RESULTS = LuaScript(
    "store_results",
    NOW_MS
    + RESULT_LUA
    + """
local now = now_ms()
local ttl = tonumber(ARGV[1])
for i = 0, (#KEYS - 3) / 2 - 1 do
  store_result(KEYS[1], KEYS[2], KEYS[3], KEYS[4 + 2 * i], KEYS[5 + 2 * i],
    ARGV[4 + 3 * i], ARGV[2 + 3 * i], ARGV[3 + 3 * i], now, ttl)
end
trim_results(KEYS[1], KEYS[2], KEYS[3], now, ttl)
return 1
""",
)
# Most results one script call stores (a worker finishing many jobs at once).
_RESULT_BATCH = 200

# KEYS: completed index, failed index, waiting index. ARGV: ttl ms. Returns how many
# result index entries were dropped (waiters that gave up are dropped too, not counted).
_CLEANUP_RESULTS = LuaScript(
    "cleanup_results",
    NOW_MS
    + """
local now = now_ms()
local cutoff = now - tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
return redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
  + redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cutoff)
""",
)

# KEYS: result key, waiting index. ARGV: job id, ms the waiter may still wait. Returns
# the stored result, or registers the waiter (keeping the latest give-up time of the
# job's waiters) and returns nil: `store_result` then pushes the job a wake-up token.
_AWAIT_RESULT = LuaScript(
    "await_result",
    NOW_MS
    + """
local data = redis.call('GET', KEYS[1])
if data then return data end
local until_ms = now_ms() + tonumber(ARGV[2])
local current = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not current or tonumber(current) < until_ms then
  redis.call('ZADD', KEYS[2], until_ms, ARGV[1])
end
return false
""",
)


class ResultKeys(NamedTuple):
    """Where a `RedisResultStore` writes: what a script storing its results needs."""

    completed: str  # ZSET of succeeded job ids by time
    failed: str  # ZSET of failed job ids by time
    waiting: str  # ZSET of awaited job ids by the server time their waiters give up
    result_prefix: str  # + job id: the result (STRING, with the TTL)
    notify_prefix: str  # + job id: the LIST its waiters block on
    ttl_ms: int


_NOTIFY_TTL_MS = 60_000
"""Lifetime of a result's wake-up token nobody took (as the store script sets it)."""


async def _hand_on(notify: str, client: Any) -> None:
    """Put a result's wake-up token back for the next waiter, with its expiry."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.rpush(notify, 1)
        pipe.pexpire(notify, _NOTIFY_TTL_MS)
        await pipe.execute()


class RedisResultStore(RedisStore):
    """`ResultStoreProtocol` on Redis: results expire after `ttl`; `wait` blocks on BLPOP.

    `store` writes the result and pushes a token on the job's notify list in one
    script; `wait` reads the result and, while it is absent, blocks on that list, so
    a waiter wakes within milliseconds of the result landing, in any process.

    Args:
        url: Redis URL (when no `connector` is given).
        key_prefix: Namespace ``{<key_prefix>:results}``.
        ttl: Seconds a result is kept.
        connector: Shared connection owner.
        client: Existing redis-py asyncio client.
    """

    _store = "results"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        key_prefix: str = "lexigram",
        ttl: float = 3600.0,
        connector: RedisConnector | None = None,
        client: Any | None = None,
    ) -> None:
        super().__init__(url, key_prefix=key_prefix, connector=connector, client=client)
        self._ttl_ms = ttl_ms(ttl) or 3_600_000
        self._completed = self.namespace.key("completed")
        self._failed = self.namespace.key("failed")
        self._waiting = self.namespace.key("waiting")
        # Every stored result names two keys: built by concatenation, not a call each.
        self._result_prefix = self.namespace.key("r", "")
        self._notify_prefix = self.namespace.key("n", "")
        self.result_keys = ResultKeys(
            self._completed,
            self._failed,
            self._waiting,
            self._result_prefix,
            self._notify_prefix,
            self._ttl_ms,
        )
        self._writes: GroupCommit[tuple[str, str, str], None] = GroupCommit(
            self._store_batch, _RESULT_BATCH
        )
        self._loop: asyncio.AbstractEventLoop | None = None

    def _result_key(self, job_id: str) -> str:
        return self._result_prefix + job_id

    def _notify_key(self, job_id: str) -> str:
        return self._notify_prefix + job_id

    async def store(self, job_id: str, result: JobResult) -> None:
        """Store `result` under `job_id` (replacing any earlier one) and wake waiters.

        Results stored concurrently (a worker finishing many jobs at once) share one
        script call: a lone store is sent at once, the ones that arrive meanwhile follow
        together when it returns.
        """
        data = result.to_json(of=job_id)
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a batch in flight belongs to the loop that sent it
            self._writes.reset()
            self._loop = loop
        await self._writes.submit((job_id, data, "1" if result.success else "0"))

    async def _store_batch(self, items: list[tuple[str, str, str]]) -> list[None]:
        keys = [self._completed, self._failed, self._waiting]
        args: list[Any] = [self._ttl_ms]
        result_prefix = self._result_prefix
        notify_prefix = self._notify_prefix
        for job_id, data, success in items:
            keys += (result_prefix + job_id, notify_prefix + job_id)
            args += (data, success, job_id)
        # On the multiplexed connection (the queue's acks ride it too): its encoder costs
        # a third of redis-py's for the five arguments each result adds.
        await self._call("store", lambda c: _STORE_RESULTS(c, keys, args), fast=True)
        return [None] * len(items)

    async def get(self, job_id: str) -> JobResult | None:
        """Return the result of `job_id`, or None if absent or expired."""
        raw = await self._call("get", lambda c: c.get(self._result_key(job_id)))
        return None if raw is None else JobResult.from_dict(loads(raw))

    async def find_job_ids(self, prefix: str, limit: int) -> list[str]:
        """Return up to `limit` ids with a stored result starting with `prefix`."""
        start = self._result_key("")
        return await self._call(
            "find_job_ids", lambda client: result_ids(client, start, prefix, limit)
        )

    async def delete(self, job_id: str) -> bool:
        """Delete a result; True if it existed."""

        async def run(client: Any) -> int:
            async with client.pipeline(transaction=True) as pipe:
                pipe.delete(self._result_key(job_id))
                pipe.zrem(self._completed, job_id)
                pipe.zrem(self._failed, job_id)
                # A token left for the deleted result would wake a later waiter for
                # nothing, and again each time it handed the token on.
                pipe.delete(self._notify_key(job_id))
                deleted, _, _, _ = await pipe.execute()
            return int(deleted)

        return bool(await self._call("delete", run))

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float = 30.0,
        poll_interval: float = 0.5,
    ) -> JobResult | None:
        """Wait up to `timeout` seconds for the result of `job_id`.

        Registers as the job's waiter and blocks on its notify list (BLPOP), so it wakes
        as soon as `store` runs in any process; `poll_interval` is accepted for the
        protocol and not used.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        notify = self._notify_key(job_id)
        keys = (self._result_key(job_id), self._waiting)
        while True:
            remaining = deadline - time.monotonic()
            if remaining < _MIN_WAIT:
                return await self.get(job_id)
            # Registered until the server gives the wait up (plus the client's grace).
            args = (job_id, math.ceil((remaining + _WAIT_GRACE) * 1000))

            async def register(client: Any, script_args: tuple[str, int] = args) -> Any:
                return await _AWAIT_RESULT(client, keys, script_args)

            raw = await self._call("wait", register)
            if raw is not None:
                return JobResult.from_dict(loads(raw))
            server_timeout = f"{math.ceil(remaining * 1000) / 1000:.3f}"

            async def blpop(client: Any, wait_s: float = remaining, t: str = server_timeout) -> Any:
                async with asyncio.timeout(wait_s + _WAIT_GRACE):
                    return await client.execute_command("BLPOP", notify, t)

            try:
                popped = await self._call("wait", blpop, blocking=True)
            except BackendConnectionError:
                if time.monotonic() >= deadline:
                    return None
                raise
            if popped is not None:
                # Hand the token on: other waiters for the same job wake in turn. BLPOP
                # emptied the list, which took its expiry with it: set one again, or the
                # token would stay for good once no waiter is left to take it.
                await self._call("wait", functools.partial(_hand_on, notify))

    async def close(self) -> None:
        """Close the connection (see `RedisStore.close`); a batch still queued is dropped."""
        self._writes.reset()
        self._loop = None
        await super().close()

    async def cleanup_expired(self) -> int:
        """Drop index entries of expired results; returns how many were dropped.

        The results themselves expire by Redis TTL without any call.
        """
        keys = (self._completed, self._failed, self._waiting)
        return int(
            await self._call("cleanup", lambda c: _CLEANUP_RESULTS(c, keys, (self._ttl_ms,)))
        )

    async def _listed(self, index: str, limit: int | None) -> list[JobResult]:
        stop = -1 if limit is None else max(0, limit) - 1
        if stop == -1 and limit == 0:
            return []

        async def run(client: Any) -> list[Any]:
            ids = await client.zrevrange(index, 0, stop)
            if not ids:
                return []
            keys = [self._result_key(raw.decode()) for raw in ids]
            values: list[Any] = await client.mget(keys)
            return values

        raws = await self._call("list", run)
        return [JobResult.from_dict(loads(raw)) for raw in raws if raw is not None]

    async def get_completed(self, limit: int | None = None) -> list[JobResult]:
        """Return stored successful results, newest first (at most `limit`)."""
        return await self._listed(self._completed, limit)

    async def get_failed(self, limit: int | None = None) -> list[JobResult]:
        """Return stored failed results, newest first (at most `limit`)."""
        return await self._listed(self._failed, limit)


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
