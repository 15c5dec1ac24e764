"""The Redis result store: results with a TTL, two listing indexes and an expiry index.

Keys, all under the hash tag ``{<key_prefix>:results}`` (one Redis Cluster slot):

* ``r:<job id>``: the result (STRING, expiring after the storing process's TTL);
* ``completed`` / ``failed``: job ids by the server time their result was stored,
  newest last (what `get_completed` and `get_failed` list);
* ``expiry``: job ids by the server time their result expires, which is what the
  listing indexes are trimmed by;
* ``waiting``: awaited job ids by the time their waiters give up;
* ``n:<job id>``: the LIST a job's waiters block on.

Processes sharing a prefix may keep results for different times (each its own
``result_ttl``). The indexes are trimmed by each result's own expiry, so no process
drops entries of results that, under the TTL they were stored with, still exist.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from typing import Any, NamedTuple

from lexigram.contracts.tasks import BackendConnectionError, JobResult
from lexigram.tasks.backends.redis._base import NOW_MS, RedisStore, loads, ttl_ms
from lexigram.tasks.backends.redis._batch import GroupCommit
from lexigram.tasks.backends.redis._connection import DEFAULT_URL, LuaScript, RedisConnector
from lexigram.tasks.backends.redis._lookup import result_ids

_WAIT_GRACE = 5.0
_MIN_WAIT = 0.001  # Redis blocks with millisecond resolution

_COMPLETED = "completed"
_EXPIRY = "expiry"
_RESULT = "r"

# Most expired entries one trim drops: a script storing up to 200 results drops up to
# 1000, so trimming keeps up while no single call holds the server long.
_TRIM_CHUNK = 1000

# Writes one job's result and wakes its waiters; `trim_results` drops the index entries
# of expired results. Shared with the queue's ACK_AND_STORE script, which passes the
# same keys as the store's own (completed, failed, waiting, then per job result and
# notify): the expiry index and the result keys are named from the completed index
# inside the script, as the queue's scripts name idempotency keys from their tag. They
# share its hash tag, so they hash to its slot.
# Only a job somebody waits for gets a wake-up token: `wait` registers in the waiting
# index (job id by the server time its waiter gives up) before it blocks, in the same
# script that found no result, so a result stored in between cannot go unannounced. A
# token for every job was a list key created and expired per job for nobody.
RESULT_LUA = f"""
local function results_ns(done)
  return string.sub(done, 1, -{len(_COMPLETED) + 1})
end
local function store_result(done, failed, waiting, result, notify, id, data, success, now,
    ttl)
  redis.call('SET', result, data, 'PX', ttl)
  redis.call('ZADD', results_ns(done) .. '{_EXPIRY}', now + ttl, id)
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
local function drain_unscored(index, expiry, results, budget)
  local dropped = 0
  while dropped < budget do
    local id = redis.call('ZRANGE', index, 0, 0)[1]
    if not id or redis.call('ZSCORE', expiry, id)
        or redis.call('EXISTS', results .. id) == 1 then
      break
    end
    redis.call('ZREM', index, id)
    dropped = dropped + 1
  end
  return dropped
end
local function trim_expired(done, failed, now, budget)
  local ns = results_ns(done)
  local expiry = ns .. '{_EXPIRY}'
  local dropped = 0
  local seen = 0
  while seen < budget do
    local ids = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0,
      math.min({_TRIM_CHUNK}, budget - seen))
    if #ids == 0 then break end
    seen = seen + #ids
    dropped = dropped + redis.call('ZREM', done, unpack(ids))
      + redis.call('ZREM', failed, unpack(ids))
    redis.call('ZREM', expiry, unpack(ids))
  end
  -- Entries stored before the expiry index existed have no expiry score. They are the
  -- oldest, so they are dropped from the bottom once their result is gone; a live or
  -- scored entry ends the walk.
  local results = ns .. '{_RESULT}:'
  return dropped + drain_unscored(done, expiry, results, budget)
    + drain_unscored(failed, expiry, results, budget)
end
-- `ttl` (the calling process's) is not used: every entry expires by its own result's.
local function trim_results(done, failed, waiting, now, ttl)
  trim_expired(done, failed, now, {_TRIM_CHUNK})
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

# KEYS: completed index, failed index, waiting index, expiry index (declared here,
# though the shared functions name it themselves). Returns how many result index
# entries were dropped (waiters that gave up are dropped too, not counted).
_CLEANUP_RESULTS = LuaScript(
    "cleanup_results",
    NOW_MS
    + RESULT_LUA
    + """
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
return trim_expired(KEYS[1], KEYS[2], now, math.huge)
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
        ttl: Seconds a result is kept (processes sharing the prefix may keep theirs for
            other times: each result expires, and leaves the listings, by its own).
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
        self._completed = self.namespace.key(_COMPLETED)
        self._failed = self.namespace.key("failed")
        self._waiting = self.namespace.key("waiting")
        self._expiry = self.namespace.key(_EXPIRY)
        # Every stored result names two keys: built by concatenation, not a call each.
        self._result_prefix = self.namespace.key(_RESULT, "")
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
                pipe.zrem(self._expiry, job_id)
                # A token left for the deleted result would wake a later waiter for
                # nothing, and again each time it handed the token on.
                pipe.delete(self._notify_key(job_id))
                deleted, *_ = await pipe.execute()
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

        The results themselves expire by Redis TTL without any call, and every store
        drops the index entries of results that expired meanwhile.
        """
        keys = (self._completed, self._failed, self._waiting, self._expiry)
        return int(await self._call("cleanup", lambda c: _CLEANUP_RESULTS(c, keys, ())))

    async def _listed(self, index: str, limit: int | None) -> list[JobResult]:
        if limit is not None and limit <= 0:
            return []

        async def run(client: Any) -> list[Any]:
            # An entry may outlive its result until the next store trims it: such entries
            # are skipped, and the page after them read, so that `limit` live results are
            # returned when there are that many. Positions shift when results are stored
            # meanwhile, so one entry may come twice.
            found: list[Any] = []
            seen: set[bytes] = set()
            start = 0
            while limit is None or len(found) < limit:
                stop = -1 if limit is None else start + limit - len(found) - 1
                ids = await client.zrevrange(index, start, stop)
                if not ids:
                    break
                start += len(ids)
                fresh = [raw for raw in ids if raw not in seen]
                seen.update(fresh)
                if fresh:
                    values = await client.mget([self._result_key(raw.decode()) for raw in fresh])
                    found += [value for value in values if value is not None]
                if limit is None:
                    break
            return found

        raws = await self._call("list", run)
        return [JobResult.from_dict(loads(raw)) for raw in raws]

    async def get_completed(self, limit: int | None = None) -> list[JobResult]:
        """Return stored successful results, newest first (at most `limit`)."""
        return await self._listed(self._completed, limit)

    async def get_failed(self, limit: int | None = None) -> list[JobResult]:
        """Return stored failed results, newest first (at most `limit`)."""
        return await self._listed(self._failed, limit)
