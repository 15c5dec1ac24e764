"""Stores borrowed from another installed backend (RabbitMQ holds jobs, not records).

RabbitMQ is a transport: it holds jobs, not results, progress, schedules or locks.
The ``stores`` option names another backend (``redis://...``, ``postgresql://...`` or
``{"type": ..., "url": ..., "options": {...}}``) whose store factories this backend
hands the calls to; ``state_store`` (default: the ``stores`` backend's cache) is where
the queue keeps its job-state records. No backend is named here: a spec the core built
carries the core's lookup (`TaskBackendSpec.backends`, the registry the configuration's
``type`` is resolved with, so a backend registered in code can lend its stores too), and
only a queue built outside the core (``RabbitMQTaskQueue(..., stores=...)`` on its own)
finds the backend through the entry points and the URL schemes they declare.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from lexigram.contracts.tasks import (
    BACKENDS_GROUP,
    URL_SCHEMES_GROUP,
    BackendConflictError,
    BackendConnectionError,
    BackendError,
    BackendLookupProtocol,
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

# The installed backend of each type, for specs built outside the core, looked up once per
# process (as the core loads a backend once).
_INSTALLED: dict[str, Any] = {}

# Every backend object stores were borrowed from without the core's lookup (a spec built
# outside the core), by identity and the event loop it was borrowed on (None: outside
# one): their shared connection pools, which are per loop, are released when this
# backend is, on that loop (`close_lenders`). One found through the lookup is the
# program's to release: the core releases it after this backend, unless another program
# still holds it.
_LENDERS: dict[tuple[int, asyncio.AbstractEventLoop | None], Any] = {}


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


def state_store_for(
    options: RabbitMQOptions, queue_name: str, backends: BackendLookupProtocol | None = None
) -> CacheBackendProtocol | None:
    """Build the shared job-state store `options` ask for, or None for the in-process one.

    The caller owns what this builds and closes it (the backend it comes from shares
    its connections between the stores it builds, so one per queue object costs none).
    `backends` finds the backend the setting names (None: the installed ones).

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
    other = other_spec(setting, "rabbitmq", queue_name, option, backends)
    store: CacheBackendProtocol = delegate(other, "create_cache_backend", required=True)
    return store


@dataclasses.dataclass(frozen=True)
class StoreOrigin:
    """Where a queue's shared job-state store was named, for the errors about it.

    Attributes:
        option: ``stores`` or ``state_store`` (the option, or the constructor argument).
        url: The store's URL with its password masked; None when it was given as an
            object.
    """

    option: str
    url: str | None = None

    def describe(self) -> str:
        """``option stores = redis://:***@host:6379/0``, or without the URL when unknown."""
        return f"option {self.option} = {self.url}" if self.url else f"option {self.option}"


def store_origin(options: RabbitMQOptions) -> StoreOrigin:
    """The option `state_store_for` built (or took) the job-state store from."""
    option = "state_store" if options.state_store is not None else "stores"
    setting = getattr(options, option)
    if isinstance(setting, Mapping):
        setting = setting.get("url")
    return StoreOrigin(option, mask_url(setting) if isinstance(setting, str) else None)


async def check_state_store(
    store: CacheBackendProtocol,
    key: str,
    origin: StoreOrigin,
    queue_name: str,
    within: float,
) -> None:
    """Read `key` once, so a store a worker could not record jobs in fails its start.

    Raises:
        BackendConnectionError: The read failed or took longer than `within` seconds,
            in one line naming the option the store came from (the store's own error,
            which names its server and the fix, follows).
    """
    where = f"The job-state store of RabbitMQ queue {queue_name!r}, {origin.describe()},"
    fix = f"Correct the {origin.option} option (its URL or options) or that server."
    deadline = asyncio.timeout(within)
    try:
        async with deadline:
            await store.get(key)
    except Exception as exc:  # any failed read: the worker could record no job either
        if isinstance(exc, TimeoutError) and deadline.expired():
            # A silent server: the store's own client may retry far longer than this.
            msg = (
                f"{where} did not answer a read within connect_timeout ({within:g} s). "
                f"Check that its server is running and reachable. {fix}"
            )
        else:
            msg = f"{where} failed a read: {_sentence(exc)} {fix}"
        raise BackendConnectionError(msg, details=_details(origin)) from exc


def _sentence(exc: BaseException) -> str:
    """The store's own message on one line, as a sentence (with its type unless ours)."""
    text = " ".join(str(exc).split())
    if not isinstance(exc, BackendConnectionError) or not text:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if text.endswith(".") else f"{text}."


def _details(origin: StoreOrigin) -> dict[str, object]:
    return {"backend": "rabbitmq", "option": origin.option, "reason": "state_store"}


