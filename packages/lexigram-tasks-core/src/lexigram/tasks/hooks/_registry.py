"""`HookRegistry`: fans lifecycle actions out to pluggy plugins, observers and events.

The registry is an observer of the job event stream (`observe(JobEvent)`): the worker
and the producer helpers report each job event once, and the registry turns it into
the hook action ``task.queued``, ``task.started``, ``task.completed`` or
``task.failed`` (`hook_call_for`). `emit` delivers an action by hand. For each action
the registry, in this order:

1. calls the pluggy hook the action maps to (`lexigram.tasks.hookspecs.ACTION_HOOKS`)
   on every registered plugin, one implementation at a time, so a failing plugin
   neither reaches the caller nor stops the next plugin;
2. calls the in-process observers added with `add_observer` / `on`;
3. publishes the matching domain event (`TaskQueuedEvent`, `TaskCompletedEvent`,
   `TaskFailedEvent`) on its `EventBus`.

Every error raised by a plugin, observer or subscriber is logged with
``logger.exception`` and swallowed: observability must never fail a job.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from lexigram.contracts.tasks import HookRegistryProtocol, installed_entry_points
from lexigram.tasks.events import (
    COMPLETED,
    FAILED,
    QUEUED,
    STARTED,
    EventBus,
    JobEvent,
    event_routes_changed,
)
from lexigram.tasks.hooks._actions import ACTION_HOOKS, PLUGIN_ENTRY_POINT_GROUP

if TYPE_CHECKING:
    import pluggy

logger = logging.getLogger(__name__)

Observer = Callable[[Any], Awaitable[None] | None]
"""An in-process observer: called with the action's payload; may be sync or async."""


# The job-event kinds that have a hook action (as `hook_call_for` maps them).
_KIND_ACTIONS = {
    COMPLETED: "task.completed",
    STARTED: "task.started",
    FAILED: "task.failed",
    QUEUED: "task.queued",
}


_HOOKED_KINDS = frozenset(_KIND_ACTIONS)


def _hook_call_for(event: JobEvent) -> tuple[str, Any] | None:
    # The payload classes load with the first event something listens to: most workers
    # have no hook, and their registry never builds a payload.
    from lexigram.tasks.hooks._payloads import hook_call_for  # noqa: PLC0415

    return hook_call_for(event)


class HookObserver:
    """Feeds the job event stream to any `HookRegistryProtocol` (``emit(action, payload)``).

    `HookRegistry` observes the stream itself; this adapter serves other registries
    (a test recorder, your own). Events without a hook action are skipped.
    """

    __slots__ = ("hooks",)

    def __init__(self, hooks: HookRegistryProtocol) -> None:
        self.hooks = hooks

    def __repr__(self) -> str:
        return f"HookObserver({self.hooks!r})"

    async def observe(self, event: JobEvent) -> None:
        """Emit the hook action of `event`, if it has one."""
        call = _hook_call_for(event)
        if call is not None:
            await self.hooks.emit(*call)


def as_observer(hooks: HookRegistryProtocol) -> Any:
    """`hooks` itself when it observes job events (`HookRegistry`), else a `HookObserver`."""
    if callable(getattr(hooks, "observe", None)):
        return hooks
    return HookObserver(hooks)


