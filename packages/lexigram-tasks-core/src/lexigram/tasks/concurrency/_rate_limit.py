"""Token-bucket rate limiting: one bucket, a global cap, and per-queue caps.

Each limiter satisfies `RateLimiterProtocol` (or hands out objects that do), which is
what `TaskWorkerServices.rate_limiter` takes: the worker acquires a token before it
takes each job, so a limit is honoured at the queue, not only when called by hand.
These are in-process buckets; a backend's `create_rate_limiter` factory supplies one
shared by every process.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lexigram.contracts.tasks import RateLimiterProtocol


class TokenBucket:
    """A token bucket: `capacity` tokens at most, refilled at `refill_rate` per second.

    `acquire` waits for tokens, serving waiters in arrival order, so a burst of callers
    is spread out at the refill rate; `try_acquire` never waits. Implements
    `RateLimiterProtocol`.

    Example:
        bucket = TokenBucket(capacity=10, refill_rate=5.0)  # bursts of 10, then 5/s
        await bucket.acquire()

    Args:
        capacity: Maximum tokens held (the burst size); must be positive.
        refill_rate: Tokens added per second; must be positive.
        initial_tokens: Tokens at creation (defaults to `capacity`, a full bucket).
        clock: Monotonic clock in seconds (tests may pass a fake one).

    Raises:
        ValueError: A non-positive capacity or refill rate, or initial tokens outside
            ``[0, capacity]``.
    """

    def __init__(
        self,
        capacity: float,
        refill_rate: float,
        initial_tokens: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not capacity > 0:
            msg = f"TokenBucket capacity={capacity!r} is not positive. Pass a capacity above 0."
            raise ValueError(msg)
        if not refill_rate > 0:
            msg = (
                f"TokenBucket refill_rate={refill_rate!r} is not positive. "
                "Pass the number of tokens added per second, above 0."
            )
            raise ValueError(msg)
        tokens = float(capacity) if initial_tokens is None else float(initial_tokens)
        if not 0 <= tokens <= capacity:
            msg = (
                f"TokenBucket initial_tokens={initial_tokens!r} is outside [0, {capacity!r}]. "
                "Pass a value between 0 and the capacity, or None for a full bucket."
            )
            raise ValueError(msg)
        self._capacity = float(capacity)
        self._refill_rate = float(refill_rate)
        self._tokens = tokens
        self._clock = clock
        self._updated = clock()
        # Held by the caller at the head of the line while it waits for a refill, so
        # waiters are served in order and none starves behind later arrivals.
        self._turn = asyncio.Lock()

    def __repr__(self) -> str:
        return (
            f"TokenBucket(capacity={self._capacity!r}, refill_rate={self._refill_rate!r}, "
            f"available={self.available_tokens:.2f})"
        )

    @property
    def capacity(self) -> float:
        """Maximum number of tokens the bucket holds."""
        return self._capacity

    @property
    def refill_rate(self) -> float:
        """Tokens added per second."""
        return self._refill_rate

    @property
    def available_tokens(self) -> float:
        """Tokens available right now (after refilling for the time elapsed)."""
        self._refill()
        return self._tokens

    async def acquire(self, tokens: int = 1) -> None:
        """Wait until `tokens` are available and take them.

        Args:
            tokens: Number of tokens to take (at most the capacity).

        Raises:
            ValueError: `tokens` is negative or larger than the capacity (it could
                never be satisfied).
        """
        self._check(tokens)
        async with self._turn:
            while not self._take(tokens):
                # Sleep exactly until the deficit has refilled: the wait is the rate
                # limit itself, not a polling interval.
                deficit = tokens - self._tokens
                await asyncio.sleep(deficit / self._refill_rate)

    async def try_acquire(self, tokens: int = 1) -> bool:
        """Take `tokens` if they are available now, without waiting.

        Callers already waiting in `acquire` keep their place: while one waits, this
        returns False.

        Args:
            tokens: Number of tokens to take.

        Returns:
            True if the tokens were taken.

        Raises:
            ValueError: `tokens` is negative or larger than the capacity.
        """
        self._check(tokens)
        if self._turn.locked():
            return False
        return self._take(tokens)

    def _check(self, tokens: int) -> None:
        if tokens < 0 or tokens > self._capacity:
            msg = (
                f"Cannot take {tokens!r} tokens from a bucket of capacity {self._capacity!r}. "
                "Ask for between 0 and the capacity, or raise the burst/capacity."
            )
            raise ValueError(msg)

    def _take(self, tokens: int) -> bool:
        self._refill()
        # A float tolerance: refill arithmetic may land a hair below a whole token.
        if self._tokens + 1e-9 >= tokens:
            self._tokens = max(0.0, self._tokens - tokens)
            return True
        return False

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._updated
        if elapsed > 0:
            self._tokens = min(self._capacity, self._tokens + elapsed * self._refill_rate)
            self._updated = now


def _bucket(rate: int, per: float, burst: int | None, owner: str) -> TokenBucket:
    # A job takes a whole token, so a rate or a burst below 1 could never let one start;
    # an infinite one is no limit, and an infinite period no refill.
    if not 1 <= rate < math.inf:
        msg = (
            f"{owner} rate={rate!r} is not a number of jobs (1 or more, finite). Pass the "
            "number of jobs allowed per period."
        )
        raise ValueError(msg)
    if not 0 < per < math.inf:
        msg = f"{owner} per={per!r} is not a positive, finite number of seconds. Pass the period."
        raise ValueError(msg)
    if burst is not None and not 1 <= burst < math.inf:
        msg = (
            f"{owner} burst={burst!r} is not a number of jobs (1 or more, finite). Pass a "
            "burst of at least 1, or None for `rate`."
        )
        raise ValueError(msg)
    return TokenBucket(capacity=burst if burst is not None else rate, refill_rate=rate / per)


class GlobalRateLimiter:
    """System-wide throughput cap applied across all queues.

    Delegates to a single `TokenBucket` for consistent rate enforcement regardless of
    which queue a task originates from. Implements `RateLimiterProtocol`, so it can be
    handed to a worker as `TaskWorkerServices(rate_limiter=...)`.

    Example:
        limiter = GlobalRateLimiter(rate=100, per=1.0)  # 100 tasks / sec
        await limiter.acquire()

    Args:
        rate: Maximum allowed tasks per time period.
        per: Length of the time period in seconds.
        burst: Maximum burst capacity (defaults to `rate`).

    Raises:
        ValueError: A non-positive rate, period or burst.
    """

    def __init__(self, rate: int, per: float = 1.0, burst: int | None = None) -> None:
        self._bucket = _bucket(rate, per, burst, "GlobalRateLimiter")
        self.rate = rate
        self.per = per
        self.burst = burst if burst is not None else rate

    def __repr__(self) -> str:
        return f"GlobalRateLimiter(rate={self.rate!r}, per={self.per!r}, burst={self.burst!r})"

    @property
    def available_tokens(self) -> float:
        """Tokens available right now."""
        return self._bucket.available_tokens

    async def acquire(self, tokens: int = 1) -> None:
        """Block until a global token is available."""
        await self._bucket.acquire(tokens)

    async def try_acquire(self, tokens: int = 1) -> bool:
        """Non-blocking global token acquisition.

        Returns:
            True if a token was obtained; False if globally rate-limited.
        """
        return await self._bucket.try_acquire(tokens)


class _QueueLimit:
    """`RateLimiterProtocol` view of one queue's limit inside a `QueueRateLimiter`."""

    def __init__(self, limiter: QueueRateLimiter, queue: str) -> None:
        self._limiter = limiter
        self._queue = queue

    def __repr__(self) -> str:
        return f"QueueRateLimiter.for_queue({self._queue!r})"

    async def acquire(self, tokens: int = 1) -> None:
        await self._limiter.acquire(self._queue, tokens)

    async def try_acquire(self, tokens: int = 1) -> bool:
        return await self._limiter.try_acquire(self._queue, tokens)


