"""The two faces of the container that providers see: registering and resolving."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar, overload, runtime_checkable

__all__ = ["ContainerRegistrarProtocol", "ContainerResolverProtocol"]

T = TypeVar("T")


@runtime_checkable
class ContainerRegistrarProtocol(Protocol):
    """What ``Provider.register`` receives: the methods that add bindings.

    ``service_type`` is a class, a ``Protocol`` or ``Annotated[T, Named("x")]``; ``name=`` is the
    other way to give a binding name.
    """

    def singleton(
        self,
        service_type: Any,
        instance: Any = None,
        *,
        name: str | None = None,
        factory: Callable[..., Any] | None = None,
    ) -> None:
        """Bind one shared instance: ``instance`` as given, or built once by ``factory``."""
        ...

    def transient(
        self, service_type: Any, factory: Callable[..., Any], *, name: str | None = None
    ) -> None:
        """Bind a factory that builds a new instance on every resolve."""
        ...

    def scoped(
        self, service_type: Any, factory: Callable[..., Any], *, name: str | None = None
    ) -> None:
        """Bind a factory that builds one instance per scope."""
        ...

    def has(self, service_type: Any) -> bool:
        """Return whether a binding exists for ``service_type``."""
        ...


@runtime_checkable
class ContainerResolverProtocol(Protocol):
    """What ``Provider.boot`` receives: the methods that produce services."""

    @overload
    async def resolve(self, service_type: type[T]) -> T: ...
    @overload
    async def resolve(self, service_type: Any) -> Any: ...
    async def resolve(self, service_type: Any) -> Any:
        """Return the service bound to ``service_type``; raise ``ResolutionError`` if none."""
        ...

    @overload
    async def resolve_optional(self, service_type: type[T]) -> T | None: ...
    @overload
    async def resolve_optional(self, service_type: Any) -> Any: ...
    async def resolve_optional(self, service_type: Any) -> Any:
        """Return the service bound to ``service_type``, or ``None`` when nothing is bound."""
        ...

    def has(self, service_type: Any) -> bool:
        """Return whether a binding exists for ``service_type``."""
        ...
