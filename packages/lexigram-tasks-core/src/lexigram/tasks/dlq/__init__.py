"""Dead-letter queues: sync `DeadLetterQueue`, async and pluggable `PersistentDeadLetterQueue`.

Both satisfy the contract's `DLQProtocol` (each method returns its value, or an
awaitable of it), so the worker and tools take either; `PersistentDeadLetterQueue`
keeps its records in a backend's `DLQBackendProtocol` storage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lexigram.contracts.tasks import DLQProtocol, FailureRecord
from lexigram.tasks.dlq._persistent import DLQBackend, InMemoryDLQBackend, PersistentDeadLetterQueue
from lexigram.tasks.dlq._queue import DeadLetterQueue

if TYPE_CHECKING:
    # Checked by mypy: both classes must keep satisfying the protocol.
    _sync_dlq: DLQProtocol = DeadLetterQueue()
    _persistent_dlq: DLQProtocol = PersistentDeadLetterQueue()

__all__ = [
    "DLQBackend",
    "DLQProtocol",
    "DeadLetterQueue",
    "FailureRecord",
    "InMemoryDLQBackend",
    "PersistentDeadLetterQueue",
]
