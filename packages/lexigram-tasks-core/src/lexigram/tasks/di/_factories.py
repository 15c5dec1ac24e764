"""Shortcuts that build a `TaskProvider` for a common setup."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from lexigram.tasks.config import TaskBackendConfig, TaskConfig
from lexigram.tasks.constants import (
    BACKEND_MEMORY,
    BACKEND_RABBITMQ,
    BACKEND_REDIS,
    DEFAULT_AMQP_URL,
    DEFAULT_QUEUE_NAME,
    DEFAULT_REDIS_URL,
)
from lexigram.tasks.di._provider import TaskProvider


def create_provider_from_config(config: TaskConfig | Mapping[str, Any]) -> TaskProvider:
    """Create a TaskProvider from a `TaskConfig` or the mapping of one.

    Args:
        config: The configuration (a mapping is validated with `TaskConfig.from_dict`).

    Returns:
        The provider; its queues are built when the application starts.
    """
    return TaskProvider.from_config(config)


def create_memory_task_provider(
    worker_count: int = 1,
    enable_scheduler: bool = True,
) -> TaskProvider:
    """Create a TaskProvider on an in-memory queue.

    Args:
        worker_count: Number of workers.
        enable_scheduler: Whether to run the scheduler.

    Returns:
        The provider.
    """
    return _provider_for(TaskBackendConfig(type=BACKEND_MEMORY), worker_count, enable_scheduler)


def create_redis_task_provider(
    redis_url: str = DEFAULT_REDIS_URL,
    queue_name: str = DEFAULT_QUEUE_NAME,
    worker_count: int = 1,
    enable_scheduler: bool = True,
) -> TaskProvider:
    """Create a TaskProvider on Redis (needs ``lexigram-tasks[redis]``).

    Args:
        redis_url: Redis connection URL.
        queue_name: Queue name.
        worker_count: Number of workers.
        enable_scheduler: Whether to run the scheduler.

    Returns:
        The provider; it connects when the application starts.
    """
    backend = TaskBackendConfig(
        type=BACKEND_REDIS, redis_url=SecretStr(redis_url), queue_name=queue_name
    )
    return _provider_for(backend, worker_count, enable_scheduler)


def create_rabbitmq_task_provider(
    amqp_url: str = DEFAULT_AMQP_URL,
    queue_name: str = DEFAULT_QUEUE_NAME,
    worker_count: int = 1,
    enable_scheduler: bool = True,
) -> TaskProvider:
    """Create a TaskProvider on RabbitMQ (needs ``lexigram-tasks[rabbitmq]``).

    Args:
        amqp_url: AMQP connection URL.
        queue_name: Queue name.
        worker_count: Number of workers.
        enable_scheduler: Whether to run the scheduler.

    Returns:
        The provider; it connects when the application starts.
    """
    backend = TaskBackendConfig(
        type=BACKEND_RABBITMQ, amqp_url=SecretStr(amqp_url), queue_name=queue_name
    )
    return _provider_for(backend, worker_count, enable_scheduler)


def _provider_for(
    backend: TaskBackendConfig, worker_count: int, enable_scheduler: bool
) -> TaskProvider:
    return TaskProvider(
        worker_count=worker_count,
        enable_scheduler=enable_scheduler,
        config=TaskConfig(backend=backend),
    )
