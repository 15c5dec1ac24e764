"""Pluggy hook specifications for lifecycle plugins (project name ``lexigram_tasks``).

A plugin is a module or object with functions named like the specs below, marked with
`hookimpl`; it is registered on a `HookRegistry` by hand (`register_plugin`) or
through the entry-point group ``lexigram.tasks.plugins`` (`load_entry_point_plugins`):

    # my_plugin.py
    from lexigram.tasks.hookspecs import hookimpl

    @hookimpl
    def lexigram_tasks_after_execute(payload):
        print("done:", payload.task_id)

    # pyproject.toml
    [project.entry-points."lexigram.tasks.plugins"]
    my_plugin = "my_plugin"

Hook names follow one pattern: ``lexigram_tasks_<before|after>_<event>``. Each takes one
argument, ``payload`` (an implementation may omit it). An implementation may be a
plain function or an ``async def``; `HookRegistry.emit` awaits the latter. An error in
one implementation is logged and never reaches the task or the other plugins.

| action             | hook                             | payload            |
|--------------------|----------------------------------|--------------------|
| ``task.queued``    | `lexigram_tasks_after_enqueue`   | `TaskEnqueuedHook` |
| ``task.started``   | `lexigram_tasks_before_execute`  | `TaskStartedHook`  |
| ``task.completed`` | `lexigram_tasks_after_execute`   | `TaskCompletedHook`|
| ``task.failed``    | `lexigram_tasks_after_failure`   | `TaskFailedHook`   |
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

from lexigram.tasks.hooks._actions import ACTION_HOOKS, PLUGIN_ENTRY_POINT_GROUP, PROJECT_NAME

if TYPE_CHECKING:  # annotations only: the payload classes load when first used
    from lexigram.tasks.hooks import (
        TaskCompletedHook,
        TaskEnqueuedHook,
        TaskFailedHook,
        TaskStartedHook,
    )

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
"""Marker for the specs in this module."""

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marker plugins put on their hook implementations."""


@hookspec
def lexigram_tasks_after_enqueue(payload: TaskEnqueuedHook) -> Any:
    """Called after a job was added to a queue (action ``task.queued``).

    Not called for an enqueue that was deduplicated (same job id or idempotency key).

    Args:
        payload: Task name, queue name and the new job's id.
    """


@hookspec
def lexigram_tasks_before_execute(payload: TaskStartedHook) -> Any:
    """Called when a worker starts a job's handler (action ``task.started``).

    Called for every attempt, retries included.

    Args:
        payload: Task name, job id and worker id.
    """


@hookspec
def lexigram_tasks_after_execute(payload: TaskCompletedHook) -> Any:
    """Called after a job's handler succeeded (action ``task.completed``).

    Args:
        payload: Task name, job id and worker id.
    """


@hookspec
def lexigram_tasks_after_failure(payload: TaskFailedHook) -> Any:
    """Called when a job failed for good and was dead-lettered (action ``task.failed``).

    Attempts that are retried do not call it.

    Args:
        payload: Task name, job id, the error, and worker id.
    """


__all__ = [
    "ACTION_HOOKS",
    "PLUGIN_ENTRY_POINT_GROUP",
    "PROJECT_NAME",
    "hookimpl",
    "hookspec",
    "lexigram_tasks_after_enqueue",
    "lexigram_tasks_after_execute",
    "lexigram_tasks_after_failure",
    "lexigram_tasks_before_execute",
]
