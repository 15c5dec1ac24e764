"""Redis backend for lexigram-tasks: `RedisTaskQueue` and the Redis version of every store.

The entry point ``redis = "lexigram.tasks.backends.redis:backend"`` (group
``lexigram.tasks.backends``) names `backend`, whose factories build the queue and the
stores from a `TaskBackendSpec`; ``type: redis`` in config thus runs the whole stack on
Redis. The classes can also be used directly::

    from lexigram.tasks.backends.redis import RedisTaskQueue

    queue = RedisTaskQueue(url="redis://localhost:6379/0", queue_name="emails")

See docs/backends/redis.md for the key layout, semantics and operations.
"""

from __future__ import annotations

from lexigram.tasks.backends.redis._backend import RedisBackend, backend, create_queue
from lexigram.tasks.backends.redis._connection import RedisConnector
from lexigram.tasks.backends.redis._kv import RedisCacheBackend, RedisIdempotencyStore
from lexigram.tasks.backends.redis._locks import RedisLock, RedisLockManager, RedisRateLimiter
from lexigram.tasks.backends.redis._options import RedisOptions
from lexigram.tasks.backends.redis._progress import RedisProgressTracker
from lexigram.tasks.backends.redis._queue import RedisTaskQueue
from lexigram.tasks.backends.redis._schedules import RedisSchedulerStore
from lexigram.tasks.backends.redis._stores import (
    RedisDLQBackend,
    RedisProgressStore,
    RedisResultStore,
    RedisWorkflowStateStore,
)

__all__ = [
    "RedisBackend",
    "RedisCacheBackend",
    "RedisConnector",
    "RedisDLQBackend",
    "RedisIdempotencyStore",
    "RedisLock",
    "RedisLockManager",
    "RedisOptions",
    "RedisProgressStore",
    "RedisProgressTracker",
    "RedisRateLimiter",
    "RedisResultStore",
    "RedisSchedulerStore",
    "RedisTaskQueue",
    "RedisWorkflowStateStore",
    "backend",
    "create_queue",
]
