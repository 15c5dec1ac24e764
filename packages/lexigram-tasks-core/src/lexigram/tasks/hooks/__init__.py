"""Lifecycle hooks: the payloads observers receive, and the pluggy-based `HookRegistry`.

Hook specs live in `lexigram.tasks.hookspecs`; plugins load from the entry-point group
``lexigram.tasks.plugins``.
"""

from __future__ import annotations

from lexigram.contracts.tasks import HookRegistryProtocol
from lexigram.tasks.hooks._payloads import (
    TaskCompletedHook,
    TaskEnqueuedHook,
    TaskFailedHook,
    TaskStartedHook,
)
from lexigram.tasks.hooks._registry import HookRegistry, Observer

__all__ = [
    "HookRegistry",
    "HookRegistryProtocol",
    "Observer",
    "TaskCompletedHook",
    "TaskEnqueuedHook",
    "TaskFailedHook",
    "TaskStartedHook",
]
