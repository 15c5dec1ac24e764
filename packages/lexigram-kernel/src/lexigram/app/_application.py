"""``Application``: owns the container, the providers and the modules, and runs them."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from enum import StrEnum
from typing import Any, Self

from lexigram.app._errors import ApplicationStartError, as_sentence
from lexigram.app._lifecycle import ProviderLifecycle
from lexigram.di import (
    ApplicationConfig,
    CompiledModule,
    Container,
    DynamicModule,
    HealthCheckResult,
    HealthStatus,
    Provider,
    compile_modules,
    is_module,
)

__all__ = ["Application"]

logger = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _State(StrEnum):
    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class Application:
    """An application: one container, the providers added to it and the modules they come from.

    ``start()`` compiles the modules, registers every provider (lowest priority value first),
    then boots them in the same order, each within its ``boot_timeout``. ``stop()`` shuts them
    down in reverse. An application starts once; build a new one to start again.

    Args:
        name: Used in logs and as the health report's component name.
        config: Any configuration object; when given it is bound in the container as a
            singleton under its own type, and as ``ApplicationConfig(config)``, where each
            provider finds its section (``Provider.application_config``).

    Example::

        async with Application.boot(modules=[AppModule]) as app:
            queue = await app.container.resolve(TaskQueueProtocol)
    """

    def __init__(self, name: str = "lexigram-app", config: Any = None) -> None:
        self.name = name
        self.config = config
        self._container = Container()
        if config is not None:
            self._container.singleton(type(config), config)
            self._container.singleton(ApplicationConfig, ApplicationConfig(config))
        self._providers: list[Provider] = []
        self._modules: list[type | DynamicModule] = []
        self._booted_modules: tuple[CompiledModule, ...] = ()
        self._lifecycle = ProviderLifecycle()
        self._state = _State.CREATED
        self._stop_requested = asyncio.Event()

    @property
    def container(self) -> Container:
        """The application's container."""
        return self._container

    @property
    def providers(self) -> tuple[Provider, ...]:
        """The providers: in the order added before ``start()``, in boot order after it."""
        return tuple(self._lifecycle.providers or self._providers)

    @property
    def is_running(self) -> bool:
        """Whether ``start()`` completed and ``stop()`` has not begun."""
        return self._state is _State.RUNNING

    def add_provider(self, provider: Provider | type[Provider]) -> Self:
        """Add a provider (an instance, or a class built with no arguments).

        Args:
            provider: The provider.

        Returns:
            The application, for chaining.

        Raises:
            RuntimeError: The application has already started.
            TypeError: ``provider`` is not a ``Provider``.
        """
        self._check_not_started("add_provider")
        entry: object = provider  # callers without a type checker may pass anything
        if isinstance(entry, type) and issubclass(entry, Provider):
            entry = entry()
        if not isinstance(entry, Provider):
            msg = (
                f"add_provider() got {entry!r}, which is not a Provider. Pass a Provider "
                "instance or subclass; add modules with add_module()."
            )
            raise TypeError(msg)
        if all(entry is not known for known in self._providers):
            self._providers.append(entry)
        return self

    use = add_provider

    def add_providers(self, providers: Iterable[Provider | type[Provider]]) -> Self:
        """Add several providers; see :meth:`add_provider`.

        Returns:
            The application, for chaining.
        """
        for provider in providers:
            self.add_provider(provider)
        return self

    def add_module(self, module: type | DynamicModule) -> Self:
        """Add a root module: a module class or a ``DynamicModule``.

        Args:
            module: The module.

        Returns:
            The application, for chaining.

        Raises:
            RuntimeError: The application has already started.
            TypeError: ``module`` is not a module.
        """
        self._check_not_started("add_module")
        if not isinstance(module, DynamicModule) and not is_module(module):
            msg = (
                f"add_module() got {module!r}, which is not a module. Pass a class decorated "
                "with @module (or a Module subclass) or a DynamicModule."
            )
            raise TypeError(msg)
        self._modules.append(module)
        return self

    def add_modules(self, modules: Iterable[type | DynamicModule]) -> Self:
        """Add several root modules; see :meth:`add_module`.

        Returns:
            The application, for chaining.
        """
        for module in modules:
            self.add_module(module)
        return self

    async def start(self) -> None:
        """Compile the modules, register every provider, then boot them in order.

        Calling it again while running does nothing.

        Raises:
            ApplicationStartError: A required provider or a module hook failed; whatever had
                booted has been shut down again.
            RuntimeError: The application was stopped, failed, or is starting already.
        """
        if self._state is _State.RUNNING:
            return
        self._check_not_started("start")
        self._state = _State.STARTING
        try:
            graph = compile_modules(self._modules)
            for service in graph.services:
                self._container.transient(service, service)
            providers = list(self._providers)
            providers += [p for p in graph.providers if all(p is not q for q in providers)]
            await self._lifecycle.start(providers, self._container)
            self._booted_modules = graph.modules
            for compiled in graph.modules:
                await self._module_booted(compiled)
        except BaseException:
            self._state = _State.FAILED
            await self._shutdown()
            raise
        self._state = _State.RUNNING
        logger.info("Application %r started with %d providers.", self.name, len(providers))

    async def _module_booted(self, compiled: CompiledModule) -> None:
        hook = getattr(compiled.token, "on_module_booted", None)
        if hook is None:
            return
        try:
            await hook(self._container)
        except Exception as exc:
            msg = (
                f"on_module_booted() of module {compiled.name!r} raised {as_sentence(exc)} "
                "Fix the hook; the application's providers were shut down again."
            )
            raise ApplicationStartError(msg, provider=None, phase="module") from exc

    async def stop(self) -> None:
        """Shut providers down in reverse boot order; errors are logged, not raised.

        Safe to call more than once, and before ``start()``.

        Raises:
            RuntimeError: ``start()`` is still running; await it first.
        """
        if self._state is _State.STARTING:
            msg = f"Application {self.name!r} is still starting. Await start() before stop()."
            raise RuntimeError(msg)
        if self._state is not _State.RUNNING:
            return
        self._state = _State.STOPPING
        await self._shutdown()
        self._state = _State.STOPPED
        logger.info("Application %r stopped.", self.name)

    async def _shutdown(self) -> None:
        for compiled in reversed(self._booted_modules):
            hook = getattr(compiled.token, "on_module_shutdown", None)
            if hook is None:
                continue
            try:
                await hook()
            except Exception:
                logger.exception("on_module_shutdown() of module %r failed.", compiled.name)
        self._booted_modules = ()
        await self._lifecycle.shutdown()

    async def health_check(self, timeout: float = 5.0) -> HealthCheckResult:
        """Check every provider concurrently and combine the results (the worst status wins).

        A check that raises or takes longer than ``timeout`` counts as ``UNHEALTHY``.

        Args:
            timeout: Seconds each provider's check may take.

        Returns:
            The combined result; ``details`` maps provider names to their results.
        """
        if not self.is_running:
            return HealthCheckResult(
                HealthStatus.UNHEALTHY,
                f"Application {self.name!r} is {self._state.value}; start() it first.",
                component=self.name,
            )
        providers = self._lifecycle.providers
        results = await asyncio.gather(*(_check(p, timeout) for p in providers))
        keyed: dict[str, HealthCheckResult] = {}
        for provider, result in zip(providers, results, strict=True):
            key = provider.name
            # Two providers may share a name; keep both reports.
            while key in keyed:
                key += "'"
            keyed[key] = result
        return HealthCheckResult.combine(keyed, component=self.name)

    @classmethod
    @asynccontextmanager
    async def boot(
        cls,
        name: str = "lexigram-app",
        providers: Iterable[Provider | type[Provider]] | None = None,
        modules: Iterable[type | DynamicModule] | None = None,
        config: Any = None,
    ) -> AsyncIterator[Self]:
        """Build and start an application for an ``async with`` block; stop it on exit.

        The application stops however the block ends, including by an exception.

        Args:
            name: The application name.
            providers: Providers to add.
            modules: Root modules to add.
            config: The configuration object.

        Yields:
            The running application.
        """
        app = cls(name=name, config=config)
        app.add_providers(providers or ())
        app.add_modules(modules or ())
        await app.start()
        try:
            yield app
        finally:
            await app.stop()

    def request_stop(self) -> None:
        """Make :meth:`run_async` (or :meth:`run`) stop the application and return."""
        self._stop_requested.set()

    def run(self) -> None:
        """Start, wait for SIGINT or SIGTERM (or :meth:`request_stop`), then stop; blocking."""
        asyncio.run(self.run_async())

    async def run_async(self) -> None:
        """Start, wait for SIGINT or SIGTERM (or :meth:`request_stop`), then stop gracefully."""
        restore = _install_stop_handlers(self.request_stop)
        try:
            await self.start()
            logger.info("Application %r is running; send SIGINT or SIGTERM to stop.", self.name)
            await self._stop_requested.wait()
        finally:
            restore()
            await self.stop()

    def _check_not_started(self, action: str) -> None:
        if self._state is not _State.CREATED:
            msg = (
                f"Cannot {action}(): application {self.name!r} is {self._state.value}. An "
                "application starts once; build a new Application to start again."
            )
            raise RuntimeError(msg)


