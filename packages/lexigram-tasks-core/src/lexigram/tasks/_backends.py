"""Backend discovery: the `type` in config selects a backend through an entry point.

Backends register in the entry-point group ``lexigram.tasks.backends`` under their type
name (``memory``, ``redis``, ``rabbitmq``, ``postgres``, or a third party's). Listing the
names imports nothing; only the selected backend is imported, so a program using Redis
never imports asyncpg or aio-pika. The built-in memory backend registers the same way.

The core never names a backend: what it needs to know about one it reads from the
backend object's optional self-description (`OPTIONAL_BACKEND_ATTRIBUTES`):
``url_schemes`` (which URLs select it), ``url_field`` (its older per-backend config
field, such as ``redis_url``) and ``options_type``. A backend may also declare its URL
schemes in the entry-point group ``lexigram.tasks.url_schemes`` (one entry point per
scheme, naming the same object as its backend entry point): a URL then finds its backend
without importing the others, which a backend that declares none still costs.

Whatever goes wrong while loading or calling a backend's entry point (an attribute
that does not exist, an object that is not a backend, a factory that raises) becomes a
`BackendError` that names the entry point, the distribution that provides it and the
cause, so the right party is blamed.

A `TaskBackendRegistry` adds backends registered in code (a queue factory or a whole
backend object) in front of the entry points; whatever resolves a type through a
registry (the queue, every optional store, the self-description, `close`) sees them,
and so does a backend asking the spec it was given for another (`TaskBackendSpec.backends`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from lexigram.contracts.tasks import (
    BACKENDS_GROUP,
    URL_SCHEMES_GROUP,
    BackendConflictError,
    BackendError,
    BackendImportError,
    BackendLookupProtocol,
    BackendNotFoundError,
    ClosableBackendProtocol,
    TaskBackendProtocol,
    TaskBackendSpec,
    TaskConfigurationError,
    TaskQueueError,
    TaskQueueProtocol,
    declared_schemes,
    forget_installed_entry_points,
    installed_entry_points,
    mask_url,
    nearest_name,
    scheme_claims,
)
from lexigram.tasks.constants import DEFAULT_DB_SCHEME, FIRST_PARTY_BACKENDS

if TYPE_CHECKING:
    from lexigram.tasks.config import NamedTaskConfig, TaskBackendConfig, TaskConfig

logger = logging.getLogger(__name__)

_cache: dict[str, TaskBackendProtocol] = {}
_entry_points_of: dict[str, EntryPoint] = {}

# How many programs of this process (providers) hold each backend object on each event loop
# (`TaskBackendRegistry.hold_backends`): releasing closes a backend only when none is left.
_holders: dict[tuple[int, asyncio.AbstractEventLoop], int] = {}
# The group as first listed (`installed_entry_points` reads every group in one pass over
# the installed distributions); `clear_backend_cache` forgets both.
_registered: list[EntryPoint] = []
_registered_read = False
# Scheme -> the installed backend types that declare it, and the types that declare any.
_declared: dict[str, list[str]] = {}
_declaring: set[str] = set()
_declared_read = False


class _FunctionBackend(NamedTuple):
    """Adapts a bare `create_queue` function: a backend that offers no optional store."""

    create_queue: Callable[[TaskBackendSpec], TaskQueueProtocol]


def available_backends() -> list[str]:
    """Return the installed backend type names, sorted (imports no backend).

    Returns:
        The names registered in the ``lexigram.tasks.backends`` entry-point group.
    """
    return sorted({ep.name for ep in _registered_entry_points()})


def _registered_entry_points() -> list[EntryPoint]:
    """The group's entry points, read on first use (`clear_backend_cache` forgets them)."""
    global _registered_read  # noqa: PLW0603 - one read per process, like the backends
    if not _registered_read:
        _registered[:] = installed_entry_points(group=BACKENDS_GROUP)
        _registered_read = True
    return _registered


def _dist_name(ep: EntryPoint) -> str:
    dist = ep.dist
    return dist.name if dist is not None else "an unknown distribution"


def _describe(ep: EntryPoint) -> str:
    dist = ep.dist
    if dist is None:
        return ep.value
    return f"{dist.name} {dist.version}"


def _origin(ep: EntryPoint) -> str:
    """``entry point 'x = mod:obj' of distribution acme-x 1.0`` (for messages)."""
    where = f"distribution {_describe(ep)}" if ep.dist is not None else "an unknown distribution"
    return f"entry point '{ep.name} = {ep.value}' in group {BACKENDS_GROUP!r} of {where}"


