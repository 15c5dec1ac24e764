"""HandlerRegistry: registration forms, lookups, and execute for sync and async handlers."""

from __future__ import annotations

import threading

import pytest

from lexigram.contracts.tasks import Job, TaskExecutorProtocol, TaskNotFoundError
from lexigram.tasks.execution import HandlerRegistry


async def test_registry_register_as_decorator_and_direct_call() -> None:
    registry = HandlerRegistry()

    @registry.register("send_email")
    async def send_email(to: str) -> str:
        return f"sent to {to}"

    def resize(width: int) -> int:
        return width * 2

    assert registry.register("resize", resize) is resize
    assert registry.get("send_email") is send_email
    assert registry.get_handler("resize") is resize
    assert registry.list_handlers() == ["send_email", "resize"]
    assert registry.to_dict() == {"send_email": send_email, "resize": resize}
    assert "resize" in registry
    assert len(registry) == 2
    assert list(registry) == ["send_email", "resize"]
    assert registry.has("resize")
    assert set(registry.keys()) == {"send_email", "resize"}
    assert dict(registry.items())["resize"] is resize


async def test_registry_satisfies_the_executor_protocol() -> None:
    registry = HandlerRegistry()
    assert isinstance(registry, TaskExecutorProtocol)
    registry.register_handler("noop", lambda: None)
    assert registry.get_handler("noop") is not None
    assert registry.get_handler("missing") is None
    assert registry.get("missing", "fallback") == "fallback"


async def test_registry_execute_async_handler_with_args_and_kwargs() -> None:
    registry = HandlerRegistry()

    async def add(a: int, b: int, *, scale: int = 1) -> int:
        return (a + b) * scale

    registry.register("add", add)
    assert await registry.execute(Job(name="add", args=(1, 2), kwargs={"scale": 10})) == 30


async def test_registry_execute_sync_handler_runs_in_a_thread() -> None:
    registry = HandlerRegistry()
    seen: list[str] = []

    def work(x: int) -> int:
        seen.append(threading.current_thread().name)
        return x + 1

    registry.register("work", work)
    assert await registry.execute(Job(name="work", args=(41,))) == 42
    assert seen
    assert seen[0] != threading.main_thread().name


async def test_registry_execute_unknown_task_names_it_and_the_registered_ones() -> None:
    registry = HandlerRegistry()
    registry.register("known", lambda: None)
    with pytest.raises(TaskNotFoundError) as info:
        await registry.execute(Job(name="unknown"))
    message = info.value.message
    assert "'unknown'" in message
    assert "'known'" in message
    assert "register" in message


async def test_registry_remove_unregister_and_clear() -> None:
    registry = HandlerRegistry()
    registry.register("a", lambda: None)
    registry.register("b", lambda: None)
    assert registry.remove("a") is True
    assert registry.remove("a") is False
    assert registry.unregister("b") is True
    registry.register("c", lambda: None)
    registry.clear()
    assert len(registry) == 0


async def test_registry_rejects_empty_names_and_non_callables() -> None:
    registry = HandlerRegistry()
    with pytest.raises(TypeError, match="non-empty"):
        registry.register("", lambda: None)
    with pytest.raises(TypeError, match="not callable"):
        registry.register("x", 42)  # type: ignore[call-overload]


async def test_registry_later_registration_replaces_the_handler() -> None:
    registry = HandlerRegistry()

    async def first() -> int:
        return 1

    async def second() -> int:
        return 2

    registry.register("t", first)
    registry.register("t", second)
    assert await registry.execute(Job(name="t")) == 2
    assert "HandlerRegistry" in repr(registry)