async def _check(provider: Provider, seconds: float) -> HealthCheckResult:
    try:
        return await asyncio.wait_for(provider.health_check(seconds), seconds)
    except TimeoutError:
        message = f"health_check() did not answer within {seconds}s."
    except Exception as exc:
        logger.exception("health_check() of provider %r raised.", provider.name)
        message = f"health_check() raised {exc!r}."
    return HealthCheckResult(HealthStatus.UNHEALTHY, message, component=provider.name)


def _install_stop_handlers(request_stop: Callable[[], None]) -> Callable[[], None]:
    """Route SIGINT/SIGTERM to ``request_stop``; return a function that undoes it."""
    loop = asyncio.get_running_loop()
    undo: list[Callable[[], object]] = []
    for sig in _STOP_SIGNALS:
        try:
            loop.add_signal_handler(sig, request_stop)
        except NotImplementedError:
            # Windows event loops have no add_signal_handler; a plain handler must hop back
            # onto the loop thread.
            previous = signal.signal(sig, lambda *_: loop.call_soon_threadsafe(request_stop))
            undo.append(functools.partial(signal.signal, sig, previous))
        except (RuntimeError, ValueError):
            # Not the main thread: signals cannot be routed here; request_stop() still works.
            logger.warning("Cannot handle %s outside the main thread.", sig.name)
        else:
            undo.append(functools.partial(loop.remove_signal_handler, sig))

    def restore() -> None:
        for step in undo:
            step()

    return restore
