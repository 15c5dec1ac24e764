"""The entry-point object: builds `RabbitMQTaskQueue`s, and borrows stores from another backend.

RabbitMQ is a transport: it holds jobs, not results, progress, schedules or locks.
Without the ``stores`` option every store factory here returns None and the core uses
its in-memory store. With ``stores`` naming an installed backend (``redis://...``,
``postgresql://...`` or ``{"type": ..., "url": ..., "options": {...}}``), each factory
hands the call to that backend, so a RabbitMQ queue gets Redis or Postgres stores.
"""

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

    `spec.options` takes the keyword arguments of `RabbitMQTaskQueue` (``durable``,
    ``queue_type``, ``max_priority``, ``visibility_timeout``, ``delay_mode``, ...) plus:

    - ``stores``: another installed backend (a ``redis://`` / ``postgresql://`` URL, or
      ``{"type": "redis", "url": ..., "options": {...}}``) whose result, progress, DLQ,
      scheduler, workflow-state, lock, cache, idempotency and rate-limit stores this
      backend hands out. Without it the core uses its in-memory stores.
    - ``state_store``: where the queue keeps its job-state records (same forms, or a
      `CacheBackendProtocol` object). Defaults to the ``stores`` backend's cache when
      ``stores`` is set, else to an in-process store.

    One store is built per distinct setting and shared by the queues of this object.
    """

    def __init__(self) -> None:
        self._stores: dict[str, CacheBackendProtocol] = {}

    def __repr__(self) -> str:
        return f"RabbitMQBackend(shared_state_stores={len(self._stores)})"

    def create_queue(self, spec: TaskBackendSpec, /) -> RabbitMQTaskQueue:
        """Build the queue for `spec` (nothing connects until first use).

        Raises:
            TaskConfigurationError: An option is invalid, or ``state_store`` / ``stores``
                names a backend that is not installed or offers no cache backend.
        """
        settings = RabbitMQSettings.from_options(spec.options)
        setting = spec.options.get("state_store", spec.options.get("stores"))
        return RabbitMQTaskQueue(
            spec.url or DEFAULT_AMQP_URL,
            spec.queue_name,
            state_store=self.state_store(setting, spec),
            **{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)},
        )

    def state_store(self, setting: object, spec: TaskBackendSpec) -> CacheBackendProtocol | None:
        """Resolve a ``state_store`` setting to a store (None: the in-process default)."""
        if setting is None:
            return None
        if isinstance(setting, CacheBackendProtocol):
            return setting
        other = _other_spec(setting, spec, "state_store")
        cache_key = f"{other.type}|{other.url}|{sorted(other.options.items())!r}"
        store = self._stores.get(cache_key)
        if store is None:
            store = _delegate(other, "create_cache_backend", required=True)
            self._stores[cache_key] = store
        return store

    # -- stores borrowed from the ``stores`` backend (None: the core's in-memory one) ----

    def create_result_store(self, spec: TaskBackendSpec, /) -> Any | None:
        """The ``stores`` backend's result store, or None."""
        return _borrow(spec, "create_result_store")

    def create_progress_store(self, spec: TaskBackendSpec, /) -> Any | None:
        """The ``stores`` backend's progress store, or None."""
        return _borrow(spec, "create_progress_store")

    def create_progress_tracker(self, spec: TaskBackendSpec, /) -> Any | None:
        """The ``stores`` backend's progress tracker, or None."""
        return _borrow(spec, "create_progress_tracker")

    def create_dlq_backend(self, spec: TaskBackendSpec, /) -> Any | None:
        """The ``stores`` backend's dead-letter store, or None."""
        return _borrow(spec, "create_dlq_backend")

    def create_scheduler_store(self, spec: TaskBackendSpec, /) -> Any | None:
        """The ``stores`` backend's scheduler store, or None."""
        return _borrow(spec, "create_scheduler_store")

    def create_workflow_state_store(self, spec: TaskBackendSpec, /) -> Any | None:
        """The ``stores`` backend's workflow state store, or None."""
        return _borrow(spec, "create_workflow_state_store")

    def create_lock_manager(self, spec: TaskBackendSpec, /) -> Any | None:
        """The ``stores`` backend's lock manager, or None."""
        return _borrow(spec, "create_lock_manager")

    def create_cache_backend(self, spec: TaskBackendSpec, /) -> Any | None:
        """The ``stores`` backend's cache, or None."""
        return _borrow(spec, "create_cache_backend")

    def create_idempotency_store(self, spec: TaskBackendSpec, /) -> Any | None:
        """The ``stores`` backend's idempotency store, or None."""
        return _borrow(spec, "create_idempotency_store")

    def create_rate_limiter(self, spec: TaskBackendSpec, /, **kwargs: Any) -> Any | None:
        """The ``stores`` backend's rate limiter (same keyword arguments), or None."""
        return _borrow(spec, "create_rate_limiter", **kwargs)


