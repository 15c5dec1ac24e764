"""Application integration: `TaskProvider`, `TasksModule` and provider factories.

``TasksModule.configure(...)`` (or ``app.use(TaskProvider(...))``) binds the queues,
worker pools, scheduler, handler registry and stores in the application container,
starts workers and scheduler at boot and drains them at shutdown. See
``docs/application.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lexigram.tasks._lazy import lazy_exports

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

# Each name is loaded on first use (the block above lists them): the command-line worker
# builds its stack with `_stack` alone and would otherwise import the application
# container (`lexigram.di`), the provider and its factories at every start unused.
__getattr__, __dir__ = lazy_exports(__name__)

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
