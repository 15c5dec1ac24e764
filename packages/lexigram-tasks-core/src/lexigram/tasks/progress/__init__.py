"""Progress reporting: per-job trackers, stores, and the live `InMemoryProgressTracker`.

`ProgressTracker` is what an `async def` handler awaits; `SyncProgressTracker` is its
blocking form, for a `def` handler.
"""

from __future__ import annotations

from lexigram.contracts.tasks import (
    ProgressInfo,
    ProgressSnapshot,
    ProgressStatus,
    snapshot_from_result,
)
from lexigram.tasks.progress._stores import (
    CacheBackendProgressStore,
    InMemoryProgressStore,
    ProgressStore,
)
from lexigram.tasks.progress._sync import SyncProgressTracker
from lexigram.tasks.progress._tracker import (
    InMemoryProgressTracker,
    ProgressTracker,
)

__all__ = [
    "CacheBackendProgressStore",
    "InMemoryProgressStore",
    "InMemoryProgressTracker",
    "ProgressInfo",
    "ProgressSnapshot",
    "ProgressStatus",
    "ProgressStore",
    "ProgressTracker",
    "SyncProgressTracker",
    "snapshot_from_result",
]
