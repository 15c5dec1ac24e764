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
    hook_call_for,
)
from lexigram.tasks.hooks._registry import HookObserver, HookRegistry, Observer, as_observer

__all__ = [
    "HookObserver",
    "HookRegistry",
    "HookRegistryProtocol",
    "Observer",
    "TaskCompletedHook",
    "TaskEnqueuedHook",
    "TaskFailedHook",
    "TaskStartedHook",
    "as_observer",
    "hook_call_for",
]
