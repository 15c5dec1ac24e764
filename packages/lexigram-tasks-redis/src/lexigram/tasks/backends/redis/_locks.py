"""Cross-process locks and token-bucket rate limiters on Redis.

A lock is ``SET key token NX PX timeout``; release and extension are Lua scripts that
act only while the key still holds this holder's token, so a holder whose lock expired
can never release someone else's. Waiters block on the lock's wake list (BLPOP), which
`release` pushes to, bounded by the lock's remaining TTL so an expiry is noticed too.

A rate limiter is a token bucket in one hash, refilled and taken by one script using
the server's clock, so every process shares one exact rate.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from types import TracebackType
from typing import Any, Self

from lexigram.contracts.tasks import TaskConfigurationError
from lexigram.tasks.backends.redis._base import NOW_MS, RedisStore
from lexigram.tasks.backends.redis._connection import DEFAULT_URL, LuaScript, RedisConnector
from lexigram.tasks.backends.redis._keys import check_key_prefix

_WAIT_GRACE = 5.0

# KEYS: lock, wake. ARGV: token, ttl ms. Returns 0 when taken, else the lock's PTTL.
_LOCK_ACQUIRE = LuaScript(
    "lock_acquire",
    """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
local pttl = redis.call('PTTL', KEYS[1])
if pttl < 1 then return 1 end
return pttl
""",
)

# KEYS: lock, wake. ARGV: token, wake ttl ms. Returns 1 if released.
_LOCK_RELEASE = LuaScript(
    "lock_release",
    """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
redis.call('RPUSH', KEYS[2], 1)
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
""",
)

# KEYS: lock. ARGV: token, ttl ms. Returns 1 if extended.
_LOCK_EXTEND = LuaScript(
    "lock_extend",
    """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
""",
)


class RedisLock:
    """A lock on one key, held across processes, that expires after `timeout` seconds.

    Use ``async with manager.acquire("report:42"):`` (waits for the lock) or call
    `try_acquire` / `acquire_wait` and `release` yourself. `extend` keeps a long
    critical section's lock alive.

    Args:
        connector: Connection owner.
        key: Redis key of the lock.
        wake_key: Redis key of the lock's wake list.
        timeout: Seconds after which the lock frees itself (a dead holder's lock).
    """

    def __init__(self, connector: RedisConnector, key: str, wake_key: str, timeout: float) -> None:
        if not timeout > 0 or not math.isfinite(timeout):
            msg = f"Lock timeout={timeout!r} is not a positive number of seconds. Use e.g. 60.0."
            raise TaskConfigurationError(msg)
        self._connector = connector
        self._key = key
        self._wake = wake_key
        self._ttl_ms = max(1, math.ceil(timeout * 1000))
        self._token = uuid.uuid4().hex
        self._held = False

    def __repr__(self) -> str:
        return f"RedisLock(key={self._key!r}, held={self._held})"

    @property
    def key(self) -> str:
        """The Redis key of the lock."""
        return self._key

    @property
    def token(self) -> str:
        """This holder's token (the value stored under the key while it holds the lock)."""
        return self._token

    @property
    def held(self) -> bool:
        """True after a successful acquire until release (or a failed extend)."""
        return self._held

    async def _attempt(self) -> int:
        keys = (self._key, self._wake)
        args = (self._token, self._ttl_ms)
        pttl = int(
            await self._connector.call("lock acquire", lambda c: _LOCK_ACQUIRE(c, keys, args))
        )
        self._held = pttl == 0
        return pttl

    async def acquire(self) -> bool:
        """Try to take the lock without waiting; True if taken."""
        return await self._attempt() == 0

    async def try_acquire(self) -> bool:
        """Try to take the lock without waiting; True if taken."""
        return await self._attempt() == 0

    async def acquire_wait(self, timeout: float | None = None) -> bool:
        """Wait up to `timeout` seconds (None = forever) for the lock; True if taken."""
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            pttl = await self._attempt()
            if pttl == 0:
                return True
            block = pttl / 1000
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                block = min(block, remaining)
            await self._block(max(block, 0.001))

    async def _block(self, seconds: float) -> None:
        server_timeout = f"{math.ceil(seconds * 1000) / 1000:.3f}"
        wake = self._wake

        async def blpop(client: Any) -> Any:
            async with asyncio.timeout(seconds + _WAIT_GRACE):
                return await client.execute_command("BLPOP", wake, server_timeout)

        await self._connector.call("lock wait", blpop, blocking=True)

    async def release(self) -> None:
        """Release the lock if this holder still owns it (otherwise do nothing)."""
        keys = (self._key, self._wake)
        args = (self._token, self._ttl_ms)
        self._held = False
        await self._connector.call("lock release", lambda c: _LOCK_RELEASE(c, keys, args))

    async def extend(self, seconds: float | None = None) -> bool:
        """Reset the lock's expiry to `seconds` from now (default: its timeout).

        Returns:
            False if this holder no longer owns the lock (it expired and may be held
            by another); the critical section should stop.
        """
        ms = self._ttl_ms if seconds is None else max(1, math.ceil(seconds * 1000))
        args = (self._token, ms)
        extended = await self._connector.call(
            "lock extend", lambda c: _LOCK_EXTEND(c, (self._key,), args)
        )
        self._held = bool(extended)
        return self._held

    async def __aenter__(self) -> Self:
        await self.acquire_wait(None)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.release()


class RedisLockManager(RedisStore):
    """`LockManagerProtocol` on Redis: locks that hold across processes and hosts.

    Each lock key is its own hash tag ``{<key_prefix>:lock:<key>}`` (with its wake
    list), so locks spread over a cluster's slots.

    Args:
        url: Redis URL (when no `connector` is given).
        key_prefix: First part of every lock key.
        connector: Shared connection owner.
        client: Existing redis-py asyncio client.
    """

    _store = "lock"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        key_prefix: str = "lexigram",
        connector: RedisConnector | None = None,
        client: Any | None = None,
    ) -> None:
        super().__init__(url, key_prefix=key_prefix, connector=connector, client=client)

    def acquire(self, key: str, timeout: float = 60.0) -> RedisLock:
        """Return a lock on `key` that auto-releases after `timeout` seconds.

        Use as ``async with manager.acquire("user:1"):``.
        """
        tag = f"{{{self._key_prefix}:lock:{key}}}"
        return RedisLock(self._connector, tag, f"{tag}:wake", timeout)


