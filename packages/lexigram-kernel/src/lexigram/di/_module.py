"""Modules: declarative groups of providers, and the graph compiler that flattens them.

A module is a class decorated with :func:`module` (or a subclass of :class:`Module`); a
:class:`DynamicModule` is a module plus arguments, made by a classmethod such as
``TasksModule.configure(...)``. ``_graph.compile_modules`` flattens them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, overload

from lexigram.di._protocols import ContainerResolverProtocol

__all__ = ["DynamicModule", "Module", "is_module", "module"]

_C = TypeVar("_C", bound=type)

# Set by @module on the classes it decorates, so that a class that does not subclass Module
# is still recognised as a module.
_MODULE_MARK = "__lexigram_module__"


@dataclass(eq=False)
class DynamicModule:
    """A module with arguments: what ``configure()``, ``scope()`` and ``stub()`` return.

    Its lists are added to the static declaration of ``module`` (the class's own ``@module``
    arguments). The class is the module's token: two different ``DynamicModule`` objects for the
    same token in one graph raise :class:`ModuleDuplicateError`.

    Attributes:
        module: The module class (the token).
        providers: ``Provider`` instances, ``Provider`` subclasses (built with no arguments), or
            plain classes (bound as transient services built by constructor injection).
        imports: Module classes or ``DynamicModule`` objects this module needs.
        exports: The types this module offers to others (recorded, not enforced).
        controllers: Opaque entries collected for whoever serves them.
        is_global: Whether the module is meant to be visible everywhere (recorded).
        name: Overrides the module's name in messages.
        health_providers: Extra health contributors (recorded for tools).
    """

    module: type
    providers: list[Any] = field(default_factory=list)
    imports: list[Any] = field(default_factory=list)
    exports: list[Any] = field(default_factory=list)
    controllers: list[Any] = field(default_factory=list)
    is_global: bool = False
    name: str | None = None
    health_providers: list[Any] | None = None


class Module:
    """Base class for modules; configure it with :func:`module` or with class attributes.

    Example::

        @module(imports=[TasksModule.configure(queue=MemoryTaskQueue())], providers=[MailProvider])
        class AppModule(Module):
            ...
    """

    name: ClassVar[str | None] = None
    providers: ClassVar[Sequence[Any]] = ()
    imports: ClassVar[Sequence[Any]] = ()
    exports: ClassVar[Sequence[Any]] = ()
    controllers: ClassVar[Sequence[Any]] = ()
    is_global: ClassVar[bool] = False
    scan: ClassVar[Sequence[str] | None] = None
    require_stub: ClassVar[bool] = False

    @classmethod
    def configure(cls, *args: Any, **kwargs: Any) -> DynamicModule:
        """Return this module with arguments; modules that take arguments override it.

        Raises:
            TypeError: Always, in the base class.
        """
        msg = (
            f"Module `{cls.__qualname__}` has no configure() (got {len(args)} positional and "
            f"{len(kwargs)} keyword arguments). Import the class `{cls.__qualname__}` itself."
        )
        raise TypeError(msg)

    @classmethod
    def scope(cls, *providers: Any) -> DynamicModule:
        """Return a feature-level part of this module that adds ``providers``.

        The token is an anonymous subclass, so a ``scope()`` coexists with the module's own
        ``configure()`` (and with other scopes) in one graph without a duplicate error. The
        subclass declares nothing itself, and runs no ``on_module_*`` hooks (the configured
        module runs them once): only ``providers`` are added.

        Args:
            *providers: Entries as in :attr:`DynamicModule.providers`.

        Returns:
            The dynamic module.
        """
        display = f"{cls.name or cls.__qualname__}.scope"
        token = type(
            cls.__name__ + "Scope",
            (cls,),
            {
                "__module__": cls.__module__,
                "__qualname__": f"{cls.__qualname__}.scope()",
                "name": display,
                "providers": (),
                "imports": (),
                "exports": (),
                "controllers": (),
                "is_global": False,
                "on_module_booted": vars(Module)["on_module_booted"],
                "on_module_shutdown": vars(Module)["on_module_shutdown"],
            },
        )
        return DynamicModule(module=token, providers=list(providers), name=display)

    @classmethod
    def stub(cls) -> DynamicModule:
        """Return a version of this module for unit tests that needs no outside services.

        The default is the module unchanged; modules that talk to a server override it.

        Returns:
            The dynamic module.
        """
        return DynamicModule(module=cls)

    @classmethod
    async def on_module_booted(cls, container: ContainerResolverProtocol) -> None:
        """Hook called once every provider of the application has booted.

        Args:
            container: The application container.
        """

    @classmethod
    async def on_module_shutdown(cls) -> None:
        """Hook called when the application stops, before its providers shut down."""


@overload
def module(cls: _C, /) -> _C: ...
@overload
def module(
    cls: None = None,
    *,
    name: str | None = None,
    providers: Iterable[Any] | None = None,
    imports: Iterable[Any] | None = None,
    exports: Iterable[Any] | None = None,
    controllers: Iterable[Any] | None = None,
    is_global: bool = False,
    scan: Iterable[str] | None = None,
    require_stub: bool = False,
) -> Callable[[_C], _C]: ...
def module(
    cls: _C | None = None,
    *,
    name: str | None = None,
    providers: Iterable[Any] | None = None,
    imports: Iterable[Any] | None = None,
    exports: Iterable[Any] | None = None,
    controllers: Iterable[Any] | None = None,
    is_global: bool = False,
    scan: Iterable[str] | None = None,
    require_stub: bool = False,
) -> _C | Callable[[_C], _C]:
    """Declare a class as a module; usable bare (``@module``) or with arguments.

    Args:
        cls: The class, when used bare.
        name: The module's name in messages (default: the class name).
        providers: See :attr:`DynamicModule.providers`.
        imports: Module classes or ``DynamicModule`` objects.
        exports: Types offered to importers (recorded, not enforced).
        controllers: Opaque entries collected for whoever serves them.
        is_global: Whether the module is meant to be visible everywhere (recorded).
        scan: Not supported: the kernel does no package scanning. Must be ``None``.
        require_stub: Demand that the class overrides ``stub()``, so tests can use it.

    Returns:
        The class itself, or a decorator.

    Raises:
        TypeError: ``scan`` is given, or ``require_stub`` is set and ``stub()`` is missing.
    """

    def decorate(target: _C) -> _C:
        if scan is not None:
            msg = (
                f"@module(scan={scan!r}) on `{target.__qualname__}`: lexigram-kernel does no "
                "package scanning. List the providers in providers=[...] instead."
            )
            raise TypeError(msg)
        attrs: dict[str, Any] = {"is_global": is_global, "require_stub": require_stub}
        given = {
            "name": name,
            "providers": providers,
            "imports": imports,
            "exports": exports,
            "controllers": controllers,
        }
        # Arguments left out keep what the class body (or a base module) declares.
        attrs.update({key: _frozen(value) for key, value in given.items() if value is not None})
        attrs[_MODULE_MARK] = True
        for attr, value in attrs.items():
            setattr(target, attr, value)
        stub = inspect.getattr_static(target, "stub", None)
        if require_stub and (stub is None or stub is vars(Module)["stub"]):
            msg = (
                f"Module `{target.__qualname__}` is declared with require_stub=True but defines "
                "no stub(). Add a `stub` classmethod that returns a DynamicModule for tests."
            )
            raise TypeError(msg)
        return target

    return decorate if cls is None else decorate(cls)


def _frozen(value: Any) -> Any:
    return value if isinstance(value, str) else tuple(value)


def is_module(obj: Any) -> bool:
    """Return whether ``obj`` is a module class (decorated with ``@module`` or a ``Module``)."""
    return isinstance(obj, type) and (
        issubclass(obj, Module) or bool(getattr(obj, _MODULE_MARK, False))
    )
