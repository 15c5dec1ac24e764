"""The pluggy plugin manager a `HookRegistry` makes when it first needs one."""

from __future__ import annotations

from typing import Any

import pluggy

from lexigram.tasks import hookspecs
from lexigram.tasks.events import event_routes_changed


class CountingPluginManager(pluggy.PluginManager):
    """A `PluginManager` that counts (un)registrations, so "does a plugin listen?" is cached.

    Every registration path (`register`, entry points, `set_blocked`) goes through
    `register` or `unregister`. The worker asks twice per job; the count spares it a
    look at every hook's implementations each time.
    """

    generation = 0

    def register(self, plugin: object, name: str | None = None) -> str | None:
        self.generation += 1
        try:
            return super().register(plugin, name)
        finally:
            event_routes_changed()  # a registry of this manager may listen now

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        self.generation += 1
        try:
            return super().unregister(plugin, name)
        finally:
            event_routes_changed()


def prepared(manager: pluggy.PluginManager | None) -> pluggy.PluginManager:
    """`manager` (a new counting one if None) with the lifecycle hook specs added.

    Raises:
        ValueError: `manager` is for another pluggy project than ``lexigram_tasks``.
    """
    pm = manager if manager is not None else CountingPluginManager(hookspecs.PROJECT_NAME)
    if pm.project_name != hookspecs.PROJECT_NAME:
        msg = (
            f"HookRegistry needs a pluggy PluginManager for project "
            f"{hookspecs.PROJECT_NAME!r}, got one for {pm.project_name!r}. Create it "
            f"with pluggy.PluginManager({hookspecs.PROJECT_NAME!r})."
        )
        raise ValueError(msg)
    pm.add_hookspecs(hookspecs)
    return pm