async def close_store(store: object | None) -> None:
    """Close a store built by another backend (its ``close`` or ``aclose``, if any)."""
    close = getattr(store, "close", None) or getattr(store, "aclose", None)
    if close is None:
        return
    result = close()
    if inspect.isawaitable(result):
        await result


async def close_lenders() -> None:
    """Release what the backends stores were borrowed from hold on this loop (their pools).

    Only those found without the core's lookup: the core releases the others itself.
    Those borrowed on a loop that has ended are forgotten (their pools ended with it).
    """
    loop = asyncio.get_running_loop()
    for key in list(_LENDERS):
        borrowed_on = key[1]
        if borrowed_on is loop or borrowed_on is None:
            await close_store(_LENDERS.pop(key))
        elif borrowed_on.is_closed():
            del _LENDERS[key]


def borrow(spec: TaskBackendSpec, factory: str, **kwargs: Any) -> Any | None:
    """Call `factory` of the ``stores`` backend of `spec`, or return None without one."""
    setting = RabbitMQOptions.from_options(spec.options, name=spec.name).stores
    if setting is None:
        return None
    other = other_spec(setting, spec.name, spec.queue_name, "stores", spec.backends)
    return delegate(other, factory, required=False, **kwargs)


def other_spec(
    setting: object,
    name: str,
    queue_name: str,
    option: str,
    backends: BackendLookupProtocol | None = None,
) -> TaskBackendSpec:
    """The spec of the backend a ``stores`` / ``state_store`` setting names.

    It carries `backends`, the lookup that found it (None: the installed backends).
    """
    if isinstance(setting, str):
        setting = {"url": setting}
    if not isinstance(setting, Mapping):
        msg = (
            f"RabbitMQ option {option}={setting!r} is not supported. Pass a redis:// or "
            "postgresql:// URL, or a mapping {'type': 'redis', 'url': ..., 'options': {...}}."
        )
        raise TaskConfigurationError(msg, details={"option": option})
    url = str(setting["url"]) if setting.get("url") is not None else None
    type_ = str(setting.get("type") or _type_from_url(url, option, backends))
    options = setting.get("options") or {}
    return TaskBackendSpec(
        name=name,
        type=type_,
        url=url,
        queue_name=queue_name,
        options=dict(options),
        backends=backends,
    )


def _looked_up_type(url: str | None, option: str, backends: BackendLookupProtocol) -> str:
    """The backend (other than RabbitMQ) that `backends` says serves the URL's scheme."""
    scheme = urlsplit(url or "").scheme.lower()
    shown = mask_url(url) if url else url
    try:
        found = backends.backend_for_scheme(scheme) if scheme else None
    except BackendConflictError as exc:
        msg = f"RabbitMQ option {option} has URL {shown!r}: {exc}"
        raise TaskConfigurationError(msg, details={"option": option}) from exc
    if found is None or found == "rabbitmq":
        msg = (
            f"RabbitMQ option {option} has URL {shown!r}, whose scheme is served by no "
            "backend that keeps records (RabbitMQ holds jobs only). Use the URL of one "
            "that does (e.g. redis:// or postgresql://), or give {'type': ..., 'url': ...}."
        )
        raise TaskConfigurationError(msg, details={"option": option})
    return found


def _type_from_url(url: str | None, option: str, lookup: BackendLookupProtocol | None) -> str:
    """The backend (other than RabbitMQ) that serves the URL's scheme.

    Asked of `lookup` when the core gave one; else decided among the installed
    backends as the core decides a backend URL's (`scheme_claims`): a scheme that is a
    backend's type name, else the schemes backends declare in entry points (nothing
    imported), else the ``url_schemes`` of those that declare none.
    """
    if lookup is not None:
        return _looked_up_type(url, option, lookup)
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
        raise TaskConfigurationError(msg, details={"option": option})
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
    raise TaskConfigurationError(msg, details={"option": option})


def _lender(spec: TaskBackendSpec) -> Any:
    """The backend object of `spec.type`: from the spec's lookup, else the installed one."""
    if spec.backends is not None:
        try:
            return spec.backends.backend(spec.type)
        except BackendError as exc:
            msg = f"RabbitMQ options name backend {spec.type!r} for stores: {exc}"
            raise TaskConfigurationError(msg) from exc
    other = _INSTALLED.get(spec.type)
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
        other = _INSTALLED[spec.type] = next(iter(found)).load()
    return other


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def delegate(spec: TaskBackendSpec, factory: str, *, required: bool, **kwargs: Any) -> Any:
    """Call `factory` of the backend `spec.type` (None if it has none)."""
    other = _lender(spec)
    if spec.backends is None:
        _LENDERS.setdefault((id(other), _running_loop()), other)
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
