"""Lifecycle hooks: the payloads observers receive for each task event."""

from __future__ import annotations

from lexigram.tasks.hooks._payloads import (
    TaskCompletedHook,
    TaskEnqueuedHook,
    TaskFailedHook,
    TaskStartedHook,
)

__all__ = [
    "TaskCompletedHook",
    "TaskEnqueuedHook",
    "TaskFailedHook",
    "TaskStartedHook",
]
