"""`TaskBackendRegistry`: backends registered in code, in front of the entry points.

A `TaskBackendRegistry` adds backends registered in code (a queue factory or a whole
backend object) in front of the entry points; whatever resolves a type through a
registry (the queue, every optional store, the self-description, `close`) sees them,
and so does a backend asking the spec it was given for another (`TaskBackendSpec.backends`).

It sits on top of the package: it resolves through discovery, builds and closes through
`_building` and reads configurations through `_urls`. The module-level
`is_process_local`, `url_required` and `release_backends` are an empty registry's, so
they live beside it, as does the count of holders of each backend object, which every
registry of the process shares.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from lexigram.contracts.tasks import (
    BackendConflictError,
    BackendError,
    TaskBackendProtocol,
    TaskBackendSpec,
    TaskQueueProtocol,
)
from lexigram.tasks._backends._building import (
    IN_MEMORY,
    _build_queue,
    _build_store,
    _close,
    _handed,
    _process_local,
    _url_required,
    close_backend,
    lenders_of,
)
from lexigram.tasks._backends._entry_points import (
    _as_backend,
    _cache,
    available_backends,
    backend_for_scheme,
    load_backend,
)
from lexigram.tasks._backends._urls import spec_from_config

if TYPE_CHECKING:
    from lexigram.tasks.config import TaskConfig


# How many programs of this process (providers) hold each backend object on each event loop
# (`TaskBackendRegistry.hold_backends`): releasing closes a backend only when none is left.
_holders: dict[tuple[int, asyncio.AbstractEventLoop], int] = {}


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

    def registrations(self) -> dict[str, TaskBackendProtocol]:
        """The backends registered here, by type (a copy)."""
        return dict(self._backends)

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
        backend = self.backend(spec.type)
        return _build_queue(backend, _handed(spec, self, backend))

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
        backend = self.backend(spec.type)
        return _build_store(backend, _handed(spec, self, backend), factory, fallback, kwargs)

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
        do not cut each other's connections. A type not loaded yet is skipped. The
        backends that one of them borrowed from (`lenders_of`) are held with it.
        """
        loop = asyncio.get_running_loop()
        for type_ in self._with_lenders(types):
            backend = self._loaded(type_)
            if backend is not None:
                key = (id(backend), loop)
                _holders[key] = _holders.get(key, 0) + 1

    async def release_backends(self, types: Iterable[str], *, held: bool = False) -> None:
        """`close_backend` for each distinct type in `types` that nobody holds, in order.

        The backends that one of them borrowed from (`lenders_of`) are released after
        it, as if listed: a backend lends its pools to every program of the process.

        Args:
            types: The backend types (e.g. every stack's).
            held: The caller holds them (`hold_backends`): its hold is given back first.
                A backend another program still holds on this loop stays open.
        """
        loop = asyncio.get_running_loop()
        for type_ in self._with_lenders(types):
            backend = self._loaded(type_)
            if backend is not None:
                key = (id(backend), loop)
                left = _holders.get(key, 0) - (1 if held else 0)
                if left > 0:
                    _holders[key] = left
                    continue
                _holders.pop(key, None)
            await self.close_backend(type_)

    def _with_lenders(self, types: Iterable[str]) -> list[str]:
        """The distinct `types`, each followed by the types its backend borrowed from."""
        found: dict[str, None] = {}
        pending = list(types)
        while pending:
            type_ = pending.pop(0)
            if type_ in found:
                continue
            found[type_] = None
            backend = self._loaded(type_)
            if backend is not None:
                pending[:0] = lenders_of(backend)
        return list(found)

    def _loaded(self, backend_type: str) -> TaskBackendProtocol | None:
        """The backend object of `backend_type` in use here, or None if none was loaded."""
        found = self._backends.get(backend_type)
        return found if found is not None else _cache.get(backend_type)


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


async def release_backends(types: Iterable[str]) -> None:
    """`close_backend` for each distinct type in `types` that no provider holds, in order."""
    await TaskBackendRegistry().release_backends(types)