def _blame(ep: EntryPoint) -> str:
    return (
        f"This is a fault of {_dist_name(ep)}, not of lexigram-tasks: upgrade or reinstall "
        "it, or report it to its maintainers."
    )


def install_hint(type_: str) -> str:
    """The pip command that installs a first-party backend, or "" for any other type.

    SQLite comes with the ``lexigram-tasks`` meta package (no extra); the server
    backends are its extras.
    """
    if type_ in FIRST_PARTY_BACKENDS:
        return f'pip install "lexigram-tasks[{type_}]"'
    if type_ == DEFAULT_DB_SCHEME:
        return "pip install lexigram-tasks (or lexigram-tasks-sqlite alone)"
    return ""


def _suggestion(type_: str, installed: list[str]) -> str | None:
    candidates = sorted(set(installed) | set(FIRST_PARTY_BACKENDS))
    return nearest_name(type_, candidates)


def missing_backend_fix(type_: str) -> str:
    """What to do about a backend type that is not installed: "did you mean", pip, or both.

    The ``pip install "lexigram-tasks[...]"`` hint is given only for a first-party type.
    """
    installed = available_backends()
    close = _suggestion(type_, installed)
    if install_hint(type_):
        return f"Install it with {install_hint(type_)}."
    if close is None:
        return (
            "Check the type for a typo, or install the distribution that registers it in "
            f"the entry-point group {BACKENDS_GROUP!r}."
        )
    if close not in installed:
        return f"Did you mean {close!r}? It is installed with {install_hint(close)}."
    return f"Did you mean {close!r}?"


def _not_found(type_: str) -> BackendNotFoundError:
    installed = available_backends()
    shown = ", ".join(repr(name) for name in installed) or "none"
    msg = (
        f"No task backend named {type_!r} is installed (installed: {shown}). "
        f"{missing_backend_fix(type_)}"
    )
    return BackendNotFoundError(
        msg, details={"type": type_, "suggestion": _suggestion(type_, installed)}
    )


