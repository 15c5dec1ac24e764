"""Stores borrowed from another installed backend (RabbitMQ holds jobs, not records).

RabbitMQ is a transport: it holds jobs, not results, progress, schedules or locks.
The ``stores`` option names another backend (``redis://...``, ``postgresql://...`` or
``{"type": ..., "url": ..., "options": {...}}``) whose store factories this backend
hands the calls to; ``state_store`` (default: the ``stores`` backend's cache) is where
the queue keeps its job-state records. Backends are found through their entry points
and matched by the URL schemes they declare, so no backend is named here.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from lexigram.contracts.tasks import (
    BACKENDS_GROUP,
    URL_SCHEMES_GROUP,
    CacheBackendProtocol,
    TaskBackendSpec,
    TaskConfigurationError,
    declared_schemes,
    installed_entry_points,
    mask_url,
    scheme_claims,
)
from lexigram.tasks.backends.rabbitmq._options import AMQPTarget, RabbitMQOptions
from lexigram.tasks.backends.rabbitmq._state import LocalStateStore

_LOCAL_STORES: dict[tuple[str, int, str], LocalStateStore] = {}

# URL scheme -> the backend type serving it: every store a worker builds asks again, and
# the installed backends do not change while a process runs.
_TYPES_OF_SCHEMES: dict[str, str] = {}

# Backend objects stores were borrowed from, by type, each looked up once per process (as
# the core loads a backend once): their shared connection pools are released when this
# backend is (`close_lenders`).
_LENDERS: dict[str, Any] = {}


def local_state_store(
    target: AMQPTarget, namespace: str, options: RabbitMQOptions
) -> LocalStateStore:
    """The in-process store of one queue, shared by every queue object of it in this process.

    So a producer and a worker in one process agree on a job's state, as they do with
    a shared store across processes.
    """
    key = (target.host, target.port, namespace)
    store = _LOCAL_STORES.get(key)
    if store is None:
        store = LocalStateStore(max_entries=options.state_max_entries)
        _LOCAL_STORES[key] = store
    return store


def state_store_for(options: RabbitMQOptions, queue_name: str) -> CacheBackendProtocol | None:
    """Build the shared job-state store `options` ask for, or None for the in-process one.

    The caller owns what this builds and closes it (the backend it comes from shares
    its connections between the stores it builds, so one per queue object costs none).

    Raises:
        TaskConfigurationError: The setting names a backend that is not installed or
            offers no cache backend.
    """
    setting = options.state_store if options.state_store is not None else options.stores
    if setting is None:
        return None
    if isinstance(setting, CacheBackendProtocol):
        return setting
    option = "state_store" if options.state_store is not None else "stores"
    other = other_spec(setting, "rabbitmq", queue_name, option)
    store: CacheBackendProtocol = delegate(other, "create_cache_backend", required=True)
    return store


async def close_store(store: object | None) -> None:
    """Close a store built by another backend (its ``close`` or ``aclose``, if any)."""
    close = getattr(store, "close", None) or getattr(store, "aclose", None)
    if close is None:
        return
    result = close()
    if inspect.isawaitable(result):
        await result


async def close_lenders() -> None:
    """Release what the backends stores were borrowed from hold (their shared pools)."""
    for lender in list(_LENDERS.values()):
        await close_store(lender)


def borrow(spec: TaskBackendSpec, factory: str, **kwargs: Any) -> Any | None:
    """Call `factory` of the ``stores`` backend of `spec`, or return None without one."""
    setting = RabbitMQOptions.from_options(spec.options, name=spec.name).stores
    if setting is None:
        return None
    other = other_spec(setting, spec.name, spec.queue_name, "stores")
    return delegate(other, factory, required=False, **kwargs)


def other_spec(setting: object, name: str, queue_name: str, option: str) -> TaskBackendSpec:
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
        name=name, type=type_, url=url, queue_name=queue_name, options=dict(options)
    )


def _type_from_url(url: str | None, option: str) -> str:
    """The installed backend (other than RabbitMQ) that serves the URL's scheme.

    Decided as the core decides a backend URL's (`scheme_claims`): a scheme that is a
    backend's type name, else the schemes backends declare in entry points (nothing
    imported), else the ``url_schemes`` of those that declare none.
    """
    scheme = urlsplit(url or "").scheme.lower()
    found = _TYPES_OF_SCHEMES.get(scheme)
    if found is not None:
        return found
    backends = [
        point for point in installed_entry_points(group=BACKENDS_GROUP) if point.name != "rabbitmq"
    ]
    declared = declared_schemes(backends, installed_entry_points(group=URL_SCHEMES_GROUP))
    loaded: dict[str, tuple[str, ...]] = {}

    def undeclared_schemes(type_: str) -> tuple[str, ...]:
        if type_ not in loaded:
            point = next(point for point in backends if point.name == type_)
            try:
                schemes = getattr(point.load(), "url_schemes", ()) or ()
            except Exception:  # a broken backend is reported when it is used
                schemes = ()
            loaded[type_] = tuple(str(each).lower() for each in schemes)
        return loaded[type_]

    types = [point.name for point in backends]
    claims = scheme_claims(scheme, types, declared, undeclared_schemes) if scheme else []
    shown = mask_url(url) if url else url
    if len(claims) > 1:
        msg = (
            f"RabbitMQ option {option} has URL {shown!r}, whose scheme is served by several "
            f"installed backends ({', '.join(sorted(claims))}). Give "
            "{'type': ..., 'url': ...} instead of a URL."
        )
        raise TaskConfigurationError(msg)
    if claims:
        _TYPES_OF_SCHEMES[scheme] = claims[0]
        return claims[0]
    declaring = {type_ for claimed in declared.values() for type_ in claimed}
    known = set(declared)
    for type_ in types:
        if type_ not in declaring:
            known.update(undeclared_schemes(type_))
    offered = ", ".join(f"{each}://" for each in sorted(known)) or "none installed"
    msg = (
        f"RabbitMQ option {option} has URL {shown!r}, whose scheme is served by no "
        f"installed backend (schemes: {offered}). Use one of those, or give "
        "{'type': ..., 'url': ...}."
    )
    raise TaskConfigurationError(msg)


def delegate(spec: TaskBackendSpec, factory: str, *, required: bool, **kwargs: Any) -> Any:
    """Call `factory` of the installed backend `spec.type` (None if it has none)."""
    other = _LENDERS.get(spec.type)
    if other is None:  # a worker borrows its seven stores from one backend: one lookup
        found = installed_entry_points(group=BACKENDS_GROUP, name=spec.type)
        if not found:
            installed = sorted(installed_entry_points(group=BACKENDS_GROUP).names)
            msg = (
                f"RabbitMQ options name backend {spec.type!r} for stores, which is not "
                f"installed (installed: {', '.join(installed) or 'none'}). Install its "
                "distribution."
            )
            raise TaskConfigurationError(msg)
        other = _LENDERS[spec.type] = next(iter(found)).load()
    make = getattr(other, factory, None)
    if make is None:
        if not required:
            return None
        msg = (
            f"Backend {spec.type!r} offers no {factory}, so it cannot hold the RabbitMQ "
            "job-state records. Use a backend that has one (e.g. redis or postgres)."
        )
        raise TaskConfigurationError(msg)
    return make(spec, **kwargs)
