"""Backend discovery: the `type` in config selects a backend through an entry point.

Backends register in the entry-point group ``lexigram.tasks.backends`` under their type
name (``memory``, ``redis``, ``rabbitmq``, ``postgres``, or a third party's). Listing the
names imports nothing; only the selected backend is imported, so a program using Redis
never imports asyncpg or aio-pika. The built-in memory backend registers the same way:
there is no if/elif on backend type anywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from lexigram.contracts.tasks import (
    BackendConflictError,
    BackendImportError,
    BackendNotFoundError,
    TaskBackendProtocol,
    TaskBackendSpec,
    TaskQueueProtocol,
)

if TYPE_CHECKING:
    from lexigram.tasks.config import NamedTaskConfig, TaskBackendConfig, TaskConfig

logger = logging.getLogger(__name__)

BACKENDS_GROUP = "lexigram.tasks.backends"
"""Entry-point group in which backends register, by type name."""

# Legacy per-type URL fields of the config models; a generic `url` wins over them.
_URL_FIELD_BY_TYPE: Mapping[str, str] = {
    "redis": "redis_url",
    "rabbitmq": "amqp_url",
    "postgres": "postgres_dsn",
}

_cache: dict[str, TaskBackendProtocol] = {}


@dataclass(frozen=True, slots=True)
class _FunctionBackend:
    """Adapts an entry point that names a bare `create_queue` function (house-style form)."""

    create_queue: Callable[[TaskBackendSpec], TaskQueueProtocol]


def available_backends() -> list[str]:
    """Return the installed backend type names, sorted (imports no backend).

    Returns:
        The names registered in the ``lexigram.tasks.backends`` entry-point group.
    """
    return sorted(set(entry_points(group=BACKENDS_GROUP).names))


def _describe(ep: EntryPoint) -> str:
    dist = ep.dist
    if dist is None:
        return ep.value
    return f"{dist.name} {dist.version}"


def _select_entry_point(type_: str) -> EntryPoint:
    matches = list(entry_points(group=BACKENDS_GROUP, name=type_))
    # One distribution can appear twice on sys.path (e.g. an editable and a site
    # install of the same project); that is not a conflict.
    by_dist: dict[str, EntryPoint] = {}
    for ep in matches:
        by_dist.setdefault(ep.dist.name if ep.dist else ep.value, ep)
    if not by_dist:
        installed = ", ".join(repr(name) for name in available_backends()) or "none"
        msg = (
            f"No task backend named {type_!r} is installed (installed: {installed}). "
            "Check NamedTaskConfig.type for a typo, or install the distribution that "
            f'provides it, e.g. pip install "lexigram-tasks[{type_}]".'
        )
        raise BackendNotFoundError(msg, details={"type": type_})
    if len(by_dist) > 1:
        providers = " and ".join(sorted(_describe(ep) for ep in by_dist.values()))
        msg = (
            f"Task backend {type_!r} is provided by {len(by_dist)} distributions: "
            f"{providers}. Uninstall all but one of them."
        )
        raise BackendConflictError(msg, details={"type": type_})
    return next(iter(by_dist.values()))


def load_backend(type_: str) -> TaskBackendProtocol:
    """Import and return the backend registered under `type_` (cached per process).

    Args:
        type_: The backend type, e.g. "redis".

    Returns:
        The backend object, exposing `create_queue(spec)` and optional store factories.

    Raises:
        BackendNotFoundError: No installed distribution provides `type_`.
        BackendConflictError: Two distributions provide `type_`.
        BackendImportError: The backend failed to import (usually a missing dependency).
        TypeError: The entry point names something that is not a backend.
    """
    cached = _cache.get(type_)
    if cached is not None:
        return cached
    ep = _select_entry_point(type_)
    try:
        loaded: Any = ep.load()
    except ImportError as exc:
        dist = ep.dist.name if ep.dist else f"lexigram-tasks-{type_}"
        msg = (
            f"Task backend {type_!r} ({ep.value}) failed to import: {exc}. Install or repair "
            f'the distribution that provides it, e.g. pip install --force-reinstall "{dist}".'
        )
        raise BackendImportError(msg, details={"type": type_}) from exc
    backend: Any = loaded
    if not hasattr(loaded, "create_queue") and callable(loaded):
        backend = _FunctionBackend(create_queue=loaded)
    if not isinstance(backend, TaskBackendProtocol):
        msg = (
            f"Entry point {type_!r} = {ep.value!r} in group {BACKENDS_GROUP!r} names "
            f"{type(loaded).__name__!r}, which has no create_queue(spec). Point it at an "
            "object with create_queue or at a create_queue function."
        )
        raise TypeError(msg)
    _cache[type_] = backend
    return backend


def clear_backend_cache() -> None:
    """Forget loaded backends (for tests that install or fake entry points)."""
    _cache.clear()


def create_queue(spec: TaskBackendSpec) -> TaskQueueProtocol:
    """Build the queue for `spec` with the backend its `type` names.

    Args:
        spec: The backend spec (type, url, queue name, options).

    Returns:
        The backend's queue.

    Raises:
        TypeError: The backend returned something that is not a `TaskQueueProtocol`.
    """
    # Typed as object: a third-party factory may return anything, and this is the check.
    queue: object = load_backend(spec.type).create_queue(spec)
    if not isinstance(queue, TaskQueueProtocol):
        msg = (
            f"Task backend {spec.type!r} returned {type(queue).__name__!r} from "
            "create_queue, which does not implement TaskQueueProtocol. Fix the backend."
        )
        raise TypeError(msg)
    return queue


def create_store(spec: TaskBackendSpec, factory: str, **kwargs: Any) -> Any | None:
    """Build one of a backend's optional stores, or None when it offers none.

    Args:
        spec: The backend spec.
        factory: The factory name, one of `OPTIONAL_BACKEND_FACTORIES`.
        **kwargs: Extra arguments for the factory (e.g. a rate limiter's rate).

    Returns:
        The store, or None; the caller then uses its in-memory version.
    """
    make = getattr(load_backend(spec.type), factory, None)
    if make is None:
        # Worth telling a Redis or RabbitMQ user (results then die with the process);
        # for the memory backend it is what was asked for.
        level = logging.DEBUG if spec.type == "memory" else logging.INFO
        logger.log(
            level, "Task backend %r offers no %s; using the in-memory version.", spec.type, factory
        )
        return None
    return make(spec, **kwargs)


def spec_from_config(
    config: NamedTaskConfig | TaskBackendConfig, *, name: str | None = None
) -> TaskBackendSpec:
    """Build the `TaskBackendSpec` a backend factory receives from a config model.

    The generic `url` wins; otherwise the legacy field for the type (`redis_url`,
    `amqp_url`, `postgres_dsn`) is used. Secrets are unwrapped here and nowhere else.

    Args:
        config: A `NamedTaskConfig` or a `TaskBackendConfig`.
        name: The backend name (defaults to the config's `name`, or "default").

    Returns:
        The spec.
    """
    secret = getattr(config, "url", None)
    if secret is None:
        field = _URL_FIELD_BY_TYPE.get(config.type)
        secret = getattr(config, field, None) if field else None
    url = secret.get_secret_value() if secret is not None else None
    return TaskBackendSpec(
        name=name or getattr(config, "name", None) or "default",
        type=config.type,
        url=url or None,
        queue_name=config.queue_name,
        options=dict(config.options),
    )


class TaskBackendRegistry:
    """Maps backend type names to queue factories: explicit registrations, then entry points.

    Example:
        registry = TaskBackendRegistry.with_defaults()
        queue = registry.create_backend(TaskConfig())   # a MemoryTaskQueue
    """

    def __init__(self) -> None:
        self._factories: dict[str, Callable[[TaskBackendSpec], Any]] = {}

    @classmethod
    def with_defaults(cls) -> TaskBackendRegistry:
        """Return a registry that resolves every installed backend through entry points."""
        return cls()

    def register(self, backend_type: str, factory: Callable[[TaskBackendSpec], Any]) -> None:
        """Register (or override) the queue factory for `backend_type` in this registry."""
        self._factories[backend_type] = factory

    def available_backends(self) -> list[str]:
        """Return the known type names: registered ones and installed entry points."""
        return sorted(set(self._factories) | set(available_backends()))

    def __contains__(self, backend_type: object) -> bool:
        return backend_type in self.available_backends()

    def create_queue(self, spec: TaskBackendSpec) -> TaskQueueProtocol:
        """Build the queue for `spec`, preferring a factory registered here."""
        factory = self._factories.get(spec.type)
        if factory is None:
            return create_queue(spec)
        queue: TaskQueueProtocol = factory(spec)
        return queue

    def create_backend(self, config: TaskConfig) -> TaskQueueProtocol:
        """Build the queue of a single-backend `TaskConfig` (its `backend` section)."""
        return self.create_queue(spec_from_config(config.backend, name=config.name))


__all__ = [
    "BACKENDS_GROUP",
    "TaskBackendRegistry",
    "available_backends",
    "clear_backend_cache",
    "create_queue",
    "create_store",
    "load_backend",
    "spec_from_config",
]
