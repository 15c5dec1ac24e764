"""Building queues and stores from a `TaskBackendSpec`, and closing the backends.

Every call into a backend's factories goes through `_build_queue` and `_build_store`, so
one place decides what passes through (the backend's own `TaskQueueError`), what becomes
a `BackendError` that blames the backend (any other exception, a queue that is not a
`TaskQueueProtocol` or that reports another `queue_name` than the spec's) and what a
missing optional store means (None: the caller's fallback). The module-level functions
build from the installed backends (`INSTALLED`); `TaskBackendRegistry` builds through the
same two with its registrations in front.

`close_backend` is the one place that closes a backend object, and so the one place
besides `clear_backend_cache` that makes the process forget a loaded backend.

A backend may hand part of its work to another (RabbitMQ's ``stores`` option names the
backend that keeps its results): it finds that one through the lookup of the spec it is
given, which notes the lender (`lenders_of`). The program that holds and releases the
borrower holds and releases its lenders with it (`TaskBackendRegistry.release_backends`),
so a lender is closed when nobody uses it any more, never by the borrower while another
program of the process still does.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from typing import Any

from lexigram.contracts.tasks import (
    BackendError,
    BackendLookupProtocol,
    ClosableBackendProtocol,
    TaskBackendProtocol,
    TaskBackendSpec,
    TaskQueueError,
    TaskQueueProtocol,
)
from lexigram.tasks._backends._entry_points import (
    _cache,
    _entry_points_of,
    _loaded_origin,
    backend_for_scheme,
    load_backend,
    logger,
)


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
            returned something that is not a `TaskQueueProtocol` or a queue whose
            `queue_name` is not ``spec.queue_name``.
    """
    backend = load_backend(spec.type)
    return _build_queue(backend, _handed(spec, INSTALLED, backend))


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


# The types each backend object (by id) borrowed from through its spec's lookup.
_lenders: dict[int, dict[str, None]] = {}


class _Borrowing:
    """The lookup handed to one backend: `lookup`, noting the types the backend borrows."""

    __slots__ = ("_borrower", "_lookup")

    def __init__(self, lookup: BackendLookupProtocol, borrower: TaskBackendProtocol) -> None:
        self._lookup = lookup
        self._borrower = id(borrower)

    def __repr__(self) -> str:
        return repr(self._lookup)

    def backend(self, backend_type: str, /) -> TaskBackendProtocol:
        found = self._lookup.backend(backend_type)
        _lenders.setdefault(self._borrower, {})[backend_type] = None
        return found

    def backend_for_scheme(self, scheme: str, /) -> str | None:
        return self._lookup.backend_for_scheme(scheme)


def lenders_of(backend: TaskBackendProtocol) -> list[str]:
    """The types `backend` borrowed from (its stores, its job states), in first-use order."""
    return list(_lenders.get(id(backend), ()))


def _handed(
    spec: TaskBackendSpec, backends: BackendLookupProtocol, backend: TaskBackendProtocol
) -> TaskBackendSpec:
    """`spec` as `backend` is given it: carrying the lookup that resolved its type.

    A lookup already set is kept (a backend handing a spec on to the one it borrows from:
    what that one borrows counts as borrowed by the first).
    """
    if spec.backends is not None:
        return spec
    return dataclasses.replace(spec, backends=_Borrowing(backends, backend))


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
    _check_queue_name(backend, spec, queue)
    return queue


def _check_queue_name(
    backend: TaskBackendProtocol, spec: TaskBackendSpec, queue: TaskQueueProtocol
) -> None:
    """Refuse a queue that reports another name than the one it was built for.

    Core finds a queue by that name everywhere (counts, dead-letter retries, routing): a
    queue reporting e.g. a namespaced broker name would silently count nothing and send
    retried dead letters to a queue no worker consumes.
    """
    reported: object = queue.queue_name
    if reported == spec.queue_name:
        return
    origin = _loaded_origin(spec.type, backend)
    msg = (
        f"Task backend {spec.type!r} built a queue for queue_name {spec.queue_name!r} "
        f"whose queue_name is {reported!r} ({origin}). A queue must report the name it "
        "was built from, since lexigram-tasks finds queues by that name (counts, "
        "dead-letter retries, routing): keep any backend-side namespacing internal and "
        "return spec.queue_name. This is a fault of the backend: report it to its "
        "maintainers."
    )
    raise BackendError(
        msg, details={"type": spec.type, "call": "create_queue", "queue_name": spec.queue_name}
    )


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
    backend = load_backend(spec.type)
    return _build_store(backend, _handed(spec, INSTALLED, backend), factory, fallback, kwargs)


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


def _url_required(backend: TaskBackendProtocol) -> bool:
    if not getattr(backend, "url_schemes", ()):
        return False
    declared = getattr(backend, "url_required", True)
    return declared if isinstance(declared, bool) else True


async def _close(backend: object, type_: str) -> None:
    """Call the backend's optional `close` (sync or async); a failure is logged, not raised.

    What it borrowed is forgotten too: its next queues and stores note their lenders again.
    """
    _lenders.pop(id(backend), None)
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
