from __future__ import annotations

import asyncio
import math
import time

import pytest

from lexigram.contracts.tasks import RateLimiterProtocol
from lexigram.tasks.concurrency import GlobalRateLimiter, QueueRateLimiter, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_token_bucket_try_acquire_drains_and_refills_with_the_clock():
    clock = FakeClock()
    bucket = TokenBucket(capacity=3, refill_rate=2.0, clock=clock)
    assert isinstance(bucket, RateLimiterProtocol)
    assert bucket.available_tokens == 3
    assert [await bucket.try_acquire() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5  # one token back at 2/s
    assert bucket.available_tokens == pytest.approx(1.0)
    assert await bucket.try_acquire()
    assert await bucket.try_acquire() is False
    clock.now += 100  # never more than the capacity
    assert bucket.available_tokens == 3


async def test_token_bucket_initial_tokens_and_multi_token_requests():
    clock = FakeClock()
    bucket = TokenBucket(capacity=10, refill_rate=1.0, initial_tokens=0, clock=clock)
    assert await bucket.try_acquire() is False
    clock.now += 5
    assert await bucket.try_acquire(5)
    assert await bucket.try_acquire(0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"capacity": 0, "refill_rate": 1}, "capacity=0"),
        ({"capacity": 1, "refill_rate": 0}, "refill_rate=0"),
        ({"capacity": 1, "refill_rate": 1, "initial_tokens": 2}, "initial_tokens=2"),
    ],
)
def test_token_bucket_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TokenBucket(**kwargs)


async def test_token_bucket_rejects_requests_larger_than_capacity():
    bucket = TokenBucket(capacity=2, refill_rate=1)
    with pytest.raises(ValueError, match="capacity 2"):
        await bucket.acquire(3)
    with pytest.raises(ValueError, match="capacity 2"):
        await bucket.try_acquire(-1)


async def test_token_bucket_acquire_waits_for_the_refill():
    bucket = TokenBucket(capacity=1, refill_rate=100.0)
    start = time.monotonic()
    for _ in range(5):
        await bucket.acquire()
    # Four refills of 10 ms each had to happen (a lower bound: the limiter's job).
    assert time.monotonic() - start >= 0.035


async def test_token_bucket_try_acquire_does_not_jump_the_queue():
    bucket = TokenBucket(capacity=1, refill_rate=20.0, initial_tokens=0)
    waiter = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)  # let the waiter take its turn
    assert await bucket.try_acquire() is False
    await waiter


async def test_global_rate_limiter_is_a_rate_limiter_protocol_with_a_full_burst():
    # 100 tasks an hour: what refills while the test runs (0.03 a second) cannot hide the
    # token taken, however slow the machine (at 100 a second a 5 ms pause refilled half).
    limiter = GlobalRateLimiter(rate=100, per=3600.0)
    await limiter.acquire()
    assert isinstance(limiter, RateLimiterProtocol)
    assert limiter.burst == 100
    assert limiter.available_tokens == pytest.approx(99, abs=0.1)


async def test_global_rate_limiter_burst_bounds_try_acquire():
    limiter = GlobalRateLimiter(rate=1, per=60.0, burst=2)
    assert [await limiter.try_acquire() for _ in range(3)] == [True, True, False]
    with pytest.raises(ValueError, match="per=0"):
        GlobalRateLimiter(rate=1, per=0)
    with pytest.raises(ValueError, match="rate=0"):
        GlobalRateLimiter(rate=0)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"rate": 0.5}, "rate=0.5"),  # a job takes a whole token: none would ever start
        ({"rate": math.inf}, "rate=inf"),
        ({"rate": 1, "per": math.inf}, "per=inf"),  # named as such, not as a refill rate
        ({"rate": 1, "burst": 0.5}, "burst=0.5"),
    ],
)
def test_a_limit_no_job_could_meet_is_refused_naming_its_argument(
    kwargs: dict[str, float], named: str
) -> None:
    with pytest.raises(ValueError, match=f"GlobalRateLimiter {named} is not"):
        GlobalRateLimiter(**kwargs)  # type: ignore[arg-type]


async def test_queue_rate_limiter_limits_each_queue_independently():
    limiter = QueueRateLimiter()
    limiter.add_limit("reports", rate=1, per=60.0)
    assert await limiter.try_acquire("reports")
    assert await limiter.try_acquire("reports") is False
    # unlisted queues are never limited
    assert all([await limiter.try_acquire("other") for _ in range(1000)])
    await limiter.acquire("other")
    assert limiter.remove_limit("reports")
    assert limiter.remove_limit("reports") is False
    assert await limiter.try_acquire("reports")


async def test_queue_rate_limiter_for_queue_is_a_rate_limiter_protocol():
    limiter = QueueRateLimiter()
    view = limiter.for_queue("emails")
    assert isinstance(view, RateLimiterProtocol)
    assert await view.try_acquire()  # no limit yet
    limiter.add_limit("emails", rate=1, per=60.0, burst=1)
    assert await view.try_acquire()
    assert await view.try_acquire() is False
    assert "emails" in repr(view)
