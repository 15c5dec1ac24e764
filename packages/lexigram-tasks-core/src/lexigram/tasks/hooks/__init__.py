"""Lifecycle hooks: the payloads observers receive, and the pluggy-based `HookRegistry`.

Hook specs live in `lexigram.tasks.hookspecs`; plugins load from the entry-point group
``lexigram.tasks.plugins``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lexigram.contracts.tasks import HookRegistryProtocol
from lexigram.tasks._lazy import lazy_exports
from lexigram.tasks.hooks._registry import HookObserver, HookRegistry, Observer, as_observer

# The payload classes load on first use (the block below lists them): a registry builds
# payloads only for an action something listens to.
if TYPE_CHECKING:
    from lexigram.tasks.hooks._payloads import (
        TaskCompletedHook,
        TaskEnqueuedHook,
        TaskFailedHook,
        TaskStartedHook,
        hook_call_for,
    )

__getattr__, __dir__ = lazy_exports(__name__)

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
