"""Task handler classes: what `TasksModule.scope(...)` accepts and `TaskProvider.boot` wires.

A class is a task handler class when either

* it sets a class attribute ``task_name`` (a non-empty string) and defines ``handle``
  (or ``__call__``): jobs named ``task_name`` run ``instance.handle(*args, **kwargs)``;
  an optional class attribute ``cron`` also schedules it; or
* it has methods decorated with ``@task(...)`` / ``@scheduled(...)``: each runs as the
  bound method under its task name (and ``@scheduled`` ones are scheduled).

At boot the provider looks through the container's bindings for such classes (a module
lists them in ``providers``, which binds them as transient services), builds one
instance of each by constructor injection, and registers its bound methods. Parameters
of those methods that the job does not supply are resolved from the container per job,
after the job's positional and keyword arguments have been bound.
"""

from __future__ import annotations

import inspect
import logging
import types
from collections.abc import Callable
from typing import Any, NamedTuple

from lexigram.tasks.decorators import TaskFunction, is_method_of
from lexigram.tasks.execution import TaskOptions

logger = logging.getLogger(__name__)

TASK_NAME_ATTRIBUTE = "task_name"
"""Class attribute naming the task a handler class handles."""

CRON_ATTRIBUTE = "cron"
"""Optional class attribute: a cron expression that schedules the handler class."""

_ENTRY_METHODS = ("handle", "__call__")


class HandlerSpec(NamedTuple):
    """One task a handler class contributes.

    Attributes:
        task_name: The task name jobs carry.
        handler: The bound method to run.
        cron: Cron expression to schedule it with, or None.
        options: The task's options (a ``@task`` method's; None for a ``handle()``
            class, which runs with the defaults). The handler is registered with them,
            so the worker applies them to every job of the task, however it was made.
    """

    task_name: str
    handler: Callable[..., Any]
    cron: str | None = None
    options: TaskOptions | None = None


def _entry_method(cls: type) -> str | None:
    for name in _ENTRY_METHODS:
        for klass in cls.__mro__:
            if klass is object:
                break
            if callable(vars(klass).get(name)):
                return name
    return None


def _task_functions(cls: type) -> dict[str, TaskFunction[Any, Any]]:
    """Return the ``@task`` methods of `cls` and its bases, by attribute name.

    A task assigned to a class attribute rather than declared in the class body is a
    plain function (`is_method_of`), not a method to bind to an instance.
    """
    found: dict[str, TaskFunction[Any, Any]] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            if isinstance(value, TaskFunction) and is_method_of(value, klass):
                found[attr] = value
            else:
                found.pop(attr, None)  # a subclass replaced it with something else
    return found


def is_handler_class(obj: object) -> bool:
    """Return whether `obj` is a task handler class (see the module docstring)."""
    if not isinstance(obj, type):
        return False
    name = getattr(obj, TASK_NAME_ATTRIBUTE, None)
    if isinstance(name, str) and name and _entry_method(obj) is not None:
        return True
    return bool(_task_functions(obj))


def check_handler_class(obj: object) -> None:
    """Raise a helpful `TypeError` unless `obj` is a task handler class.

    Raises:
        TypeError: `obj` is not a class, or is a class that handles no task.
    """
    if not isinstance(obj, type):
        msg = (
            f"TasksModule.scope() takes task handler classes, got {obj!r}. Pass the class "
            "itself (not an instance or a function); register plain functions with "
            "TaskProvider.register_handler."
        )
        raise TypeError(msg)
    if is_handler_class(obj):
        return
    name = getattr(obj, TASK_NAME_ATTRIBUTE, None)
    if isinstance(name, str) and name:
        problem = f"sets task_name={name!r} but defines no handle() or __call__()"
    else:
        problem = "has no task_name class attribute and no @task-decorated method"
    msg = (
        f"`{obj.__qualname__}` passed to TasksModule.scope() {problem}. Give it "
        '`task_name = "..."` and an `async def handle(self, ...)` method, or decorate '
        "its methods with @task(...)."
    )
    raise TypeError(msg)


def handler_specs(instance: object) -> list[HandlerSpec]:
    """Return the tasks an instance of a handler class handles, with bound handlers."""
    cls = type(instance)
    specs: list[HandlerSpec] = []
    name = getattr(cls, TASK_NAME_ATTRIBUTE, None)
    method = _entry_method(cls)
    if isinstance(name, str) and name and method is not None:
        cron = getattr(cls, CRON_ATTRIBUTE, None)
        specs.append(
            HandlerSpec(
                task_name=name,
                handler=getattr(instance, method),
                cron=cron if isinstance(cron, str) and cron.strip() else None,
            )
        )
    specs.extend(
        HandlerSpec(
            task_name=function.name,
            handler=types.MethodType(function.__wrapped__, instance),
            cron=function.cron,
            options=function.options,
        )
        for function in _task_functions(cls).values()
    )
    return specs


async def discover_handler_classes(container: Any) -> list[type]:
    """Return the handler classes bound (unnamed) in `container`, in binding order.

    Needs a container with ``registrations()`` (the kernel's `Container`); with any
    other container nothing is discovered and handlers must be registered explicitly.
    """
    registrations = getattr(container, "registrations", None)
    if registrations is None or not inspect.ismethod(registrations):
        logger.debug("Container %r cannot list its bindings; no handler classes found.", container)
        return []
    classes: list[type] = []
    for service_type, name in registrations():
        if name is None and is_handler_class(service_type) and service_type not in classes:
            classes.append(service_type)
    return classes
