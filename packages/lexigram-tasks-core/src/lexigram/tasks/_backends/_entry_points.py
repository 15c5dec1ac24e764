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

The process's one cache of loaded backends and of the groups as read lives here, the
bottom of the package, so that `clear_backend_cache` forgets everything in one place:
the other modules read (and `close_backend` pops) these objects, never copies of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from lexigram.contracts.tasks import (
    BACKENDS_GROUP,
    URL_SCHEMES_GROUP,
    BackendConflictError,
    BackendError,
    BackendImportError,
    BackendNotFoundError,
    InstalledEntryPoint,
    TaskBackendProtocol,
    TaskBackendSpec,
    TaskQueueProtocol,
    declared_schemes,
    forget_installed_entry_points,
    installed_entry_points,
    nearest_name,
    scheme_claims,
)
from lexigram.tasks.constants import BACKEND_MEMORY, DEFAULT_DB_SCHEME, FIRST_PARTY_BACKENDS

# The name of the module this package was: logging configurations (and the CLI's, which
# sets its level) that name it keep seeing the records of every module of the package.
logger = logging.getLogger("lexigram.tasks._backends")

_cache: dict[str, TaskBackendProtocol] = {}
_entry_points_of: dict[str, InstalledEntryPoint] = {}
# The group as first listed (`installed_entry_points` reads every group in one pass over
# the installed distributions); `clear_backend_cache` forgets both.
_registered: list[InstalledEntryPoint] = []
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


def _registered_entry_points() -> list[InstalledEntryPoint]:
    """The group's entry points, read on first use (`clear_backend_cache` forgets them)."""
    global _registered_read  # noqa: PLW0603 - one read per process, like the backends
    if not _registered_read:
        _registered[:] = installed_entry_points(group=BACKENDS_GROUP)
        _registered_read = True
    return _registered


def _dist_name(ep: InstalledEntryPoint) -> str:
    dist = ep.dist
    return dist.name if dist is not None else "an unknown distribution"


def _describe(ep: InstalledEntryPoint) -> str:
    dist = ep.dist
    if dist is None:
        return ep.value
    return f"{dist.name} {dist.version}"


def _origin(ep: InstalledEntryPoint) -> str:
    """``entry point 'x = mod:obj' of distribution acme-x 1.0`` (for messages)."""
    where = f"distribution {_describe(ep)}" if ep.dist is not None else "an unknown distribution"
    return f"entry point '{ep.name} = {ep.value}' in group {BACKENDS_GROUP!r} of {where}"


def _blame(ep: InstalledEntryPoint) -> str:
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


def _select_entry_point(type_: str) -> InstalledEntryPoint:
    matches = [ep for ep in _registered_entry_points() if ep.name == type_]
    if not matches:
        raise _not_found(type_)
    if len(matches) == 1:
        return matches[0]  # its distribution's name is read (a METADATA parse) only for errors
    # One distribution can appear twice on sys.path (e.g. an editable and a site
    # install of the same project); that is not a conflict.
    by_dist: dict[str, InstalledEntryPoint] = {}
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


def adopt_backend(type_: str, backend: TaskBackendProtocol) -> bool:
    """Resolve `type_` to `backend` in this process, unless a distribution provides `type_`.

    What the command line does with the backends an APP's `TaskProvider` registered in
    code (`TaskBackendRegistry.register`), so that ``worker APP:provider`` builds the
    backend the provider builds; forgotten like a loaded backend (`close_backend`,
    `clear_backend_cache`).

    Returns:
        Whether it was adopted; False when an installed backend has the type (the
        installed one then serves the commands).
    """
    if type_ in available_backends():
        return False
    _cache[type_] = backend
    return True


def _as_backend(obj: object) -> TaskBackendProtocol | None:
    """`obj` as a backend: itself if it has `create_queue`, a function wrapped, else None."""
    if isinstance(obj, type):
        return None  # a class has an unbound create_queue: its instance is the backend
    if isinstance(obj, TaskBackendProtocol):
        return obj
    if callable(obj):
        return _FunctionBackend(create_queue=obj)
    return None


def _details(type_: str, ep: InstalledEntryPoint) -> dict[str, str]:
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


# The core's own memory backend, which serves no URL (it is chosen by its type name):
# resolving another backend's URL need not import it to read that.
_MEMORY_BACKEND = "lexigram.tasks.backends.memory:backend"


def _undeclared_schemes(name: str, scheme: str) -> tuple[str, ...]:
    """The ``url_schemes`` of a backend that declares none in entry points (imports it)."""
    if name == BACKEND_MEMORY and all(
        ep.value == _MEMORY_BACKEND for ep in _registered_entry_points() if ep.name == name
    ):
        return ()
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
