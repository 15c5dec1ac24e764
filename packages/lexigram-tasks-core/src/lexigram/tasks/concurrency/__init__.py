"""Concurrency controls: rate limits (token buckets, per task) and locks on keys (unique tasks)."""

from __future__ import annotations

from lexigram.contracts.tasks import LockManagerProtocol, LockProtocol, RateLimiterProtocol
from lexigram.tasks.concurrency._locking import (
    DistributedLockProtocol,
    InMemoryLock,
    LockManager,
    UniqueTask,
    distributed_lock,
    unique_task,
)
from lexigram.tasks.concurrency._rate_limit import GlobalRateLimiter, QueueRateLimiter, TokenBucket
from lexigram.tasks.concurrency._task_rate import RateLimit, parse_rate_limit

__all__ = [
    "DistributedLockProtocol",
    "GlobalRateLimiter",
    "InMemoryLock",
    "LockManager",
    "LockManagerProtocol",
    "LockProtocol",
    "QueueRateLimiter",
    "RateLimit",
    "RateLimiterProtocol",
    "TokenBucket",
    "UniqueTask",
    "distributed_lock",
    "parse_rate_limit",
    "unique_task",
]