def _borrow(spec: TaskBackendSpec, factory: str, **kwargs: Any) -> Any | None:
    setting = spec.options.get("stores")
    if setting is None:
        return None
    return _delegate(_other_spec(setting, spec, "stores"), factory, required=False, **kwargs)


def _other_spec(setting: object, spec: TaskBackendSpec, option: str) -> TaskBackendSpec:
    """The spec of the backend a ``stores`` / ``state_store`` setting names."""
    if isinstance(setting, str):
        setting = {"url": setting}
    if not isinstance(setting, Mapping):
        msg = (
            f"RabbitMQ option {option}={setting!r} is not supported. Pass a redis:// or "
            "postgresql:// URL, or a mapping {'type': 'redis', 'url': ..., 'options': {...}}."
        )
        raise TaskConfigurationError(msg)
    url = str(setting["url"]) if setting.get("url") is not None else None
    type_ = str(setting.get("type") or _type_from_url(url, option))
    options = setting.get("options") or {}
    return TaskBackendSpec(
        name=spec.name, type=type_, url=url, queue_name=spec.queue_name, options=dict(options)
    )


def _type_from_url(url: str | None, option: str) -> str:
    scheme = urlsplit(url or "").scheme.lower()
    type_ = _SCHEME_TYPES.get(scheme)
    if type_ is None:
        shown = mask_url(url) if url else url
        msg = (
            f"RabbitMQ option {option} has URL {shown!r}, whose scheme does not name a "
            "backend. Use redis://... or postgresql://..., or give {'type': ..., 'url': ...}."
        )
        raise TaskConfigurationError(msg)
    return type_


def _delegate(spec: TaskBackendSpec, factory: str, *, required: bool, **kwargs: Any) -> Any:
    found = entry_points(group=BACKENDS_GROUP, name=spec.type)
    if not found:
        installed = sorted(entry_points(group=BACKENDS_GROUP).names)
        msg = (
            f"RabbitMQ options name backend {spec.type!r} for stores, which is not installed "
            f"(installed: {', '.join(installed) or 'none'}). Install it, e.g. "
            f'pip install "lexigram-tasks[{spec.type}]".'
        )
        raise TaskConfigurationError(msg)
    make = getattr(next(iter(found)).load(), factory, None)
    if make is None:
        if not required:
            return None
        msg = (
            f"Backend {spec.type!r} offers no {factory}, so it cannot hold the RabbitMQ "
            "job-state records. Use a backend that has one (redis, postgres)."
        )
        raise TaskConfigurationError(msg)
    return make(spec, **kwargs)


backend = RabbitMQBackend()
"""The object the ``rabbitmq`` entry point names."""


def create_queue(spec: TaskBackendSpec, /) -> RabbitMQTaskQueue:
    """Build a `RabbitMQTaskQueue` for `spec` (the house-style factory function)."""
    return backend.create_queue(spec)