@dataclass
class QueueRateLimiter:
    """Per-queue rate limiter.

    Manages independent rate limits for named task queues, delegating each limit to a
    `TokenBucket`. A queue without a limit is never throttled. `for_queue` returns a
    `RateLimiterProtocol` bound to one queue, for a worker's `rate_limiter` service.

    Example:
        limiter = QueueRateLimiter()
        limiter.add_limit("emails", rate=5, per=1.0)  # 5 / sec
        limiter.add_limit("reports", rate=1, per=60.0)  # 1 / min
        await limiter.acquire("emails")
    """

    _limits: dict[str, TokenBucket] = field(default_factory=dict, repr=False)

    def add_limit(self, queue: str, rate: int, per: float = 1.0, burst: int | None = None) -> None:
        """Register (or replace) a rate limit for a named queue.

        Args:
            queue: Queue name to apply the limit to.
            rate: Allowed requests per time period.
            per: Length of the time period in seconds.
            burst: Maximum burst size (defaults to `rate`).

        Raises:
            ValueError: A non-positive rate, period or burst.
        """
        self._limits[queue] = _bucket(rate, per, burst, f"QueueRateLimiter limit for {queue!r}:")

    def remove_limit(self, queue: str) -> bool:
        """Remove a queue's limit; True if it had one."""
        return self._limits.pop(queue, None) is not None

    def has_limit(self, queue: str) -> bool:
        """Return True if `queue` has a limit."""
        return queue in self._limits

    async def acquire(self, queue: str, tokens: int = 1) -> None:
        """Block until a token is available for `queue`.

        Args:
            queue: Queue name; a no-op for unlisted queues.
            tokens: Number of tokens to take.
        """
        bucket = self._limits.get(queue)
        if bucket is not None:
            await bucket.acquire(tokens)

    async def try_acquire(self, queue: str, tokens: int = 1) -> bool:
        """Attempt a non-blocking token acquisition for `queue`.

        Args:
            queue: Queue name.
            tokens: Number of tokens to take.

        Returns:
            True if a token was obtained or the queue has no limit; False if the queue
            is currently rate-limited.
        """
        bucket = self._limits.get(queue)
        return True if bucket is None else await bucket.try_acquire(tokens)

    def for_queue(self, queue: str) -> RateLimiterProtocol:
        """Return a `RateLimiterProtocol` that takes tokens from `queue`'s limit.

        The view looks the limit up on each call, so a limit added later applies.

        Example:
            services = TaskWorkerServices(rate_limiter=limiter.for_queue("emails"))
        """
        return _QueueLimit(self, queue)
