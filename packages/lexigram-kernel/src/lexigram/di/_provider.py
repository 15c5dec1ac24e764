"""``Provider``: a unit that binds services and owns their start-up and shut-down."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, ClassVar, Self

from lexigram.di._health import HealthCheckResult, HealthStatus
from lexigram.di._protocols import ContainerRegistrarProtocol, ContainerResolverProtocol

__all__ = ["ApplicationConfig", "Provider", "ProviderPriority", "ProviderState"]


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


@dataclass(frozen=True, slots=True)
class ApplicationConfig:
    """The configuration object an application was built with, as its container holds it.

    ``Application(config=...)`` binds the object under its own type and, wrapped in this
    class, under ``ApplicationConfig``: a provider cannot know the class of an application's
    settings, so it asks for this binding instead (see :meth:`Provider.application_config`).

    Attributes:
        value: The configuration object, as given to the application.
    """

    value: Any


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
        config_key: The name of this provider's section in an application's config (an
            attribute, or a key of a mapping), or ``None``; see :meth:`find_config`.
        config_model: The class of this provider's configuration, or ``None``.
        config_error_type: The exception :meth:`find_config` raises, with a one-line message,
            when the section holds something else than a ``config_model`` or a mapping.

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
    config_key: ClassVar[str | None] = None
    config_model: ClassVar[type[Any] | None] = None
    config_error_type: ClassVar[type[Exception]] = TypeError

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

    @classmethod
    def find_config(cls, app_config: object) -> Any:
        """Return this provider's configuration within an application's config, or ``None``.

        The one rule by which a provider reads the application's config, driven by
        ``config_model`` and ``config_key``:

        1. ``app_config`` is an instance of ``config_model`` (a subclass counts): it is the
           configuration.
        2. Otherwise its ``config_key`` section (the key of a mapping, else the attribute):
           an instance of ``config_model`` is the configuration, a mapping is validated into
           one by :meth:`load_config`, and ``None`` counts as no section. Anything else is a
           mistake that must not pass silently: ``config_error_type`` is raised, naming what
           was found and what was expected. Without a ``config_model`` the section is
           returned as it is.
        3. Otherwise (no such section): ``None``, and the provider keeps its own defaults.

        Args:
            app_config: The application's configuration object.

        Returns:
            The configuration, or ``None`` when ``app_config`` holds none for this provider.

        Raises:
            Exception: ``config_error_type`` (``TypeError`` unless a subclass says otherwise)
                when the section has the wrong type; whatever :meth:`load_config` raises for
                a mapping it cannot validate.
        """
        model, key = cls.config_model, cls.config_key
        if model is not None and isinstance(app_config, model):
            return app_config
        if key is None or app_config is None:
            return None
        if isinstance(app_config, Mapping):
            section = app_config.get(key)
            where = f"{type(app_config).__name__}[{key!r}]"
        else:
            section = getattr(app_config, key, None)
            where = f"{type(app_config).__name__}.{key}"
        if section is None or model is None or isinstance(section, model):
            return section
        if isinstance(section, Mapping):
            return cls.load_config(section)
        # The type only, never the value: a misplaced section may hold credentials.
        msg = (
            f"The application config's {where} is of type {type(section).__name__}, but provider "
            f"{cls.name or cls.__name__!r} expects a {model.__name__} or a mapping of its "
            f"settings there. Set {where} to one of those."
        )
        raise cls.config_error_type(msg)

    @classmethod
    def load_config(cls, section: Mapping[str, Any]) -> Any:
        """Validate a mapping found in the application's config into ``config_model``.

        The default calls ``config_model.model_validate(section)`` when the model has it
        (pydantic models), else ``config_model(**section)``. Providers whose configuration
        has its own loading path (defaults, environment variables, strict keys) override it.

        Args:
            section: The settings.

        Returns:
            The configuration.
        """
        model = cls.config_model
        if model is None:
            return section
        validate = getattr(model, "model_validate", None)
        if callable(validate):
            return validate(dict(section))
        return model(**section)

    async def application_config(
        self, container: ContainerRegistrarProtocol | ContainerResolverProtocol
    ) -> Any:
        """Return this provider's configuration from the application's config, or ``None``.

        Reads the :class:`ApplicationConfig` the application bound and applies
        :meth:`find_config` to it. Call it from ``register`` (or later); a provider given a
        configuration of its own should let that one win.

        Args:
            container: The application's container.

        Returns:
            The configuration, or ``None`` when the application has no config, or none for
            this provider, or `container` cannot resolve.
        """
        if not isinstance(container, ContainerResolverProtocol):
            return None
        bound = await container.resolve_optional(ApplicationConfig)
        if not isinstance(bound, ApplicationConfig):
            return None
        return self.find_config(bound.value)

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
