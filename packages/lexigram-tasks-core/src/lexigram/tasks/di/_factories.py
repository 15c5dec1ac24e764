"""Shortcuts that build a `TaskProvider` for a common setup."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from lexigram.contracts.tasks import TaskConfigurationError, mask_url
from lexigram.tasks._backends import backend_for_scheme, known_schemes
from lexigram.tasks.config import TaskBackendConfig, TaskConfig
from lexigram.tasks.constants import (
    BACKEND_MEMORY,
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
    return create_url_task_provider(redis_url, queue_name, worker_count, enable_scheduler)


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
    return create_url_task_provider(amqp_url, queue_name, worker_count, enable_scheduler)


def create_url_task_provider(
    url: str,
    queue_name: str = DEFAULT_QUEUE_NAME,
    worker_count: int = 1,
    enable_scheduler: bool = True,
) -> TaskProvider:
    """Create a TaskProvider on the backend that serves `url`'s scheme.

    The backend is the installed one whose entry point declares the scheme in its
    ``url_schemes`` (or whose type name is the scheme).

    Args:
        url: Connection URL, e.g. ``redis://localhost:6379/0``.
        queue_name: Queue name.
        worker_count: Number of workers.
        enable_scheduler: Whether to run the scheduler.

    Returns:
        The provider; it connects when the application starts.

    Raises:
        TaskConfigurationError: No installed backend serves the URL's scheme.
    """
    scheme = urlsplit(url).scheme
    backend_type = backend_for_scheme(scheme) if scheme else None
    if backend_type is None:
        known = ", ".join(f"{s}://" for s in known_schemes()) or "none"
        msg = (
            f"No installed task backend serves {mask_url(url)!r} (scheme {scheme!r}; "
            f"installed schemes: {known}). Install the backend for it or fix the URL."
        )
        raise TaskConfigurationError(msg, details={"scheme": scheme})
    backend = TaskBackendConfig(type=backend_type, url=SecretStr(url), queue_name=queue_name)
    return _provider_for(backend, worker_count, enable_scheduler)


def _provider_for(
    backend: TaskBackendConfig, worker_count: int, enable_scheduler: bool
) -> TaskProvider:
    return TaskProvider(
        worker_count=worker_count,
        enable_scheduler=enable_scheduler,
        config=TaskConfig(backend=backend),
    )