# KEYS: bucket. ARGV: capacity, refill per ms, tokens wanted.
# Returns 0 when taken, else the ms until that many tokens will be there.
_TAKE_TOKENS = LuaScript(
    "rate_limit",
    NOW_MS
    + """
local now = now_ms()
local cap = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if not tokens or not ts then
  tokens = cap
  ts = now
end
if now > ts then tokens = math.min(cap, tokens + (now - ts) * rate) end
local wait = 0
if tokens >= want then
  tokens = tokens - want
else
  wait = math.max(1, math.ceil((want - tokens) / rate))
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', math.max(now, ts))
redis.call('PEXPIRE', KEYS[1], math.ceil(cap / rate) + 60000)
return wait
""",
)


class RedisRateLimiter:
    """`RateLimiterProtocol` on Redis: one token bucket shared by every process.

    `rate` tokens are added every `per` seconds, up to `burst` (default: `rate`)
    stored tokens. The bucket lives in Redis and is updated by one script with the
    server's clock, so N workers together never exceed the rate.

    Args:
        connector: Connection owner.
        name: Name of the limiter (its key is ``{<key_prefix>:ratelimit:<name>}``).
        rate: Tokens per `per` seconds.
        per: Length of the rate window in seconds.
        burst: Bucket capacity (default: `rate`).
        key_prefix: First part of the key.
    """

    def __init__(
        self,
        connector: RedisConnector,
        *,
        name: str,
        rate: float,
        per: float = 1.0,
        burst: float | None = None,
        key_prefix: str = "lexigram",
    ) -> None:
        if not rate > 0 or not per > 0 or not math.isfinite(rate / per):
            msg = (
                f"Rate limiter {name!r} has rate={rate!r} per={per!r}; both must be positive. "
                "Use e.g. rate=100, per=1.0."
            )
            raise TaskConfigurationError(msg)
        capacity = float(rate if burst is None else burst)
        if not capacity >= 1:
            msg = f"Rate limiter {name!r} has burst={burst!r}; use 1 or more tokens."
            raise TaskConfigurationError(msg)
        self._connector = connector
        self._name = name
        self._key = f"{{{check_key_prefix(key_prefix)}:ratelimit:{name}}}"
        self._capacity = capacity
        self._per_ms = rate / per / 1000

    def __repr__(self) -> str:
        return (
            f"RedisRateLimiter(name={self._name!r}, rate_per_s={self._per_ms * 1000:g}, "
            f"burst={self._capacity:g})"
        )

    async def _take(self, tokens: int) -> int:
        if tokens > self._capacity:
            msg = (
                f"Rate limiter {self._name!r} was asked for {tokens} tokens but holds at most "
                f"{self._capacity:g}. Ask for fewer or raise burst."
            )
            raise TaskConfigurationError(msg)
        args = (repr(self._capacity), repr(self._per_ms), tokens)
        keys = (self._key,)
        return int(await self._connector.call("rate limit", lambda c: _TAKE_TOKENS(c, keys, args)))

    async def try_acquire(self, tokens: int = 1) -> bool:
        """Take `tokens` if available now; True if taken."""
        return await self._take(tokens) == 0

    async def acquire(self, tokens: int = 1) -> None:
        """Wait until `tokens` are available and take them.

        The wait is the bucket's own arithmetic (the script says how many ms until
        enough tokens exist), not a polling interval.
        """
        while True:
            wait_ms = await self._take(tokens)
            if wait_ms == 0:
                return
            await asyncio.sleep(wait_ms / 1000)
