"""The names that tie lifecycle actions to pluggy hooks, without importing pluggy.

`lexigram.tasks.hookspecs` re-exports them beside the specs; the registry reads them from
here, so a worker with no plugin never imports pluggy (its plugin manager is made when
the first plugin is registered or found).
"""

from __future__ import annotations

PROJECT_NAME = "lexigram_tasks"
"""The pluggy project name: the marker name plugins use."""

PLUGIN_ENTRY_POINT_GROUP = "lexigram.tasks.plugins"
"""Entry-point group `HookRegistry.load_entry_point_plugins` loads plugins from."""

ACTION_HOOKS: dict[str, str] = {
    "task.queued": "lexigram_tasks_after_enqueue",
    "task.started": "lexigram_tasks_before_execute",
    "task.completed": "lexigram_tasks_after_execute",
    "task.failed": "lexigram_tasks_after_failure",
}
"""Hook action name -> the pluggy hook `HookRegistry.emit` calls for it."""
