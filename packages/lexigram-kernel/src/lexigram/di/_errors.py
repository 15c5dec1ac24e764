"""Errors raised by ``lexigram.di``.

Hierarchy::

    LookupError
    └── ResolutionError            a service cannot be built: missing binding, unreadable hint
        └── CircularDependencyError    the services depend on each other in a cycle
    ValueError
    └── ModuleDuplicateError       one module token configured twice in a module graph
"""

from __future__ import annotations

from typing import Any

__all__ = ["CircularDependencyError", "ModuleDuplicateError", "ResolutionError"]


class ResolutionError(LookupError):
    """Raised when the container cannot produce a requested service.

    Attributes:
        service_type: The type that could not be produced.
        name: The binding name that was asked for, or ``None`` for the unnamed binding.
        chain: Descriptions of the services being built when it failed, outermost first.
    """

    def __init__(
        self,
        message: str,
        *,
        service_type: Any = None,
        name: str | None = None,
        chain: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.service_type = service_type
        self.name = name
        self.chain = chain


class CircularDependencyError(ResolutionError):
    """Raised when building a service requires, directly or indirectly, that same service."""


class ModuleDuplicateError(ValueError):
    """Raised when two different ``DynamicModule`` objects of the same module meet in one graph.

    Attributes:
        module: The module token (class) that was configured twice.
    """

    def __init__(self, message: str, *, module: type) -> None:
        super().__init__(message)
        self.module = module
