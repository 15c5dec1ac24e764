"""Module graph compilation: walk ``imports`` from the roots and collect every provider once.

All providers end up in the application's single container: ``exports`` and ``is_global`` are
recorded for tools and documentation but do not restrict visibility, which keeps the kernel
small.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lexigram.di._errors import ModuleDuplicateError
from lexigram.di._module import DynamicModule, is_module
from lexigram.di._provider import Provider

__all__ = ["CompiledModule", "ModuleGraph", "compile_modules"]

_ROOT = "the application"


@dataclass(frozen=True, slots=True)
class CompiledModule:
    """One module of a compiled graph, with its providers after de-duplication.

    Attributes:
        token: The module class.
        name: Its display name.
        imports: The tokens of the modules it imports.
        providers: Its providers that no other module already contributed.
        services: Plain classes it binds as transient services.
        exports: Declared exports.
        controllers: Declared controllers.
        is_global: Declared globality.
        health_providers: Declared health contributors.
    """

    token: type
    name: str
    imports: tuple[type, ...]
    providers: tuple[Provider, ...]
    services: tuple[type, ...]
    exports: tuple[Any, ...]
    controllers: tuple[Any, ...]
    is_global: bool
    health_providers: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class ModuleGraph:
    """The flattened module graph.

    Attributes:
        modules: Every module once; imported modules come before the modules importing them
            (except within an import cycle, which is allowed).
    """

    modules: tuple[CompiledModule, ...]

    @property
    def providers(self) -> tuple[Provider, ...]:
        """Every provider of every module, each once."""
        return tuple(provider for mod in self.modules for provider in mod.providers)

    @property
    def services(self) -> tuple[type, ...]:
        """Every plain service class of every module, each once."""
        return tuple(service for mod in self.modules for service in mod.services)

    @property
    def controllers(self) -> tuple[Any, ...]:
        """Every controller entry of every module."""
        return tuple(controller for mod in self.modules for controller in mod.controllers)


def compile_modules(roots: Iterable[type | DynamicModule]) -> ModuleGraph:
    """Walk ``roots`` and their imports and flatten them into a :class:`ModuleGraph`.

    A module token is compiled once: a later plain-class reference to it is a no-op, and a
    ``DynamicModule`` met after the plain class adds its arguments. A ``Provider`` instance,
    ``Provider`` class or service class listed by several modules is kept once.

    Args:
        roots: Module classes and ``DynamicModule`` objects.

    Returns:
        The graph.

    Raises:
        ModuleDuplicateError: Two different ``DynamicModule`` objects share a token.
        TypeError: An entry is not a module, provider or class.
    """
    compiler = _Compiler()
    for root in roots:
        compiler.visit(root, _ROOT)
    return ModuleGraph(tuple(compiler.freeze(token) for token in compiler.order))


@dataclass(eq=False)
class _Draft:
    token: type
    name: str
    dynamic: DynamicModule | None = None
    dynamic_importer: str = ""
    imports: list[type] = field(default_factory=list)
    providers: list[Provider] = field(default_factory=list)
    services: list[type] = field(default_factory=list)
    exports: list[Any] = field(default_factory=list)
    controllers: list[Any] = field(default_factory=list)
    is_global: bool = False
    health_providers: list[Any] = field(default_factory=list)


class _Compiler:
    def __init__(self) -> None:
        self.drafts: dict[type, _Draft] = {}
        self.order: list[type] = []
        self._seen: set[int] = set()  # ids of provider instances and of classes already taken

    def visit(self, entry: Any, importer: str) -> type:
        dynamic = entry if isinstance(entry, DynamicModule) else None
        token = dynamic.module if dynamic is not None else entry
        if not is_module(token):
            what = "DynamicModule.module" if dynamic is not None else "imports entry"
            msg = (
                f"{what} {token!r} of {importer} is not a module. Decorate the class with "
                "@module or subclass Module, or list it under providers=[...] if it is a provider."
            )
            raise TypeError(msg)
        draft = self.drafts.get(token)
        if draft is None:
            # Register the draft before walking imports, so an import cycle ends here.
            name = getattr(token, "name", None) or token.__name__
            draft = self.drafts[token] = _Draft(token, name)
            self._merge(draft, _declared(token))
            if dynamic is not None:
                self._add_dynamic(draft, dynamic, importer)
            self.order.append(token)
        elif dynamic is not None and draft.dynamic is not dynamic:
            if draft.dynamic is not None:
                msg = (
                    f"Module `{draft.name}` is configured twice: by {draft.dynamic_importer} and "
                    f"by {importer}. Configure it once, usually in the root module, and import "
                    f"the plain class `{token.__qualname__}` elsewhere (or use its scope() for "
                    "feature-level providers)."
                )
                raise ModuleDuplicateError(msg, module=token)
            self._add_dynamic(draft, dynamic, importer)
        return token

    def _add_dynamic(self, draft: _Draft, dynamic: DynamicModule, importer: str) -> None:
        draft.dynamic, draft.dynamic_importer = dynamic, importer
        draft.name = dynamic.name or draft.name
        self._merge(draft, dynamic)
        draft.health_providers.extend(dynamic.health_providers or ())

    def _merge(self, draft: _Draft, spec: DynamicModule) -> None:
        draft.is_global = draft.is_global or spec.is_global
        draft.exports.extend(spec.exports)
        draft.controllers.extend(spec.controllers)
        for entry in spec.providers:
            self._add_provider(draft, entry)
        for entry in spec.imports:
            imported = self.visit(entry, f"module `{draft.name}`")
            if imported not in draft.imports:
                draft.imports.append(imported)

    def _add_provider(self, draft: _Draft, entry: Any) -> None:
        if id(entry) in self._seen:
            return
        if isinstance(entry, Provider):
            draft.providers.append(entry)
        elif isinstance(entry, type) and issubclass(entry, Provider):
            try:
                draft.providers.append(entry())
            except TypeError as exc:
                msg = (
                    f"Provider class `{entry.__qualname__}` in module `{draft.name}` cannot be "
                    f"built without arguments ({exc}). List an instance instead, e.g. "
                    f"{entry.__qualname__}(...) or {entry.__qualname__}.from_config(...)."
                )
                raise TypeError(msg) from exc
        elif is_module(entry):
            msg = (
                f"`{entry.__qualname__}` is listed under providers of module `{draft.name}`, but "
                "it is a module. Move it to imports=[...]."
            )
            raise TypeError(msg)
        elif isinstance(entry, type):
            draft.services.append(entry)
        else:
            msg = (
                f"Providers entry {entry!r} of module `{draft.name}` is neither a Provider nor a "
                "class. List a Provider instance, a Provider subclass or a service class."
            )
            raise TypeError(msg)
        self._seen.add(id(entry))

    def freeze(self, token: type) -> CompiledModule:
        draft = self.drafts[token]
        return CompiledModule(
            token=token,
            name=draft.name,
            imports=tuple(draft.imports),
            providers=tuple(draft.providers),
            services=tuple(draft.services),
            exports=tuple(draft.exports),
            controllers=tuple(draft.controllers),
            is_global=draft.is_global,
            health_providers=tuple(draft.health_providers),
        )


def _declared(token: type) -> DynamicModule:
    """Return the static declaration of a module class (its ``@module`` arguments)."""
    return DynamicModule(
        module=token,
        providers=list(getattr(token, "providers", ())),
        imports=list(getattr(token, "imports", ())),
        exports=list(getattr(token, "exports", ())),
        controllers=list(getattr(token, "controllers", ())),
        is_global=bool(getattr(token, "is_global", False)),
    )
