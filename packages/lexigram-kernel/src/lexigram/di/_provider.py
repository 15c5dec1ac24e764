"""``Provider``: a unit that binds services and owns their start-up and shut-down."""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum, StrEnum
from typing import Any, Self

from lexigram.di._health import HealthCheckResult, HealthStatus
from lexigram.di._protocols import ContainerRegistrarProtocol, ContainerResolverProtocol

__all__ = ["Provider", "ProviderPriority", "ProviderState"]


class ProviderPriority(IntEnum):
    """Start-up order: lower values register and boot first, and shut down last."""

    CRITICAL = 0
    INFRASTRUCTURE = 10
    SECURITY = 20
    NORMAL = 30
    APPLICATION = 40
    DOMAIN = 50
    PRESENTATION = 80
    COMMS = 90
    LOW = 100


class ProviderState(StrEnum):
    """Where a provider is in its lifecycle; the application moves it along."""

    CREATED = "created"
    REGISTERED = "registered"
    BOOTING = "booting"
    BOOTED = "booted"
    FAILED = "failed"
    SHUTTING_DOWN = "shutting_down"
    SHUTDOWN = "shutdown"


class Provider:
    """Base class for providers.

    An application drives every provider through three phases: ``register`` (all providers, in
    priority order, before any boots: bind services, do no I/O), ``boot`` (in priority order,
    after every ``register``: resolve dependencies, connect, start background work) and
    ``shutdown`` (in reverse boot order). Subclasses override the phases they need; the defaults
    do nothing.

    Class attributes give the defaults that the constructor arguments override.

    Attributes:
        name: Identifies the provider in logs, health reports and ``dependencies`` of others.
            Defaults to the class name.
        priority: A :class:`ProviderPriority` (or any int); lower boots first.
        dependencies: Names (or classes) of providers that must boot before this one; starting
            fails if one is missing.
        optional_dependencies: Like ``dependencies``, but ignored when absent.
        boot_timeout: Seconds ``boot`` may take, or ``None`` for no limit.
        required: When ``False``, a failure to register or boot is logged and the application
            starts without this provider instead of failing.

    Example::

        class MailProvider(Provider):
            name = "mail"
            priority = ProviderPriority.COMMS

            async def register(self, container: ContainerRegistrarProtocol) -> None:
                container.singleton(Mailer, factory=Mailer)

            async def boot(self, container: ContainerResolverProtocol) -> None:
                await (await container.resolve(Mailer)).connect()
    """

    name: str = ""
    priority: ProviderPriority | int = ProviderPriority.NORMAL
    dependencies: tuple[str | type[Provider], ...] = ()
    optional_dependencies: tuple[str | type[Provider], ...] = ()
    boot_timeout: float | None = None
    required: bool = True

    def __init__(  # noqa: PLR0917 - the spec's positional signature
        self,
        name: str | None = None,
        priority: ProviderPriority | int | None = None,
        dependencies: Iterable[str | type[Provider]] | None = None,
        optional_dependencies: Iterable[str | type[Provider]] | None = None,
        boot_timeout: float | None = None,
        required: bool | None = None,
    ) -> None:
        cls = type(self)
        self.name = name if name is not None else (cls.name or cls.__name__)
        self.priority = priority if priority is not None else cls.priority
        self.dependencies = (
            tuple(dependencies) if dependencies is not None else tuple(cls.dependencies)
        )
        self.optional_dependencies = (
            tuple(optional_dependencies)
            if optional_dependencies is not None
            else tuple(cls.optional_dependencies)
        )
        self.boot_timeout = boot_timeout if boot_timeout is not None else cls.boot_timeout
        self.required = required if required is not None else cls.required
        self._state = ProviderState.CREATED
        self._config: Any = None

    @classmethod
    def from_config(cls, config: Any, **context: Any) -> Self:
        """Build a provider from a configuration object.

        The default passes ``context`` to the constructor and keeps ``config`` for the
        :attr:`config` property; providers with typed configuration override this.

        Args:
            config: The configuration (any object).
            **context: Constructor arguments.

        Returns:
            The new provider.
        """
        provider = cls(**context)
        provider._config = config
        return provider

    @property
    def config(self) -> Any:
        """The configuration given to :meth:`from_config`, or ``None``."""
        return self._config

    @property
    def state(self) -> ProviderState:
        """The current lifecycle state."""
        return self._state

    @property
    def is_booted(self) -> bool:
        """Whether ``boot`` completed and ``shutdown`` has not started."""
        return self._state is ProviderState.BOOTED

    def matches(self, dependency: str | type[Provider]) -> bool:
        """Return whether this provider satisfies a ``dependencies`` entry (a name or a class).

        Args:
            dependency: A provider name or a provider class.

        Returns:
            ``True`` when the name is equal or this provider is an instance of the class.
        """
        if isinstance(dependency, str):
            return self.name == dependency
        return isinstance(self, dependency)

    async def register(self, container: ContainerRegistrarProtocol) -> None:
        """Bind this provider's services. Runs for every provider before any ``boot``.

        Args:
            container: Where to add bindings.
        """

    async def boot(self, container: ContainerResolverProtocol) -> None:
        """Start this provider's services. Runs after every provider registered.

        Args:
            container: Where to resolve dependencies.
        """

    async def shutdown(self) -> None:
        """Stop this provider's services and release their resources."""

    async def health_check(self, timeout: float = 5.0) -> HealthCheckResult:
        """Report this provider's health; the default reports whether it is booted.

        Args:
            timeout: Seconds a check that does I/O may take.

        Returns:
            ``HEALTHY`` once booted, otherwise ``UNHEALTHY`` naming the state.
        """
        if self.is_booted:
            return HealthCheckResult(HealthStatus.HEALTHY, component=self.name)
        return HealthCheckResult(
            HealthStatus.UNHEALTHY,
            f"Provider {self.name!r} is {self._state.value}, not booted.",
            component=self.name,
        )

    async def on_error(self, error: BaseException, phase: str) -> None:
        """Hook called when one of this provider's phases fails, before the error propagates.

        Args:
            error: The exception.
            phase: ``"register"``, ``"boot"`` or ``"shutdown"``.
        """

    def set_state(self, state: ProviderState) -> None:
        """Record a lifecycle transition; called by the application, not by subclasses.

        Args:
            state: The new state.
        """
        self._state = state

    def __repr__(self) -> str:
        return (
            f"<{type(self).__qualname__} name={self.name!r} priority={int(self.priority)} "
            f"state={self._state.value}>"
        )
