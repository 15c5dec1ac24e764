"""Dead-letter queues: sync `DeadLetterQueue`, async and pluggable `PersistentDeadLetterQueue`."""

from __future__ import annotations

from lexigram.contracts.tasks import FailureRecord
from lexigram.tasks.dlq._persistent import DLQBackend, InMemoryDLQBackend, PersistentDeadLetterQueue
from lexigram.tasks.dlq._queue import DeadLetterQueue

__all__ = [
    "DLQBackend",
    "DeadLetterQueue",
    "FailureRecord",
    "InMemoryDLQBackend",
    "PersistentDeadLetterQueue",
]