class HookRegistry:
    """Lifecycle hook registry on pluggy; implements `HookRegistryProtocol`.

    Example:
        hooks = HookRegistry()
        hooks.load_entry_point_plugins()          # group "lexigram.tasks.plugins"
        hooks.on("task.failed")(alert_on_call)    # an in-process observer
        producer_events().add(hooks)              # "task.queued" of this process
        pool = WorkerPool(queue, handlers, hooks=hooks)

    Args:
        event_bus: Bus the domain events are published on (a new one if None).
        plugin_manager: A pluggy `PluginManager` for project ``lexigram_tasks`` to use
            (a new one if None, made when the first plugin is registered or found, so a
            registry without plugins never imports pluggy); the specs are added to it.
    """

    def __init__(
        self,
        *,
        event_bus: EventBus | None = None,
        plugin_manager: pluggy.PluginManager | None = None,
    ) -> None:
        self._pm: pluggy.PluginManager | None = None
        # The pluggy hook of each action (pluggy keeps one caller per hook).
        self._callers: dict[str, pluggy.HookCaller] = {}
        # The actions whose hook a plugin implements, as of the manager's generation
        # (-1: never looked; a manager given by the caller has no generation: always look).
        self._counted = plugin_manager is None
        self._plugins_generation = -1
        self._plugin_actions: frozenset[str] = frozenset()
        if plugin_manager is not None:
            self._adopt(plugin_manager)
        self._bus = event_bus if event_bus is not None else EventBus()
        # An EventBus's live subscriber list, read on every job without a call; None
        # for another kind of bus, which is asked through ``has_subscribers``.
        self._bus_subscribers: list[Any] | None = (
            self._bus._subscribers  # noqa: SLF001 - same package, read only
            if type(self._bus) is EventBus
            else None
        )
        self._observers: dict[str, list[Observer]] = {}
        self._observed = 0  # observers over all actions, kept by add/remove_observer

    def _adopt(self, manager: pluggy.PluginManager | None) -> pluggy.PluginManager:
        from lexigram.tasks.hooks._plugins import CountingPluginManager, prepared  # noqa: PLC0415

        pm = prepared(manager)
        self._pm = pm
        self._callers = {action: getattr(pm.hook, hook) for action, hook in ACTION_HOOKS.items()}
        self._counted = isinstance(pm, CountingPluginManager)
        return pm

    def _manager(self) -> pluggy.PluginManager:
        """The plugin manager, made (with the specs) on first use."""
        return self._pm if self._pm is not None else self._adopt(None)

    @property
    def event_kinds(self) -> frozenset[str]:
        """The job-event kinds it handles now (an `EventStream` delivers no others).

        Those that have a hook action; none while nothing would see them: no plugin, no
        observer and no subscriber on its `EventBus`. Every change to those tells the
        streams to look again (`event_routes_changed`), so a worker with no hook builds
        no event for the registry and does not call it. A plugin manager or an event bus
        of another kind cannot say when it changes: then every such kind, always.
        """
        quiet = (
            self._counted
            and self._bus_subscribers is not None
            and not (self._bus_subscribers or self._observed or self._plugged_actions())
        )
        return frozenset() if quiet else _HOOKED_KINDS

    def __repr__(self) -> str:
        return f"HookRegistry(plugins={self.plugin_names()}, observers={self.observer_count})"

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        """The underlying pluggy plugin manager (made now if it was not yet)."""
        return self._manager()

    @property
    def event_bus(self) -> EventBus:
        """The bus the domain events are published on."""
        return self._bus

    @property
    def observer_count(self) -> int:
        """Number of in-process observers, over all actions."""
        return sum(len(observers) for observers in self._observers.values())

    # -- plugins ---------------------------------------------------------------------

    def register_plugin(self, plugin: object, name: str | None = None) -> str:
        """Register a pluggy plugin (a module or object with `hookimpl` functions).

        Args:
            plugin: The plugin.
            name: Its name (pluggy derives one if None).

        Returns:
            The name it was registered under.

        Raises:
            pluggy.PluginValidationError: An implementation names no known hook or takes
                arguments the hook does not have (the plugin is not registered).
            ValueError: The plugin or the name is already registered.
        """
        pm = self._manager()
        import pluggy  # noqa: PLC0415 - loaded with the manager just made

        registered = pm.register(plugin, name)
        if registered is None:  # the name is blocked
            msg = f"Plugin name {name!r} is blocked; unblock it before registering."
            raise ValueError(msg)
        try:
            pm.check_pending()  # a misspelt hook name would be silently ignored
        except pluggy.PluginValidationError:
            pm.unregister(plugin)
            raise
        return registered

    def unregister_plugin(self, plugin: object | str) -> None:
        """Unregister a plugin, given the plugin or its name (no-op if unknown)."""
        pm = self._pm
        if pm is None:
            return
        if isinstance(plugin, str):
            if pm.has_plugin(plugin):
                pm.unregister(name=plugin)
        elif pm.is_registered(plugin):
            pm.unregister(plugin)

    def plugin_names(self) -> list[str]:
        """Return the names of the registered plugins, sorted."""
        if self._pm is None:
            return []
        return sorted(name for name, _ in self._pm.list_name_plugin())

    def load_entry_point_plugins(self, group: str = PLUGIN_ENTRY_POINT_GROUP) -> list[str]:
        """Load and register every plugin of an entry-point group.

        The entry name is the plugin name; its value names a module or object. A
        plugin already registered under that name is skipped, so calling this twice is
        harmless. A plugin that fails to import or validate is logged and skipped.

        Args:
            group: Entry-point group (default ``lexigram.tasks.plugins``).

        Returns:
            The names of the plugins newly registered.
        """
        loaded: list[str] = []
        for ep in installed_entry_points(group=group):
            pm = self._manager()
            if pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
                continue
            dist = ep.dist.name if ep.dist is not None else "an unknown distribution"
            try:
                self.register_plugin(ep.load(), name=ep.name)
            except Exception:
                logger.exception(
                    "Could not load lexigram-tasks plugin %r (%s) from %s; it is skipped. "
                    "Fix or uninstall the distribution.",
                    ep.name,
                    ep.value,
                    dist,
                )
                continue
            logger.info("Loaded lexigram-tasks plugin %r from %s.", ep.name, dist)
            loaded.append(ep.name)
        return loaded

    # -- observers -------------------------------------------------------------------

    def add_observer(self, action: str, callback: Observer) -> Callable[[], None]:
        """Call `callback(payload)` on every `emit` of `action`.

        Args:
            action: Action name, e.g. ``"task.completed"``.
            callback: Sync or async callable taking the payload.

        Returns:
            A function that removes this observer.
        """
        self._observers.setdefault(action, []).append(callback)
        self._observed += 1
        event_routes_changed()

        def remove() -> None:
            self.remove_observer(action, callback)

        return remove

    def remove_observer(self, action: str, callback: Observer) -> bool:
        """Remove an observer; True if it was registered."""
        observers = self._observers.get(action, [])
        if callback in observers:
            observers.remove(callback)
            self._observed -= 1
            event_routes_changed()
            return True
        return False

    def on(self, action: str) -> Callable[[Observer], Observer]:
        """Decorator form of `add_observer`.

        Example:
            @hooks.on("task.failed")
            async def alert(payload: TaskFailedHook) -> None: ...
        """

        def decorate(callback: Observer) -> Observer:
            self.add_observer(action, callback)
            return callback

        return decorate

    # -- emitting --------------------------------------------------------------------

    def observe(self, event: JobEvent) -> Awaitable[None] | None:
        """Deliver a job event as its hook action (`EventObserver` method).

        Nothing is built when nothing listens to the action (no plugin implements its
        hook, no observer, no event-bus subscriber): the worker reports two events per
        job, and most workers have no hook at all. Returns the delivery to await, or
        None when there is nothing to deliver (not even a coroutine is made then).
        """
        action = _KIND_ACTIONS.get(event.kind)
        if action is None or not self.listened(action):
            return None
        call = _hook_call_for(event)
        return self.emit(*call) if call is not None else None

    @property
    def listening(self) -> bool:
        """True when anything would see a job event (see `EventStream.listening`)."""
        return self._subscribed() or self._observed > 0 or bool(self._plugged_actions())

    def listened(self, action: str) -> bool:
        """True when a plugin, an observer or an event-bus subscriber would see `action`."""
        if self._subscribed() or self._observers.get(action):
            return True
        return action in self._plugged_actions()

    def _subscribed(self) -> bool:
        subscribers = self._bus_subscribers
        if subscribers is None:
            return bool(getattr(self._bus, "has_subscribers", True))
        return bool(subscribers)

    def _plugged_actions(self) -> frozenset[str]:
        """The actions whose hook a plugin implements (looked at again after a change)."""
        if self._pm is None:
            return frozenset()
        generation: int | None = getattr(self._pm, "generation", None) if self._counted else None
        if generation is None or generation != self._plugins_generation:
            self._plugin_actions = frozenset(
                action for action, caller in self._callers.items() if caller.get_hookimpls()
            )
            self._plugins_generation = -1 if generation is None else generation
        return self._plugin_actions

    async def emit(self, action: str, payload: Any) -> None:
        """Deliver `payload` to the plugins, observers and event subscribers of `action`.

        Never raises because of an observer: each failure is logged and skipped.

        Args:
            action: ``"task.queued"``, ``"task.started"``, ``"task.completed"``,
                ``"task.failed"``, or any custom action (observers only).
            payload: The action's payload (`TaskEnqueuedHook`, ...).
        """
        caller = self._callers.get(action)  # none before a plugin manager is made
        if caller is not None:
            await self._call_plugins(caller, payload)
        for callback in list(self._observers.get(action, ())):
            try:
                result = callback(payload)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("Hook observer %r of %r failed.", callback, action)
        if not self._subscribed():
            return
        # Loaded with the first subscriber: a worker whose bus nobody listens to (the
        # command line's) never builds a domain event.
        from lexigram.tasks._domain_events import domain_event_of  # noqa: PLC0415

        try:
            event = domain_event_of(action, payload)
        except Exception:
            logger.exception("Could not build the event of %r from %r.", action, payload)
            return
        if event is not None:
            await self._bus.publish(event)

    async def _call_plugins(self, caller: pluggy.HookCaller, payload: Any) -> None:
        hook_name = caller.name
        impls = caller.get_hookimpls()
        if not impls:
            return
        if any(impl.hookwrapper or impl.wrapper for impl in impls):
            # Wrappers need pluggy's own call loop; isolation is then per hook call.
            try:
                results = caller(payload=payload)
                for result in results:
                    if inspect.isawaitable(result):
                        await result
            except Exception:
                logger.exception("A lexigram-tasks plugin failed in hook %s.", hook_name)
            return
        kwargs = {"payload": payload}
        # pluggy's call order: last registered first, tryfirst before trylast.
        for impl in reversed(impls):
            try:
                result = impl.function(*(kwargs[arg] for arg in impl.argnames))
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception(
                    "lexigram-tasks plugin %r failed in hook %s; the other plugins still run.",
                    impl.plugin_name,
                    hook_name,
                )
