"""Concurrency controls: rate limits (token buckets) and locks on keys (unique tasks)."""

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

__all__ = [
    "DistributedLockProtocol",
    "GlobalRateLimiter",
    "InMemoryLock",
    "LockManager",
    "LockManagerProtocol",
    "LockProtocol",
    "QueueRateLimiter",
    "RateLimiterProtocol",
    "TokenBucket",
    "UniqueTask",
    "distributed_lock",
    "unique_task",
]
