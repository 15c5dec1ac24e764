"""The dependency-injection container and its scopes."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar, overload

from lexigram.di._errors import CircularDependencyError, ResolutionError
from lexigram.di._inject import (
    Param,
    ServiceKey,
    describe_key,
    injection_plan,
    service_key,
    type_name,
)
from lexigram.di._protocols import ContainerRegistrarProtocol, ContainerResolverProtocol

__all__ = ["Container", "ContainerScope"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The keys being built in the current task, outermost first. A context variable rather than an
# argument, so that a factory calling ``container.resolve(...)`` itself still extends the chain
# (cycle detection keeps working through ``lambda c: ...`` factories), while concurrent tasks
# each see their own chain.
_CHAIN: ContextVar[tuple[ServiceKey, ...]] = ContextVar("lexigram_di_chain", default=())

_NOTE_PREFIX = "While building "


class _Lifetime(StrEnum):
    SINGLETON = "singleton"
    TRANSIENT = "transient"
    SCOPED = "scoped"


class _Unset:
    """Marks a singleton that has not been built yet (``None`` is a valid instance)."""


_UNSET = _Unset()


@dataclass(slots=True, eq=False)
class _Binding:
    key: ServiceKey
    lifetime: _Lifetime
    factory: Callable[..., Any] | None
    instance: Any = _UNSET
    plan: tuple[Param, ...] | None = None
    # Serialises the first build of a singleton so two tasks never build it twice.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _chain_text(chain: tuple[ServiceKey, ...]) -> str:
    return " -> ".join(describe_key(key) for key in chain)


class _Resolver:
    """Resolution shared by the root container and its scopes."""

    def __init__(self, bindings: dict[ServiceKey, _Binding], root: Container) -> None:
        self._bindings = bindings
        self._root = root
        self._scoped: dict[ServiceKey, Any] = {}
        self._scoped_locks: dict[ServiceKey, asyncio.Lock] = {}

    @overload
    async def resolve(self, service_type: type[T]) -> T: ...
    @overload
    async def resolve(self, service_type: Any) -> Any: ...
    async def resolve(self, service_type: Any) -> Any:
        """Return the service bound to ``service_type``.

        Args:
            service_type: A class, a ``Protocol``, or ``Annotated[T, Named("x")]``.

        Returns:
            The instance, built on demand according to the binding's lifetime.

        Raises:
            ResolutionError: Nothing is bound to it, or to something it depends on.
            CircularDependencyError: Its dependencies lead back to it.
        """
        return await self._get(service_key(service_type), None)

    @overload
    async def resolve_optional(self, service_type: type[T]) -> T | None: ...
    @overload
    async def resolve_optional(self, service_type: Any) -> Any: ...
    async def resolve_optional(self, service_type: Any) -> Any:
        """Return the service bound to ``service_type``, or ``None`` when nothing is bound.

        A binding that exists but cannot be built still raises: only absence is optional.

        Args:
            service_type: A class, a ``Protocol``, or ``Annotated[T, Named("x")]``.

        Returns:
            The instance or ``None``.
        """
        key = service_key(service_type)
        if not self._is_bound(key):
            return None
        return await self._get(key, None)

    def has(self, service_type: Any) -> bool:
        """Return whether ``service_type`` (or ``Annotated[T, Named("x")]``) can be resolved."""
        return self._is_bound(service_key(service_type))

    def create_scope(self) -> ContainerScope:
        """Return a new scope: scoped services are built once per scope and cached in it.

        Returns:
            A child that shares this container's bindings and singletons.
        """
        return ContainerScope(self._bindings, self._root)

    def _self_service(self, service_type: Any) -> Any:
        if service_type in (Container, ContainerRegistrarProtocol):
            return self._root
        if service_type is ContainerResolverProtocol or (
            service_type is ContainerScope and isinstance(self, ContainerScope)
        ):
            return self
        return _UNSET

    def _is_bound(self, key: ServiceKey) -> bool:
        if key[1] is None and self._self_service(key[0]) is not _UNSET:
            return True
        return key in self._bindings

    async def _get(self, key: ServiceKey, needed_by: str | None) -> Any:
        binding = self._bindings.get(key)
        if binding is None:
            own = self._self_service(key[0]) if key[1] is None else _UNSET
            if own is not _UNSET:
                return own
            raise self._missing(key, needed_by)
        if binding.instance is not _UNSET:
            return binding.instance
        chain = _CHAIN.get()
        if key in chain:
            cycle = (*chain[chain.index(key) :], key)
            msg = (
                f"Circular dependency: {_chain_text(cycle)}. Each of these services asks for the "
                "next in its constructor or factory; break the cycle by taking the container "
                "and resolving one of them later, or by moving the shared part into a new service."
            )
            raise CircularDependencyError(
                msg, service_type=key[0], name=key[1], chain=tuple(map(describe_key, cycle))
            )
        token = _CHAIN.set((*chain, key))
        try:
            return await self._provide(binding)
        except ResolutionError:
            raise
        except Exception as exc:
            # Only the innermost frame notes the failure: it knows the full chain.
            if not any(note.startswith(_NOTE_PREFIX) for note in getattr(exc, "__notes__", ())):
                exc.add_note(f"{_NOTE_PREFIX}{_chain_text(_CHAIN.get())}.")
            raise
        finally:
            _CHAIN.reset(token)

    async def _provide(self, binding: _Binding) -> Any:
        if binding.lifetime is _Lifetime.TRANSIENT:
            return await self._build(binding)
        if binding.lifetime is _Lifetime.SINGLETON:
            async with binding.lock:
                if binding.instance is _UNSET:
                    # Singletons take their dependencies from the root, never from the scope
                    # that happened to ask first: a scoped dependency would outlive its scope.
                    binding.instance = await self._root._build(binding)  # noqa: SLF001 - same class
            return binding.instance
        return await self._provide_scoped(binding)

    async def _provide_scoped(self, binding: _Binding) -> Any:
        key = binding.key
        if not isinstance(self, ContainerScope):
            msg = (
                f"{describe_key(key)} is scoped, but it was requested from the root container "
                f"(resolution chain: {_chain_text(_CHAIN.get())}). Resolve it from a scope made "
                "by container.create_scope(), and do not inject scoped services into singletons."
            )
            raise ResolutionError(msg, service_type=key[0], name=key[1])
        if key not in self._scoped:
            async with self._scoped_locks.setdefault(key, asyncio.Lock()):
                if key not in self._scoped:
                    self._scoped[key] = await self._build(binding)
        return self._scoped[key]

    async def _build(self, binding: _Binding) -> Any:
        factory = binding.factory
        if factory is None:  # pragma: no cover - instance bindings return before building
            msg = f"{describe_key(binding.key)} has neither an instance nor a factory."
            raise ResolutionError(msg, service_type=binding.key[0], name=binding.key[1])
        if binding.plan is None:
            binding.plan = injection_plan(factory)
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for param in binding.plan:
            if param.key is None:
                value: Any = self
            elif param.optional and not self._is_bound(param.key):
                value = param.default
            else:
                value = await self._get(
                    param.key, f"parameter {param.name!r} of `{type_name(factory)}`"
                )
            if param.positional:
                args.append(value)
            else:
                kwargs[param.name] = value
        result = factory(*args, **kwargs)
        if inspect.iscoroutine(result):
            result = await result
        return result

    def _missing(self, key: ServiceKey, needed_by: str | None) -> ResolutionError:
        service_type, name = key
        chain = (*_CHAIN.get(), key)
        if needed_by is None:
            what = f"Nothing is bound to {describe_key(key)}."
        else:
            what = (
                f"Nothing is bound to {describe_key(key)}, needed by {needed_by} "
                f"(resolution chain: {_chain_text(chain)})."
            )
        others = [other for other_type, other in self._bindings if other_type == service_type]
        if others:
            names = ", ".join("unnamed" if other is None else repr(other) for other in others)
            what += f" Bindings of `{type_name(service_type)}` exist as: {names}."
        name_arg = "" if name is None else f", name={name!r}"
        hint = (
            f" Bind it in a provider's register(), e.g. container.singleton("
            f"{type_name(service_type)}, instance{name_arg}), or add the module or provider that "
            "binds it to the application."
        )
        return ResolutionError(
            what + hint,
            service_type=service_type,
            name=name,
            chain=tuple(map(describe_key, chain)),
        )


class ContainerScope(_Resolver):
    """A child of a :class:`Container` with its own cache of scoped services.

    Made by ``container.create_scope()``; typically one per request or per job. Bindings and
    singletons are shared with the root; bindings are only added on the root container.
    """


class Container(_Resolver):
    """The dependency-injection container.

    Bindings map a key ``(service_type, name)`` to a lifetime and either an instance or a factory.
    A factory is any callable: a class (built by constructor injection from its ``__init__`` type
    hints), a function, or an ``async`` function. Each hinted parameter is resolved from the
    container (``Annotated[T, Named("x")]`` picks a named binding; parameters with defaults or an
    ``X | None`` hint are optional), and an unhinted parameter receives the container itself.

    Example::

        container = Container()
        container.singleton(Settings, Settings(dsn="..."))
        container.singleton(Database, factory=Database)        # Database(settings: Settings)
        container.transient(Mailer, lambda c: Mailer(host="smtp"))
        db = await container.resolve(Database)
    """

    def __init__(self) -> None:
        super().__init__({}, self)

    def singleton(
        self,
        service_type: Any,
        instance: Any = None,
        *,
        name: str | None = None,
        factory: Callable[..., Any] | None = None,
    ) -> None:
        """Bind one shared instance.

        With ``instance``, that object is returned. With ``factory``, it is built on first
        resolve. With neither, ``service_type`` itself must be a concrete class and is built by
        constructor injection.

        Args:
            service_type: A class, a ``Protocol``, or ``Annotated[T, Named("x")]``.
            instance: The ready-made instance.
            name: The binding name (the same as ``Annotated[T, Named(name)]``).
            factory: A callable that builds the instance.

        Raises:
            TypeError: Both ``instance`` and ``factory`` are given, or neither is and
                ``service_type`` cannot be built.
        """
        key = service_key(service_type, name)
        if instance is not None and factory is not None:
            msg = (
                f"container.singleton({type_name(key[0])}) got both an instance and a factory. "
                "Pass one of them."
            )
            raise TypeError(msg)
        if instance is not None:
            self._add(_Binding(key, _Lifetime.SINGLETON, None, instance))
            return
        self._add(_Binding(key, _Lifetime.SINGLETON, factory or self._self_factory(key)))

    def transient(
        self, service_type: Any, factory: Callable[..., Any], *, name: str | None = None
    ) -> None:
        """Bind a factory that builds a new instance on every resolve.

        Args:
            service_type: A class, a ``Protocol``, or ``Annotated[T, Named("x")]``.
            factory: A class or a (sync or async) function; see the class docstring.
            name: The binding name.
        """
        key = service_key(service_type, name)
        self._add(_Binding(key, _Lifetime.TRANSIENT, self._checked(key, factory)))

    def scoped(
        self, service_type: Any, factory: Callable[..., Any], *, name: str | None = None
    ) -> None:
        """Bind a factory that builds one instance per scope (see :meth:`create_scope`).

        Args:
            service_type: A class, a ``Protocol``, or ``Annotated[T, Named("x")]``.
            factory: A class or a (sync or async) function; see the class docstring.
            name: The binding name.
        """
        key = service_key(service_type, name)
        self._add(_Binding(key, _Lifetime.SCOPED, self._checked(key, factory)))

    def registrations(self) -> list[ServiceKey]:
        """Return the ``(service_type, name)`` keys of every binding, in registration order.

        Lets a provider discover what other providers or modules bound, e.g. handler classes.
        """
        return list(self._bindings)

    def _add(self, binding: _Binding) -> None:
        if binding.key in self._bindings:
            # Later registrations win on purpose: a provider may replace a default binding.
            logger.debug("Replacing the binding of %s.", describe_key(binding.key))
        self._bindings[binding.key] = binding

    @staticmethod
    def _checked(key: ServiceKey, factory: object) -> Callable[..., Any]:
        if not callable(factory):
            msg = (
                f"The factory for {describe_key(key)} is {factory!r}, which is not callable. "
                "Pass a class or a function that returns the service."
            )
            raise TypeError(msg)
        return factory

    @staticmethod
    def _self_factory(key: ServiceKey) -> Callable[..., Any]:
        service_type = key[0]
        if (
            not isinstance(service_type, type)
            or getattr(service_type, "_is_protocol", False)
            or inspect.isabstract(service_type)
        ):
            msg = (
                f"container.singleton({type_name(service_type)}) has no instance or factory, and "
                f"{describe_key(key)} is not a concrete class it could build. Pass instance=... "
                "or factory=...."
            )
            raise TypeError(msg)
        return service_type
