"""`HandlerRegistry`: task name -> handler, usable wherever a `TaskExecutorProtocol` is expected."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, ItemsView, Iterator, KeysView
from typing import Any, TypeVar, overload

from lexigram.contracts.tasks import TaskNotFoundError
from lexigram.tasks.execution._options import TaskOptions, options_of

_F = TypeVar("_F", bound=Callable[..., Any])


def unknown_task_error(name: str, registered: list[str]) -> TaskNotFoundError:
    """Build the error for a job whose name has no handler (shared with the worker)."""
    shown = ", ".join(repr(n) for n in sorted(registered)[:20]) or "none"
    if len(registered) > 20:  # noqa: PLR2004 - keep the message readable
        shown += f", ... ({len(registered)} in all)"
    msg = (
        f"No handler is registered for task {name!r} (registered: {shown}). Register one "
        f"with registry.register({name!r}, handler) or @task(name={name!r}) and "
        "TaskProvider.register_handler, or fix the job's name."
    )
    return TaskNotFoundError(msg, details={"task_name": name})


class HandlerRegistry:
    """Registry for task handlers that also satisfies the `TaskExecutorProtocol` contract.

    Maps task names to handler functions (sync or async) and their `TaskOptions`. Workers
    look handlers up on every job, so a handler registered after a pool started is used
    straight away, and each job runs with the options of the task it names.

    Example:
        registry = HandlerRegistry()

        @registry.register("send_email")
        async def send_email(to: str) -> None: ...

        handler = registry.get("send_email")
    """

    def __init__(self) -> None:
        self._handlers: dict[str, Callable[..., Any]] = {}
        # One (handler, options) pair per task, replaced whole on every registration: a
        # worker caches what it derived from a pair for as long as `lookup` returns it.
        self._entries: dict[str, tuple[Callable[..., Any], TaskOptions]] = {}

    def __repr__(self) -> str:
        return f"HandlerRegistry({sorted(self._handlers)!r})"

    @overload
    def register(
        self, name: str, handler: None = None, *, options: TaskOptions | None = None
    ) -> Callable[[_F], _F]: ...
    @overload
    def register(self, name: str, handler: _F, *, options: TaskOptions | None = None) -> _F: ...
    def register(
        self, name: str, handler: Any = None, *, options: TaskOptions | None = None
    ) -> Any:
        """Register a task handler, directly or as a decorator.

        Args:
            name: Task name (what `Job.name` carries).
            handler: Handler function; omit it to use the method as a decorator.
            options: The task's options (default: those of a ``@task`` function, else
                `DEFAULT_OPTIONS`); every job of the task runs with them.

        Returns:
            The handler (direct call) or a decorator that registers and returns it.

        Raises:
            TypeError: `name` is empty or `handler` is not callable.
        """
        if not name:
            msg = f"Task name must be a non-empty string, got {name!r}. Pass the task's name."
            raise TypeError(msg)
        if handler is None:

            def decorator(func: _F) -> _F:
                self.register(name, func, options=options)
                return func

            return decorator
        if not callable(handler):
            msg = f"Handler for task {name!r} is not callable: {handler!r}. Pass a function."
            raise TypeError(msg)
        self._handlers[name] = handler
        self._entries[name] = (handler, options if options is not None else options_of(handler))
        return handler

    def lookup(self, name: str) -> tuple[Callable[..., Any], TaskOptions] | None:
        """Return the handler of task `name` with its options, or None when unknown.

        The same pair object is returned until the task is registered again.
        """
        return self._entries.get(name)

    def lookup_function(self) -> Callable[[str], tuple[Callable[..., Any], TaskOptions] | None]:
        """Return a function that does what `lookup` does, for callers that ask per job.

        It is the mapping's own look-up, with no Python call around it; it stays valid
        for the registry's lifetime (registrations replace entries, never the mapping).
        """
        return self._entries.get

    def options(self, name: str) -> TaskOptions | None:
        """Return the options of task `name`, or None when no such task is registered."""
        entry = self._entries.get(name)
        return None if entry is None else entry[1]

    def register_handler(self, task_name: str, handler: Any) -> None:
        """Register a handler for a task type (`TaskExecutorProtocol` method).

        Args:
            task_name: Name of the task type.
            handler: Callable (sync or async) that handles the task.
        """
        self.register(task_name, handler)

    def get_handler(self, task_name: str) -> Any | None:
        """Return the handler for a task type, or None (`TaskExecutorProtocol` method).

        Args:
            task_name: Name of the task type.
        """
        return self._handlers.get(task_name)

    async def execute(self, task: Any) -> Any:
        """Run `task` with its registered handler (`TaskExecutorProtocol` method).

        Calls the handler with ``*task.args, **task.kwargs``; a sync handler runs in a
        thread so that it does not block the event loop.

        Args:
            task: Object with `name`, `args` and `kwargs` attributes (e.g. a `Job`).

        Returns:
            The handler's result.

        Raises:
            TaskNotFoundError: No handler is registered for `task.name`.
        """
        handler = self._handlers.get(task.name)
        if handler is None:
            raise unknown_task_error(task.name, list(self._handlers))
        args = tuple(getattr(task, "args", ()))
        kwargs = dict(getattr(task, "kwargs", {}))
        if inspect.iscoroutinefunction(inspect.unwrap(handler)) or inspect.iscoroutinefunction(
            getattr(handler, "_func", None)
        ):
            return await handler(*args, **kwargs)
        result = await asyncio.to_thread(handler, *args, **kwargs)
        if inspect.isawaitable(result):
            return await result
        return result

    def remove(self, name: str) -> bool:
        """Remove a handler; True if one was registered under `name`."""
        self._entries.pop(name, None)
        return self._handlers.pop(name, None) is not None

    def list_handlers(self) -> list[str]:
        """Return the names of all registered handlers."""
        return list(self._handlers)

    def to_dict(self) -> dict[str, Callable[..., Any]]:
        """Return a copy of the name -> handler mapping."""
        return dict(self._handlers)

    # -- the generic registry API ------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """Return the handler registered under `key`, or `default`."""
        return self._handlers.get(key, default)

    def has(self, key: str) -> bool:
        """Return True if a handler is registered under `key`."""
        return key in self._handlers

    def unregister(self, key: str) -> bool:
        """Remove the handler under `key`; True if there was one (alias of `remove`)."""
        return self.remove(key)

    def clear(self) -> None:
        """Remove every handler."""
        self._handlers.clear()
        self._entries.clear()

    def keys(self) -> KeysView[str]:
        """Return the registered task names."""
        return self._handlers.keys()

    def items(self) -> ItemsView[str, Callable[..., Any]]:
        """Return (name, handler) pairs."""
        return self._handlers.items()

    def __contains__(self, key: object) -> bool:
        return key in self._handlers

    def __len__(self) -> int:
        return len(self._handlers)

    def __iter__(self) -> Iterator[str]:
        return iter(self._handlers)
