"""The small dependency-injection kernel that lexigram-tasks builds on.

* :class:`Container` binds services as singletons, transients or scoped instances and builds
  them by constructor injection; ``Annotated[T, Named("x")]`` selects a named binding.
* :class:`Provider` is a unit of registration with a lifecycle (register, boot, shutdown,
  health_check) that :class:`lexigram.app.Application` drives.
* :func:`module`, :class:`Module` and :class:`DynamicModule` group providers and imports;
  :func:`compile_modules` flattens a module graph.
"""

from __future__ import annotations

from lexigram.di._container import Container, ContainerScope
from lexigram.di._errors import CircularDependencyError, ModuleDuplicateError, ResolutionError
from lexigram.di._graph import CompiledModule, ModuleGraph, compile_modules
from lexigram.di._health import HealthCheckResult, HealthStatus
from lexigram.di._inject import ServiceKey
from lexigram.di._markers import Named, named
from lexigram.di._module import DynamicModule, Module, is_module, module
from lexigram.di._protocols import ContainerRegistrarProtocol, ContainerResolverProtocol
from lexigram.di._provider import ApplicationConfig, Provider, ProviderPriority, ProviderState

__all__ = [
    "ApplicationConfig",
    "CircularDependencyError",
    "CompiledModule",
    "Container",
    "ContainerRegistrarProtocol",
    "ContainerResolverProtocol",
    "ContainerScope",
    "DynamicModule",
    "HealthCheckResult",
    "HealthStatus",
    "Module",
    "ModuleDuplicateError",
    "ModuleGraph",
    "Named",
    "Provider",
    "ProviderPriority",
    "ProviderState",
    "ResolutionError",
    "ServiceKey",
    "compile_modules",
    "is_module",
    "module",
    "named",
]