def _select_entry_point(type_: str) -> EntryPoint:
    matches = [ep for ep in _registered_entry_points() if ep.name == type_]
    if not matches:
        raise _not_found(type_)
    if len(matches) == 1:
        return matches[0]  # its distribution's name is read (a METADATA parse) only for errors
    # One distribution can appear twice on sys.path (e.g. an editable and a site
    # install of the same project); that is not a conflict.
    by_dist: dict[str, EntryPoint] = {}
    for ep in matches:
        by_dist.setdefault(ep.dist.name if ep.dist else ep.value, ep)
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
        BackendNotFoundError: No installed distribution provides `type_` (with a "did
            you mean" for a near miss, and the pip command for a first-party type).
        BackendConflictError: Two distributions provide `type_`.
        BackendImportError: The entry point failed to load (missing dependency, missing
            attribute, an error while importing); names the entry point and distribution.
        BackendError: The entry point names something that is not a backend.
    """
    cached = _cache.get(type_)
    if cached is not None:
        return cached
    ep = _select_entry_point(type_)
    try:
        loaded: Any = ep.load()
    except ImportError as exc:
        msg = (
            f"Task backend {type_!r} failed to import ({_origin(ep)}): {type(exc).__name__}: "
            f"{exc}. Install or repair the distribution that provides it, e.g. "
            f'pip install --force-reinstall "{_dist_name(ep)}".'
        )
        raise BackendImportError(msg, details=_details(type_, ep)) from exc
    except Exception as exc:  # any failure inside a third party's import is theirs
        msg = (
            f"Task backend {type_!r} failed to load ({_origin(ep)}): {type(exc).__name__}: "
            f"{exc}. {_blame(ep)}"
        )
        raise BackendImportError(msg, details=_details(type_, ep)) from exc
    backend = _as_backend(loaded)
    if backend is None:
        msg = (
            f"Task backend {type_!r} is not a backend ({_origin(ep)}): it names "
            f"{type(loaded).__name__!r}, which has no create_queue(spec). The entry point "
            f"must name an object with create_queue or a create_queue function. "
            f"{_blame(ep)}"
        )
        raise BackendError(msg, details=_details(type_, ep))
    _cache[type_] = backend
    _entry_points_of[type_] = ep
    return backend


def _as_backend(obj: object) -> TaskBackendProtocol | None:
    """`obj` as a backend: itself if it has `create_queue`, a function wrapped, else None."""
    if isinstance(obj, type):
        return None  # a class has an unbound create_queue: its instance is the backend
    if isinstance(obj, TaskBackendProtocol):
        return obj
    if callable(obj):
        return _FunctionBackend(create_queue=obj)
    return None


def _details(type_: str, ep: EntryPoint) -> dict[str, str]:
    return {"type": type_, "entry_point": ep.value, "distribution": _dist_name(ep)}


def clear_backend_cache() -> None:
    """Forget loaded backends and the group's entry points.

    For tests that install or fake entry points: a backend distribution installed while a
    process runs is found once this is called.
    """
    global _registered_read, _declared_read  # noqa: PLW0603 - see _registered_entry_points
    forget_installed_entry_points()
    _cache.clear()
    _entry_points_of.clear()
    _registered.clear()
    _registered_read = False
    _declared.clear()
    _declaring.clear()
    _declared_read = False


def backend_attribute(type_: str, name: str, default: Any = None) -> Any:
    """Read one of a backend's self-description attributes (`OPTIONAL_BACKEND_ATTRIBUTES`).

    Args:
        type_: The backend type.
        name: One of `OPTIONAL_BACKEND_ATTRIBUTES` or `OPTIONAL_BACKEND_FLAGS`.
        default: What to return when the backend does not declare it.

    Returns:
        The attribute, or `default`.

    Raises:
        BackendError: The backend cannot be loaded.
    """
    return getattr(load_backend(type_), name, default)


def _declared_schemes() -> tuple[dict[str, list[str]], set[str]]:
    """Schemes declared in `URL_SCHEMES_GROUP` -> backend types, and the types declaring any.

    A scheme's entry point names the same object as a backend's entry point, which is
    how it is matched to that backend's type; nothing is imported.
    """
    global _declared_read  # noqa: PLW0603 - one read per process, like the backends
    if not _declared_read:
        _declared.update(
            declared_schemes(
                _registered_entry_points(), installed_entry_points(group=URL_SCHEMES_GROUP)
            )
        )
        _declaring.update(type_ for types in _declared.values() for type_ in types)
        _declared_read = True
    return _declared, _declaring


def _undeclared_schemes(name: str, scheme: str) -> tuple[str, ...]:
    """The ``url_schemes`` of a backend that declares none in entry points (imports it)."""
    try:
        schemes = backend_attribute(name, "url_schemes", ())
    except BackendError:
        logger.debug("Skipping backend %r while resolving scheme %r.", name, scheme)
        return ()
    return tuple(str(s).lower() for s in schemes or ())


def backend_for_scheme(scheme: str) -> str | None:
    """Return the installed backend type that serves URLs of `scheme`, or None.

    A scheme that is itself an installed backend's type name selects that backend
    without importing anything, and so does a scheme declared in `URL_SCHEMES_GROUP`.
    Backends that declare no scheme there are imported and their ``url_schemes`` read;
    one that fails to import is skipped here (it fails with its own message when it is
    selected).

    Raises:
        BackendConflictError: Two installed backends declare the scheme.
    """
    scheme = scheme.lower()
    declared, _ = _declared_schemes()
    claims = scheme_claims(
        scheme, available_backends(), declared, lambda name: _undeclared_schemes(name, scheme)
    )
    if len(claims) > 1:
        msg = (
            f"URL scheme {scheme!r} is served by several installed backends "
            f"({', '.join(sorted(claims))}). Give the backend type explicitly instead of a URL."
        )
        raise BackendConflictError(msg, details={"scheme": scheme})
    return claims[0] if claims else None


def known_schemes() -> list[str]:
    """Every URL scheme an installed backend serves, sorted (imports the undeclared ones)."""
    declared, declaring = _declared_schemes()
    schemes = set(declared)
    for name in available_backends():
        if name not in declaring:
            schemes.update(_undeclared_schemes(name, ""))
    return sorted(schemes)


def _loaded_origin(type_: str, backend: object = None) -> str:
    """Where `backend` (default: the loaded one) of `type_` came from, for messages."""
    if backend is not None and _cache.get(type_) is not backend:
        return f"backend registered in code as {type_!r}"
    ep = _entry_points_of.get(type_)
    return _origin(ep) if ep is not None else f"backend {type_!r}"


def _wrap_call(
    spec: TaskBackendSpec, what: str, exc: Exception, backend: object = None
) -> BackendError:
    origin = _loaded_origin(spec.type, backend)
    msg = (
        f"Task backend {spec.type!r} failed in {what} ({origin}): {type(exc).__name__}: "
        f"{exc}. This is a fault of the backend, not of lexigram-tasks: upgrade it or "
        "report it to its maintainers."
    )
    return BackendError(msg, details={"type": spec.type, "call": what})


def create_queue(spec: TaskBackendSpec) -> TaskQueueProtocol:
    """Build the queue for `spec` with the backend its `type` names.

    Args:
        spec: The backend spec (type, url, queue name, options).

    Returns:
        The backend's queue.

    Raises:
        TaskQueueError: The backend's own error (e.g. `TaskConfigurationError` for a
            bad option) passes through unchanged.
        BackendError: Loading failed, the factory raised another exception, or it
            returned something that is not a `TaskQueueProtocol`.
    """
    return _build_queue(load_backend(spec.type), _handed(spec, INSTALLED))


class _InstalledBackends:
    """The installed backends (entry points) as a `BackendLookupProtocol`."""

    def __repr__(self) -> str:
        return "the installed backends"

    def backend(self, backend_type: str, /) -> TaskBackendProtocol:
        return load_backend(backend_type)

    def backend_for_scheme(self, scheme: str, /) -> str | None:
        return backend_for_scheme(scheme)


INSTALLED: BackendLookupProtocol = _InstalledBackends()
"""The lookup a spec carries when the module-level functions (no registry) build from it."""


def _handed(spec: TaskBackendSpec, backends: BackendLookupProtocol) -> TaskBackendSpec:
    """`spec` as a backend is given it: carrying the lookup that resolved its type.

    A lookup already set is kept (a backend handing a spec on to the one it borrows from).
    """
    return spec if spec.backends is not None else dataclasses.replace(spec, backends=backends)


def _build_queue(backend: TaskBackendProtocol, spec: TaskBackendSpec) -> TaskQueueProtocol:
    try:
        # Typed as object: a third-party factory may return anything, and this is the check.
        queue: object = backend.create_queue(spec)
    except TaskQueueError:
        raise
    except Exception as exc:
        raise _wrap_call(spec, "create_queue", exc, backend) from exc
    if not isinstance(queue, TaskQueueProtocol):
        origin = _loaded_origin(spec.type, backend)
        msg = (
            f"Task backend {spec.type!r} returned {type(queue).__name__!r} from "
            f"create_queue ({origin}), which does not implement TaskQueueProtocol. "
            "This is a fault of the backend: report it to its maintainers."
        )
        raise BackendError(msg, details={"type": spec.type, "call": "create_queue"})
    return queue


IN_MEMORY = "the in-memory version"
"""What `create_store` says is used instead of a missing factory, unless told otherwise."""


def create_store(
    spec: TaskBackendSpec, factory: str, *, fallback: str = IN_MEMORY, **kwargs: Any
) -> Any | None:
    """Build one of a backend's optional stores, or None when it offers none.

    Args:
        spec: The backend spec.
        factory: The factory name, one of `OPTIONAL_BACKEND_FACTORIES`.
        fallback: What the caller uses when the backend offers none, for the log line
            (``"Task backend 'x' offers no <factory>; using <fallback>."``).
        **kwargs: Extra arguments for the factory (e.g. a rate limiter's rate).

    Returns:
        The store, or None; the caller then uses `fallback`.

    Raises:
        BackendError: The backend cannot be loaded, or the factory raised an exception
            that is not one of ours.
    """
    return _build_store(
        load_backend(spec.type), _handed(spec, INSTALLED), factory, fallback, kwargs
    )


def _build_store(
    backend: TaskBackendProtocol,
    spec: TaskBackendSpec,
    factory: str,
    fallback: str,
    kwargs: dict[str, Any],
) -> Any | None:
    make = getattr(backend, factory, None)
    if make is None:
        # Worth telling the user of a shared backend (results then die with the process);
        # for a process-local one it is what was asked for.
        local = _process_local(backend)
        logger.log(
            logging.DEBUG if local else logging.INFO,
            "Task backend %r offers no %s; using %s.",
            spec.type,
            factory,
            fallback,
        )
        return None
    try:
        return make(spec, **kwargs)
    except TaskQueueError:
        raise
    except Exception as exc:
        raise _wrap_call(spec, factory, exc, backend) from exc


def _process_local(backend: TaskBackendProtocol) -> bool:
    # A backend is shared between processes unless it declares otherwise.
    return getattr(backend, "process_local", False) is True


def is_process_local(type_: str) -> bool:
    """Whether the backend `type_` keeps everything inside one process (``process_local``).

    Nothing a process-local backend holds is visible to another process or command,
    and the core's in-memory stores lose nothing beside it. A backend that cannot be
    loaded counts as shared (building it fails with its own message).
    """
    return TaskBackendRegistry().is_process_local(type_)


def url_required(type_: str) -> bool:
    """Whether a backend `type_` that declares ``url_schemes`` needs a URL to work.

    Reads the backend's ``url_required`` flag (default True); False for a backend that
    works without one (SQLite uses its default file). A backend declaring no scheme, or
    one that cannot be loaded, needs none as far as the configuration check goes.
    """
    return TaskBackendRegistry().url_required(type_)


def _url_required(backend: TaskBackendProtocol) -> bool:
    if not getattr(backend, "url_schemes", ()):
        return False
    declared = getattr(backend, "url_required", True)
    return declared if isinstance(declared, bool) else True


async def _close(backend: object, type_: str) -> None:
    """Call the backend's optional `close` (sync or async); a failure is logged, not raised."""
    if not isinstance(backend, ClosableBackendProtocol):
        return
    try:
        result = backend.close()
        if inspect.isawaitable(result):
            await result
    except Exception:  # the program is ending its use of the backend anyway
        logger.warning(
            "Closing task backend %r (%s) failed.",
            type_,
            _loaded_origin(type_, backend),
            exc_info=True,
        )


async def close_backend(type_: str) -> None:
    """Close the loaded backend `type_` (its optional `close`) and forget the loaded object.

    The one place that closes a backend object: call it when the program is done with
    the backend in this event loop, after closing the queues and stores built from it
    (a command ends, a provider shuts down). A type that was never loaded has nothing
    to release; a failing `close` is logged, not raised. The next `load_backend` of the
    type loads it again.

    Args:
        type_: The backend type.
    """
    backend = _cache.get(type_)
    if backend is None:
        return
    await _close(backend, type_)
    _cache.pop(type_, None)
    _entry_points_of.pop(type_, None)


async def release_backends(types: Iterable[str]) -> None:
    """`close_backend` for each distinct type in `types` that no provider holds, in order."""
    await TaskBackendRegistry().release_backends(types)


def url_of(
    config: NamedTaskConfig | TaskBackendConfig, *, registry: TaskBackendRegistry | None = None
) -> tuple[str, str | None]:
    """Return ``(field, url)``: the config field that holds the backend's URL, and it.

    The generic ``url`` wins; otherwise the field the backend declares as its
    ``url_field`` (e.g. ``redis_url``) is read, from `registry`'s backend when one is
    given. A backend that cannot be loaded yields ``("url", None)``: building it fails
    later with its own message.
    """
    secret = getattr(config, "url", None)
    if secret is not None:
        return "url", secret.get_secret_value() or None
    try:
        field = (registry or TaskBackendRegistry()).backend_attribute(config.type, "url_field")
    except BackendError:
        return "url", None
    value = getattr(config, field, None) if isinstance(field, str) else None
    if value is None:
        return field if isinstance(field, str) else "url", None
    text = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
    return str(field), text or None


def shown_url(text: str) -> str:
    """A URL-like value as a message shows it: no password, even when its ``://`` is wrong.

    `mask_url` for a URL; for a value without ``://`` (a mistyped scheme separator),
    nothing before its last ``@``, where a password would be.
    """
    if "://" in text:
        return mask_url(text)
    _, at, host = text.rpartition("@")
    return f"***@{host}" if at else text


def check_url_syntax(url: str, where: str) -> None:
    """Refuse a URL that no parser can read: a port that is not a number, a broken IPv6 host.

    A comma-separated list of hosts (a cluster, Sentinel) is accepted when each host is.

    Checked where a URL enters (``--backend``, a configuration's ``url``), so the user
    reads which URL and which part, instead of a client library's error at first use.

    Raises:
        TaskConfigurationError: Naming `where`, the URL (password masked) and the part.
    """
    try:
        parts = urlsplit(url)
        # A cluster's or Sentinel's URL lists several hosts (``amqp://u:p@a:5672,b:5672/``,
        # ``redis+sentinel://s1:26379,s2:26379/name/0``): each one is checked.
        _, _, hosts = parts.netloc.rpartition("@")
        for host in hosts.split(",") if "," in hosts else [hosts]:
            urlsplit(f"{parts.scheme}://{host}").port  # noqa: B018 - reading it is the check
    except ValueError as exc:
        shown = shown_url(url)
        named = f"{where} {shown!r}" if where.startswith("-") else f"{where} = {shown!r}"
        # The parser quotes what it read as the port, which is part of the password when
        # an unescaped "/" cut the password short: then the cause goes unquoted.
        cause = str(exc) if shown == url else "its host or port cannot be read"
        msg = (
            f"{named} is not a valid URL ({cause}). Write it as scheme://host:port/... (the "
            "port a number, an IPv6 host in brackets such as [::1], a '/' or '@' in the "
            "password written as %2F or %40)."
        )
        raise TaskConfigurationError(msg, details={"url": shown}) from None


def _unserved_url(where: str, url: str) -> TaskConfigurationError:
    """The error of a ``url`` whose scheme no installed backend serves, `type` unset."""
    schemes = ", ".join(f"{s}://" for s in known_schemes()) or "none"
    if "://" in url:
        what = f"has the scheme {urlsplit(url).scheme.lower()!r}, which no installed backend serves"
    else:
        what = "is not a URL (its '://' is missing or mistyped)"
    msg = (
        f"{where}.url = {shown_url(url)!r} {what} (schemes: {schemes}). Fix the URL, or set "
        f"{where}.type to the backend it is for."
    )
    return TaskConfigurationError(msg, details={"url": shown_url(url)})


def _type_for_url(
    config: NamedTaskConfig | TaskBackendConfig,
    field: str,
    url: str | None,
    registry: TaskBackendRegistry | None,
) -> str:
    """The backend type, agreeing with the scheme of the generic ``url``.

    A config that sets ``url`` and leaves ``type`` at its default gets the backend that
    serves the URL's scheme (``url: redis://...`` alone means Redis, as ``--backend
    redis://...`` does). One that sets both must make them agree.

    Raises:
        TaskConfigurationError: ``type`` names a backend that does not serve the URL's
            scheme.
    """
    if field != "url" or not url:
        return config.type
    type_set = "type" in config.model_fields_set
    check_url_syntax(url, f"{_config_path_of(config)}.url")
    if "://" not in url:
        if type_set:
            return config.type  # the backend reads its own URL, and names what is wrong
        raise _unserved_url(_config_path_of(config), url)
    scheme = urlsplit(url).scheme.lower()
    served = (registry or TaskBackendRegistry()).backend_for_scheme(scheme)
    if not type_set:
        if served is None:
            # Falling back to the default type would drop the URL: a typo in the scheme
            # would run on the in-memory backend and lose every job at exit.
            raise _unserved_url(_config_path_of(config), url)
        return served
    if served is None or served == config.type:
        return config.type
    where = _config_path_of(config)
    msg = (
        f"{where}.url is a {scheme}:// URL, served by the {served!r} backend, but "
        f"{where}.type is {config.type!r}. Set type: {served} (or drop type and let the "
        "URL choose), or give a URL of the backend you meant."
    )
    raise TaskConfigurationError(msg, details={"type": config.type, "scheme": scheme})


def _config_path_of(config: NamedTaskConfig | TaskBackendConfig) -> str:
    """Where `config` sits in the configuration, for messages (``tasks.backend``...)."""
    name = getattr(config, "name", None)  # only the entries of tasks.backends have one
    return f"tasks.backends[{name}]" if name else "tasks.backend"


def spec_from_config(
    config: NamedTaskConfig | TaskBackendConfig,
    *,
    name: str | None = None,
    registry: TaskBackendRegistry | None = None,
) -> TaskBackendSpec:
    """Build the `TaskBackendSpec` a backend factory receives from a config model.

    The generic `url` wins; otherwise the backend's own ``url_field`` is read (see
    `url_of`). Secrets are unwrapped here and nowhere else.

    Args:
        config: A `NamedTaskConfig` or a `TaskBackendConfig`.
        name: The backend name (defaults to the config's `name`, or "default").
        registry: Where the backend's self-description is read (its registrations
            first); None reads the installed entry points only.

    Returns:
        The spec.
    """
    field, url = url_of(config, registry=registry)
    return TaskBackendSpec(
        name=name or getattr(config, "name", None) or "default",
        type=_type_for_url(config, field, url, registry),
        url=url,
        queue_name=config.queue_name,
        options=dict(config.options),
    )


QueueFactory = Callable[[TaskBackendSpec], TaskQueueProtocol]
"""A bare queue factory: what `TaskBackendRegistry.register` takes beside a backend object."""


class TaskBackendRegistry:
    """Resolves backend types: backends registered here first, then entry points.

    Everything that resolves a type through a registry (the queue, every optional
    store, the self-description attributes, closing) sees its registrations, so a
    backend registered in code runs a whole `TaskProvider` like an installed one. The
    registry is also the `BackendLookupProtocol` of every spec it hands a backend
    (`TaskBackendSpec.backends`): a backend that borrows another's stores (RabbitMQ's
    ``stores`` option) finds a registered one too.

    Example:
        registry = TaskBackendRegistry.with_defaults()
        registry.register("acme", AcmeBackend())        # queue and stores
        registry.register("plain", make_plain_queue)    # a queue only
        queue = registry.create_backend(TaskConfig())   # a MemoryTaskQueue
    """

    def __init__(self) -> None:
        self._backends: dict[str, TaskBackendProtocol] = {}

    @classmethod
    def with_defaults(cls) -> TaskBackendRegistry:
        """Return a registry that resolves every installed backend through entry points."""
        return cls()

    def register(self, backend_type: str, backend: TaskBackendProtocol | QueueFactory) -> None:
        """Register (or override) the backend of `backend_type` in this registry.

        Args:
            backend_type: The type name configurations select it by.
            backend: A backend object (`TaskBackendProtocol`: `create_queue` and any
                optional factories, attributes and `close`), or a bare queue factory
                ``(spec) -> queue``; a bare factory offers no optional store, so every
                caller uses its fallback (the in-memory stores).

        Raises:
            TypeError: `backend` is neither (e.g. the backend's class, not an instance).
        """
        found = _as_backend(backend)
        if found is None:
            what = f"the class {backend.__name__}" if isinstance(backend, type) else repr(backend)
            msg = (
                f"Cannot register {what} as task backend {backend_type!r}: pass an object "
                "with create_queue(spec) (an instance, not its class) or a queue factory "
                "function (spec) -> queue."
            )
            raise TypeError(msg)
        self._backends[backend_type] = found

    def available_backends(self) -> list[str]:
        """Return the known type names: registered ones and installed entry points."""
        return sorted(set(self._backends) | set(available_backends()))

    def __contains__(self, backend_type: object) -> bool:
        return backend_type in self.available_backends()

    def backend(self, backend_type: str) -> TaskBackendProtocol:
        """Return the backend of `backend_type`: the one registered here, else the installed one.

        Raises:
            BackendError: Not registered, and loading the installed one failed (see
                `load_backend`).
        """
        found = self._backends.get(backend_type)
        return found if found is not None else load_backend(backend_type)

    def backend_attribute(self, backend_type: str, name: str, default: Any = None) -> Any:
        """`backend_attribute` over this registry's backends (registrations first)."""
        return getattr(self.backend(backend_type), name, default)

    def is_process_local(self, backend_type: str) -> bool:
        """`is_process_local` over this registry's backends (registrations first)."""
        try:
            return _process_local(self.backend(backend_type))
        except BackendError:
            return False  # counts as shared: building it fails with its own message

    def url_required(self, backend_type: str) -> bool:
        """`url_required` over this registry's backends (registrations first)."""
        try:
            return _url_required(self.backend(backend_type))
        except BackendError:
            return False  # needs none as far as the check goes: building it says why

    def backend_for_scheme(self, scheme: str) -> str | None:
        """`backend_for_scheme`, where a registered backend's ``url_schemes`` claim too.

        A registration overrides the installed backend of the same type, schemes included.

        Raises:
            BackendConflictError: Two backends claim the scheme.
        """
        scheme = scheme.lower()
        claims = [
            type_
            for type_, backend in self._backends.items()
            if scheme in (str(s).lower() for s in getattr(backend, "url_schemes", ()) or ())
        ]
        installed = backend_for_scheme(scheme)
        # An installed backend overridden by a registration claims through it alone.
        if installed is not None and installed not in self._backends:
            claims.append(installed)
        if len(claims) > 1:
            msg = (
                f"URL scheme {scheme!r} is served by several backends "
                f"({', '.join(sorted(claims))}). Give the backend type explicitly instead "
                "of a URL."
            )
            raise BackendConflictError(msg, details={"scheme": scheme})
        return claims[0] if claims else None

    def create_queue(self, spec: TaskBackendSpec) -> TaskQueueProtocol:
        """Build the queue for `spec`, preferring a backend registered here.

        Raises:
            TaskQueueError: The backend's own error passes through unchanged.
            BackendError: Loading failed, the factory raised another exception, or it
                returned something that is not a `TaskQueueProtocol`.
        """
        return _build_queue(self.backend(spec.type), _handed(spec, self))

    def create_store(
        self, spec: TaskBackendSpec, factory: str, *, fallback: str = IN_MEMORY, **kwargs: Any
    ) -> Any | None:
        """Build one of the backend's optional stores, or None (see module-level `create_store`).

        A backend registered here as a bare queue factory offers none.

        Args:
            spec: The backend spec.
            factory: The factory name, one of `OPTIONAL_BACKEND_FACTORIES`.
            fallback: What the caller uses when the backend offers none, for the log line.
            **kwargs: Extra arguments for the factory (e.g. a rate limiter's rate).

        Raises:
            BackendError: The backend cannot be loaded, or the factory raised an
                exception that is not one of ours.
        """
        return _build_store(self.backend(spec.type), _handed(spec, self), factory, fallback, kwargs)

    def create_backend(self, config: TaskConfig) -> TaskQueueProtocol:
        """Build the queue of a single-backend `TaskConfig` (its `backend` section)."""
        return self.create_queue(spec_from_config(config.backend, name=config.name, registry=self))

    async def close_backend(self, backend_type: str) -> None:
        """Close the backend of `backend_type` (its optional `close`); see `close_backend`.

        A registered backend is closed and stays registered; an installed one is
        closed and forgotten, as by the module-level `close_backend`.
        """
        found = self._backends.get(backend_type)
        if found is None:
            await close_backend(backend_type)
        else:
            await _close(found, backend_type)

    def hold_backends(self, types: Iterable[str]) -> None:
        """Count the caller as a user of each distinct backend in `types`, on this loop.

        A provider holds its backends while it runs and gives them back with
        ``release_backends(types, held=True)``: a backend object (and the connection pools
        it shares between every queue and store built from it) is closed only when no
        holder on the loop is left, so two providers of one process on the same backend
        do not cut each other's connections. A type not loaded yet is skipped.
        """
        loop = asyncio.get_running_loop()
        for type_ in dict.fromkeys(types):
            backend = self._loaded(type_)
            if backend is not None:
                key = (id(backend), loop)
                _holders[key] = _holders.get(key, 0) + 1

    async def release_backends(self, types: Iterable[str], *, held: bool = False) -> None:
        """`close_backend` for each distinct type in `types` that nobody holds, in order.

        Args:
            types: The backend types (e.g. every stack's).
            held: The caller holds them (`hold_backends`): its hold is given back first.
                A backend another program still holds on this loop stays open.
        """
        loop = asyncio.get_running_loop()
        for type_ in dict.fromkeys(types):
            backend = self._loaded(type_)
            if backend is not None:
                key = (id(backend), loop)
                left = _holders.get(key, 0) - (1 if held else 0)
                if left > 0:
                    _holders[key] = left
                    continue
                _holders.pop(key, None)
            await self.close_backend(type_)

    def _loaded(self, backend_type: str) -> TaskBackendProtocol | None:
        """The backend object of `backend_type` in use here, or None if none was loaded."""
        found = self._backends.get(backend_type)
        return found if found is not None else _cache.get(backend_type)


__all__ = [
    "BACKENDS_GROUP",
    "IN_MEMORY",
    "QueueFactory",
    "TaskBackendRegistry",
    "available_backends",
    "backend_attribute",
    "backend_for_scheme",
    "clear_backend_cache",
    "close_backend",
    "create_queue",
    "create_store",
    "install_hint",
    "is_process_local",
    "known_schemes",
    "load_backend",
    "missing_backend_fix",
    "release_backends",
    "spec_from_config",
    "url_of",
    "url_required",
]
