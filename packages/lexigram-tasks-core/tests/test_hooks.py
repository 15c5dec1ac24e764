from __future__ import annotations

import logging

import pluggy
import pytest

from lexigram.contracts.tasks import HookRegistryProtocol
from lexigram.tasks import _domain_events as domain_events
from lexigram.tasks import hookspecs
from lexigram.tasks.events import (
    DomainEvent,
    EventBus,
    EventStream,
    TaskCompletedEvent,
    TaskFailedEvent,
    TaskQueuedEvent,
)
from lexigram.tasks.hooks import (
    HookRegistry,
    TaskCompletedHook,
    TaskEnqueuedHook,
    TaskFailedHook,
    TaskStartedHook,
)
from lexigram.tasks.hookspecs import hookimpl

QUEUED = TaskEnqueuedHook(task_name="email", queue_name="q", task_id="j1")
STARTED = TaskStartedHook(task_name="email", task_id="j1", worker_id="worker-1")
COMPLETED = TaskCompletedHook(task_name="email", task_id="j1", worker_id="worker-1")
FAILED = TaskFailedHook(task_name="email", task_id="j1", reason="boom", worker_id="worker-1")


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    @hookimpl
    def lexigram_tasks_after_enqueue(self, payload: TaskEnqueuedHook) -> None:
        self.calls.append(("after_enqueue", payload))

    @hookimpl
    def lexigram_tasks_before_execute(self, payload: TaskStartedHook) -> None:
        self.calls.append(("before_execute", payload))

    @hookimpl
    async def lexigram_tasks_after_execute(self, payload: TaskCompletedHook) -> None:
        self.calls.append(("after_execute", payload))  # async implementations are awaited

    @hookimpl
    def lexigram_tasks_after_failure(self, payload: TaskFailedHook) -> None:
        self.calls.append(("after_failure", payload))


def test_hook_names_follow_one_pattern_and_match_the_specs():
    assert hookspecs.ACTION_HOOKS == {
        "task.queued": "lexigram_tasks_after_enqueue",
        "task.started": "lexigram_tasks_before_execute",
        "task.completed": "lexigram_tasks_after_execute",
        "task.failed": "lexigram_tasks_after_failure",
    }
    for name in hookspecs.ACTION_HOOKS.values():
        assert callable(getattr(hookspecs, name))
    assert hookspecs.PLUGIN_ENTRY_POINT_GROUP == "lexigram.tasks.plugins"
    assert hookspecs.PROJECT_NAME == "lexigram_tasks"


async def test_emit_calls_the_matching_pluggy_hook_for_each_action():
    hooks = HookRegistry()
    assert isinstance(hooks, HookRegistryProtocol)
    recorder = Recorder()
    assert hooks.register_plugin(recorder, name="recorder") == "recorder"
    for action, payload in [
        ("task.queued", QUEUED),
        ("task.started", STARTED),
        ("task.completed", COMPLETED),
        ("task.failed", FAILED),
    ]:
        await hooks.emit(action, payload)
    assert recorder.calls == [
        ("after_enqueue", QUEUED),
        ("before_execute", STARTED),
        ("after_execute", COMPLETED),
        ("after_failure", FAILED),
    ]
    assert hooks.plugin_names() == ["recorder"]
    hooks.unregister_plugin("recorder")
    await hooks.emit("task.queued", QUEUED)
    assert len(recorder.calls) == 4


async def test_a_failing_plugin_is_logged_and_does_not_stop_the_others(caplog):
    hooks = HookRegistry()
    seen: list[str] = []

    class Broken:
        @hookimpl(tryfirst=True)
        def lexigram_tasks_after_execute(self, payload: TaskCompletedHook) -> None:
            msg = "plugin bug"
            raise RuntimeError(msg)

    class Fine:
        @hookimpl
        def lexigram_tasks_after_execute(self) -> None:  # may omit the payload
            seen.append("fine")

    hooks.register_plugin(Broken(), name="broken")
    hooks.register_plugin(Fine(), name="fine")
    with caplog.at_level(logging.ERROR, logger="lexigram.tasks.hooks._registry"):
        await hooks.emit("task.completed", COMPLETED)  # must not raise
    assert seen == ["fine"]
    assert "plugin bug" in caplog.text
    assert "'broken'" in caplog.text


async def test_wrapper_plugins_go_through_pluggy_and_errors_are_still_contained(caplog):
    hooks = HookRegistry()
    order: list[str] = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def lexigram_tasks_after_failure(self, payload: TaskFailedHook):
            order.append("before")
            result = yield
            order.append("after")
            return result

    class Inner:
        @hookimpl
        def lexigram_tasks_after_failure(self, payload: TaskFailedHook) -> None:
            order.append(f"inner:{payload.reason}")
            msg = "inner bug"
            raise ValueError(msg)

    hooks.register_plugin(Wrapper(), name="wrapper")
    hooks.register_plugin(Inner(), name="inner")
    with caplog.at_level(logging.ERROR):
        await hooks.emit("task.failed", FAILED)
    assert order == ["before", "inner:boom"]
    assert "inner bug" in caplog.text


def test_register_plugin_rejects_misspelt_hooks_and_duplicates():
    hooks = HookRegistry()

    class Typo:
        @hookimpl
        def lexigram_tasks_after_exec(self, payload: object) -> None: ...

    with pytest.raises(pluggy.PluginValidationError):
        hooks.register_plugin(Typo(), name="typo")
    assert hooks.plugin_names() == []

    class BadArgs:
        @hookimpl
        def lexigram_tasks_after_execute(self, payload: object, extra: object) -> None: ...

    with pytest.raises(pluggy.PluginValidationError):
        hooks.register_plugin(BadArgs(), name="bad")
    recorder = Recorder()
    hooks.register_plugin(recorder, name="r")
    with pytest.raises(ValueError, match="already registered"):
        hooks.register_plugin(recorder, name="r2")
    hooks.unregister_plugin(recorder)
    hooks.unregister_plugin(recorder)  # no-op
    assert hooks.plugin_names() == []


