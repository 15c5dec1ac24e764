"""The entry-point object: builds `RabbitMQTaskQueue`s from a `TaskBackendSpec`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import urlsplit

from lexigram.contracts.tasks import (
    CacheBackendProtocol,
    TaskBackendSpec,
    TaskConfigurationError,
    mask_url,
)
from lexigram.tasks.backends.rabbitmq._options import DEFAULT_AMQP_URL, RabbitMQSettings
from lexigram.tasks.backends.rabbitmq._queue import RabbitMQTaskQueue

BACKENDS_GROUP = "lexigram.tasks.backends"
_SCHEME_TYPES = {
    "redis": "redis",
    "rediss": "redis",
    "unix": "redis",
    "postgres": "postgres",
    "postgresql": "postgres",
}


class RabbitMQBackend:
    """What the ``rabbitmq`` entry point names: a factory of RabbitMQ task queues.

    RabbitMQ is a transport: this backend offers only `create_queue`. Core pairs it
    with the in-memory result, progress and scheduler stores, or with the Redis /
    Postgres ones configured in the same `TaskConfig`.

    `spec.options` takes the keyword arguments of `RabbitMQTaskQueue` (``durable``,
    ``queue_type``, ``max_priority``, ``visibility_timeout``, ``delay_mode``, ...) plus
    ``state_store``: a `CacheBackendProtocol` object, a URL (``redis://...``,
    ``postgresql://...``) or a mapping ``{"type": "redis", "url": ..., "options": {...}}``
    naming an installed backend whose ``create_cache_backend`` builds the shared
    job-state store. One store is built per distinct setting and shared by the queues
    of this backend object.
    """

    def __init__(self) -> None:
        self._stores: dict[str, CacheBackendProtocol] = {}

    def create_queue(self, spec: TaskBackendSpec, /) -> RabbitMQTaskQueue:
        """Build the queue for `spec` (nothing connects until first use).

        Raises:
            TaskConfigurationError: An option is invalid, or ``state_store`` names a
                backend that is not installed or offers no cache backend.
        """
        settings = RabbitMQSettings.from_options(spec.options)
        store = self.state_store(spec.options.get("state_store"), spec)
        return RabbitMQTaskQueue(
            spec.url or DEFAULT_AMQP_URL,
            spec.queue_name,
            state_store=store,
            **{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)},
        )

    def state_store(self, setting: object, spec: TaskBackendSpec) -> CacheBackendProtocol | None:
        """Resolve the ``state_store`` option to a store (None: the in-process default)."""
        if setting is None:
            return None
        if isinstance(setting, CacheBackendProtocol):
            return setting
        if isinstance(setting, str):
            setting = {"url": setting}
        if not isinstance(setting, Mapping):
            msg = (
                f"RabbitMQ option state_store={setting!r} is not supported. Pass a "
                "CacheBackendProtocol object, a redis:// or postgresql:// URL, or a mapping "
                "{'type': 'redis', 'url': ...}."
            )
            raise TaskConfigurationError(msg)
        url = str(setting["url"]) if setting.get("url") is not None else None
        type_ = str(setting.get("type") or _type_from_url(url))
        options: Mapping[str, Any] = setting.get("options") or {}
        cache_key = f"{type_}|{url}|{sorted(options.items())!r}"
        store = self._stores.get(cache_key)
        if store is None:
            factory = _cache_factory(type_)
            store = factory(
                TaskBackendSpec(
                    name=f"{spec.name}-state",
                    type=type_,
                    url=url,
                    queue_name=spec.queue_name,
                    options=dict(options),
                )
            )
            self._stores[cache_key] = store
        return store


def _type_from_url(url: str | None) -> str:
    scheme = urlsplit(url or "").scheme.lower()
    type_ = _SCHEME_TYPES.get(scheme)
    if type_ is None:
        shown = mask_url(url) if url else url
        msg = (
            f"RabbitMQ option state_store has URL {shown!r}, whose scheme does not name a "
            "store. Use redis://... or postgresql://..., or give {'type': ..., 'url': ...}."
        )
        raise TaskConfigurationError(msg)
    return type_


def _cache_factory(type_: str) -> Any:
    found = entry_points(group=BACKENDS_GROUP, name=type_)
    if not found:
        installed = sorted(entry_points(group=BACKENDS_GROUP).names)
        msg = (
            f"RabbitMQ option state_store asks for backend {type_!r}, which is not installed "
            f"(installed: {', '.join(installed) or 'none'}). Install it, e.g. "
            f'pip install "lexigram-tasks[{type_}]".'
        )
        raise TaskConfigurationError(msg)
    target = next(iter(found)).load()
    factory = getattr(target, "create_cache_backend", None)
    if factory is None:
        msg = (
            f"Backend {type_!r} offers no create_cache_backend, so it cannot hold the "
            "RabbitMQ job-state records. Use a backend that has one (redis, postgres)."
        )
        raise TaskConfigurationError(msg)
    return factory


backend = RabbitMQBackend()
"""The object the ``rabbitmq`` entry point names."""


def create_queue(spec: TaskBackendSpec, /) -> RabbitMQTaskQueue:
    """Build a `RabbitMQTaskQueue` for `spec` (the house-style factory function)."""
    return backend.create_queue(spec)
