"""Progress reporting: per-job `ProgressTracker`, stores, and the live `InMemoryProgressTracker`."""

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
    "snapshot_from_result",
]