def test_plugin_manager_must_be_for_our_project():
    with pytest.raises(ValueError, match="lexigram_tasks"):
        HookRegistry(plugin_manager=pluggy.PluginManager("other"))
    pm = pluggy.PluginManager("lexigram_tasks")
    assert HookRegistry(plugin_manager=pm).plugin_manager is pm


async def test_observers_sync_and_async_in_order_and_removable(caplog):
    hooks = HookRegistry()
    seen: list[str] = []

    @hooks.on("task.completed")
    async def first(payload: TaskCompletedHook) -> None:
        seen.append(f"first:{payload.task_id}")

    def broken(payload: object) -> None:
        msg = "observer bug"
        raise RuntimeError(msg)

    hooks.add_observer("task.completed", broken)
    remove = hooks.add_observer("task.completed", lambda p: seen.append("last"))
    hooks.add_observer("custom.action", lambda p: seen.append(f"custom:{p}"))
    with caplog.at_level(logging.ERROR):
        await hooks.emit("task.completed", COMPLETED)
        await hooks.emit("custom.action", 7)
    assert seen == ["first:j1", "last", "custom:7"]
    assert "observer bug" in caplog.text
    assert hooks.observer_count == 4
    remove()
    assert hooks.remove_observer("task.completed", broken)
    assert not hooks.remove_observer("task.completed", broken)
    assert hooks.observer_count == 2


async def test_emit_publishes_domain_events():
    hooks = HookRegistry()
    events: list[DomainEvent] = []
    hooks.event_bus.subscribe(DomainEvent, events.append)
    await hooks.emit("task.queued", QUEUED)
    await hooks.emit("task.started", STARTED)  # no event for "started"
    await hooks.emit("task.completed", COMPLETED)
    await hooks.emit("task.failed", FAILED)
    expected: list[type[DomainEvent]] = [TaskQueuedEvent, TaskCompletedEvent, TaskFailedEvent]
    assert [type(e) for e in events] == expected
    queued, completed, failed = events
    assert isinstance(queued, TaskQueuedEvent)
    assert (queued.task_id, queued.queue_name) == ("j1", "q")
    assert isinstance(completed, TaskCompletedEvent)
    assert (completed.task_id, completed.worker_id) == ("j1", "worker-1")
    assert isinstance(failed, TaskFailedEvent)
    assert (failed.task_id, failed.error) == ("j1", "boom")


async def test_emit_with_a_foreign_payload_logs_instead_of_raising(caplog):
    bus = EventBus()
    seen: list[DomainEvent] = []
    bus.subscribe(DomainEvent, seen.append)
    hooks = HookRegistry(event_bus=bus)
    with caplog.at_level(logging.ERROR):
        await hooks.emit("task.queued", {"not": "a payload"})
    assert "Could not build the event" in caplog.text
    assert seen == []


async def test_no_domain_event_is_built_while_no_one_subscribes(monkeypatch):
    built: list[str] = []
    monkeypatch.setattr(domain_events, "domain_event_of", lambda action, _: built.append(action))
    bus = EventBus()
    hooks = HookRegistry(event_bus=bus)
    await hooks.emit("task.queued", {"not": "a payload"})
    assert built == []
    bus.subscribe(DomainEvent, lambda _: None)
    await hooks.emit("task.queued", {"not": "a payload"})
    assert built == ["task.queued"]


def _listening(source: HookRegistry | EventStream) -> bool:
    """What `source.listening` says now.

    Read through a call: mypy keeps an assert's narrowing of the attribute across the calls
    that change it, and would take the opposite assert that follows for unreachable.
    """
    return source.listening


async def test_a_registry_nobody_listens_to_says_so_and_wakes_up_for_each_kind_of_listener():
    hooks = HookRegistry()
    stream = EventStream([hooks])
    assert not _listening(hooks)
    assert not _listening(stream)

    class Plugin:
        @hookimpl
        def lexigram_tasks_after_execute(self, payload):
            del payload

    hooks.register_plugin(Plugin())
    assert hooks.listened("task.completed")
    assert not hooks.listened("task.failed")
    assert _listening(stream)

    observed = HookRegistry()
    observed.on("task.failed")(lambda payload: None)
    assert _listening(observed)

    subscribed = HookRegistry()
    subscribed.event_bus.subscribe(DomainEvent, lambda event: None)
    assert _listening(subscribed)
    assert EventStream([object.__new__(_Plain)]).listening


def test_listening_follows_plugins_registered_after_it_was_asked_by_any_path():
    import pluggy

    hooks = HookRegistry()
    assert not _listening(hooks)  # asked (and remembered) before any plugin

    class Plugin:
        @hookimpl
        def lexigram_tasks_before_execute(self, payload):
            del payload

    plugin = Plugin()
    hooks.plugin_manager.register(plugin, "direct")  # past the registry, on its manager
    assert _listening(hooks)
    hooks.plugin_manager.set_blocked("direct")  # unregisters it
    assert not _listening(hooks)
    hooks.register_plugin(Plugin(), "again")
    assert _listening(hooks)
    hooks.unregister_plugin("again")
    assert not _listening(hooks)

    # A manager of the caller's own is looked at every time.
    own = pluggy.PluginManager("lexigram_tasks")
    given = HookRegistry(plugin_manager=own)
    assert not _listening(given)
    own.register(Plugin(), "late")
    assert _listening(given)


class _Plain:
    def observe(self, event):
        del event
