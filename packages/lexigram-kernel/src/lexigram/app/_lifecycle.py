"""Drives providers through register, boot and shutdown in dependency and priority order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from lexigram.app._errors import ApplicationStartError, as_sentence
from lexigram.di import Container, Provider, ProviderState

__all__ = ["ProviderLifecycle", "boot_order"]

logger = logging.getLogger(__name__)


def _dependency_name(dependency: str | type[Provider]) -> str:
    return repr(dependency) if isinstance(dependency, str) else f"`{dependency.__qualname__}`"


def boot_order(providers: Sequence[Provider]) -> list[Provider]:
    """Order providers by priority, moving each after the providers it depends on.

    Providers of equal priority keep the order they were added in.

    Raises:
        ApplicationStartError: A required dependency is missing, or dependencies form a cycle.
    """
    ranked = sorted(providers, key=lambda provider: int(provider.priority))
    ordered: list[Provider] = []
    done: set[int] = set()
    path: list[Provider] = []

    def visit(provider: Provider) -> None:
        if id(provider) in done:
            return
        if any(provider is active for active in path):
            cycle = " -> ".join(repr(p.name) for p in (*path[path.index(provider) :], provider))
            msg = f"Providers depend on each other in a cycle: {cycle}. Remove one dependency."
            raise ApplicationStartError(msg, provider=provider.name, phase="order")
        path.append(provider)
        for dependency, required in (
            *((dependency, True) for dependency in provider.dependencies),
            *((dependency, False) for dependency in provider.optional_dependencies),
        ):
            found = [
                other for other in ranked if other is not provider and other.matches(dependency)
            ]
            if required and not found:
                names = ", ".join(repr(other.name) for other in ranked) or "none"
                msg = (
                    f"Provider {provider.name!r} depends on {_dependency_name(dependency)}, which "
                    f"is not among the application's providers ({names}). Add that provider, or "
                    "list it under optional_dependencies if this one can run without it."
                )
                raise ApplicationStartError(msg, provider=provider.name, phase="order")
            for other in found:
                visit(other)
        path.pop()
        done.add(id(provider))
        ordered.append(provider)

    for provider in ranked:
        visit(provider)
    return ordered


class ProviderLifecycle:
    """Registers, boots and shuts down one application's providers."""

    def __init__(self) -> None:
        self.providers: list[Provider] = []
        self._booted: list[Provider] = []

    async def start(self, providers: Sequence[Provider], container: Container) -> None:
        """Register every provider, then boot them; roll back and raise on a required failure.

        Raises:
            ApplicationStartError: A required provider failed (its error is the cause).
        """
        self.providers = boot_order(providers)
        registered: list[Provider] = []
        # Every register() runs before any boot(), so a boot may resolve whatever any provider
        # binds, regardless of priority.
        for provider in self.providers:
            try:
                await provider.register(container)
            except Exception as exc:
                await self._fail(provider, exc, "register", "failed to register")
                continue
            provider.set_state(ProviderState.REGISTERED)
            registered.append(provider)
        try:
            for provider in registered:
                await self._boot(provider, container)
        except BaseException:
            # Includes cancellation: nothing that booted may keep running.
            await self.shutdown()
            raise

    async def _boot(self, provider: Provider, container: Container) -> None:
        provider.set_state(ProviderState.BOOTING)
        deadline = asyncio.timeout(provider.boot_timeout)
        try:
            async with deadline:
                await provider.boot(container)
        except Exception as exc:
            if deadline.expired():
                what = (
                    f"did not finish booting within boot_timeout={provider.boot_timeout}s; raise "
                    "the timeout or find what boot() waits for"
                )
            else:
                what = "failed to boot"
            await self._fail(provider, exc, "boot", what)
            return
        provider.set_state(ProviderState.BOOTED)
        self._booted.append(provider)

    async def _fail(self, provider: Provider, exc: Exception, phase: str, what: str) -> None:
        provider.set_state(ProviderState.FAILED)
        await _notify(provider, exc, phase)
        if not provider.required:
            logger.error(
                "Optional provider %r %s; starting without it.", provider.name, what, exc_info=exc
            )
            return
        msg = f"Provider {provider.name!r} {what}: {as_sentence(exc)} See the chained exception."
        raise ApplicationStartError(msg, provider=provider.name, phase=phase) from exc

    async def shutdown(self) -> None:
        """Shut booted providers down in reverse boot order; log errors and carry on."""
        while self._booted:
            provider = self._booted.pop()
            provider.set_state(ProviderState.SHUTTING_DOWN)
            try:
                await provider.shutdown()
            except Exception as exc:
                logger.exception("Provider %r failed to shut down.", provider.name)
                await _notify(provider, exc, "shutdown")
            provider.set_state(ProviderState.SHUTDOWN)


async def _notify(provider: Provider, exc: Exception, phase: str) -> None:
    try:
        await provider.on_error(exc, phase)
    except Exception:
        # The original error matters more; the hook's own failure is only logged.
        logger.exception(
            "on_error() of provider %r raised while handling a %s error.", provider.name, phase
        )
