"""Idempotency: run a job once per idempotency key and reuse its result."""

from __future__ import annotations

from lexigram.contracts.tasks import (
    IdempotencyResult,
    IdempotencyResultStatus,
    IdempotencyStoreProtocol,
)
from lexigram.tasks.idempotency._manager import (
    DEFAULT_TTL,
    IdempotencyManager,
    IdempotentTaskManager,
)
from lexigram.tasks.idempotency._store import InMemoryIdempotencyStore

__all__ = [
    "DEFAULT_TTL",
    "IdempotencyManager",
    "IdempotencyResult",
    "IdempotencyResultStatus",
    "IdempotencyStoreProtocol",
    "IdempotentTaskManager",
    "InMemoryIdempotencyStore",
]
