"""Application integration: `TaskProvider`, `TasksModule` and provider factories.

``TasksModule.configure(...)`` (or ``app.use(TaskProvider(...))``) binds the queues,
worker pools, scheduler, handler registry and stores in the application container,
starts workers and scheduler at boot and drains them at shutdown. See
``docs/application.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lexigram.tasks.di._factories import (
        create_memory_task_provider,
        create_provider_from_config,
        create_rabbitmq_task_provider,
        create_redis_task_provider,
        create_url_task_provider,
    )
    from lexigram.tasks.di._handlers import (
        CRON_ATTRIBUTE,
        TASK_NAME_ATTRIBUTE,
        is_handler_class,
    )
    from lexigram.tasks.di._module import TasksModule
    from lexigram.tasks.di._provider import TaskProvider
    from lexigram.tasks.di._stack import BackendStack

# Loaded on first use: the command-line worker builds its stack with `_stack` alone and
# would otherwise import the application container (`lexigram.di`), the provider and
# its factories at every start without using them.
_EXPORTS = {
    "create_memory_task_provider": "_factories",
    "create_provider_from_config": "_factories",
    "create_rabbitmq_task_provider": "_factories",
    "create_redis_task_provider": "_factories",
    "create_url_task_provider": "_factories",
    "CRON_ATTRIBUTE": "_handlers",
    "TASK_NAME_ATTRIBUTE": "_handlers",
    "is_handler_class": "_handlers",
    "TasksModule": "_module",
    "TaskProvider": "_provider",
    "BackendStack": "_stack",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


__all__ = [
    "CRON_ATTRIBUTE",
    "TASK_NAME_ATTRIBUTE",
    "BackendStack",
    "TaskProvider",
    "TasksModule",
    "create_memory_task_provider",
    "create_provider_from_config",
    "create_rabbitmq_task_provider",
    "create_redis_task_provider",
    "create_url_task_provider",
    "is_handler_class",
]
