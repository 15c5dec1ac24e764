"""`TaskConfig`: the root configuration, with loading (dict, YAML, environment) and checks."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator

from lexigram.contracts.tasks import TaskConfigurationError, TaskQueueError, mask_url
from lexigram.tasks.config._environment import ConfigIssue, Environment, check_config
from lexigram.tasks.config._loading import (
    RawConfig,
    apply_environment,
    deep_merge,
    interpolate,
    profile_path,
    read_yaml,
    select_section,
)
from lexigram.tasks.config._sections import (
    _NESTED,
    NamedTaskConfig,
    RetryConfig,
    TaskBackendConfig,
    TaskRateLimitConfig,
    TaskSchedulerConfig,
    TaskTimeoutConfig,
    TaskWorkerConfig,
    _empty_list,
    _empty_mapping,
    _Section,
)
from lexigram.tasks.config._security import TaskSecurityConfig
from lexigram.tasks.config._validation import (
    FieldsValueError,
    InvolvedValueError,
    Loc,
    backend_error_with_sources,
    configuration_error,
    find_unknown_keys,
    problem_of_check,
    problems_from_validation_error,
    report_unknown_keys,
)
from lexigram.tasks.constants import (
    CONFIG_SECTION,
    DEFAULT_CONFIG_FILE,
    DEFAULT_CONFIG_NAME,
    ENV_PREFIX,
)

if TYPE_CHECKING:
    from lexigram.tasks._backends import TaskBackendRegistry

_E = TypeVar("_E", bound=TaskQueueError)

# Where the values of each loaded config came from (environment variables), by id. Kept
# beside the model rather than in a private attribute, which pydantic would compare in
# `==`: two configs with the same settings stay equal wherever their values came from.
_SOURCES: dict[int, dict[Loc, str]] = {}


def _remember_sources(config: TaskConfig, sources: Mapping[Loc, str]) -> None:
    if not sources:
        return
    key = id(config)
    _SOURCES[key] = dict(sources)
    weakref.finalize(config, _SOURCES.pop, key, None)


class TaskConfig(_Section):
    """Hierarchical root configuration for lexigram-tasks.

    Load it with `from_dict`, `from_yaml` (``${VAR}`` interpolation) or `from_env`
    (``LEX_TASKS__SECTION__FIELD`` variables). Precedence, lowest to highest: defaults,
    the file, the environment, explicit overrides.

    Attributes:
        name: Configuration name.
        enabled: Whether the tasks module is enabled.
        backend: Single-backend configuration (used when `backends` is empty).
        worker: Worker settings.
        scheduler: Scheduler settings.
        retry: Retry backoff settings.
        rate_limit: Global rate limit.
        timeout: Timeout settings.
        security: Envelope signing keys and the maximum payload size.
        extra: Extra configuration.
        backends: Named backends (multi-backend mode).
        env: The deployment environment; None reads ``LEX_ENV``.
        strict: Whether loading (`from_dict`, `from_yaml`, `from_env`, every command)
            rejects unknown keys; ``strict: false`` makes them warnings instead, for a
            config written for a newer version.
    """

    config_path: ClassVar[str] = CONFIG_SECTION
    config_section: ClassVar[str] = CONFIG_SECTION
    env_prefix: ClassVar[str] = ENV_PREFIX

    name: str = DEFAULT_CONFIG_NAME
    enabled: bool = True
    backend: TaskBackendConfig = Field(default_factory=TaskBackendConfig)
    worker: TaskWorkerConfig = Field(default_factory=TaskWorkerConfig)
    scheduler: TaskSchedulerConfig = Field(default_factory=TaskSchedulerConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    rate_limit: TaskRateLimitConfig = Field(default_factory=TaskRateLimitConfig)
    timeout: TaskTimeoutConfig = Field(default_factory=TaskTimeoutConfig)
    security: TaskSecurityConfig = Field(default_factory=TaskSecurityConfig)
    extra: dict[str, Any] = Field(default_factory=_empty_mapping)
    backends: list[NamedTaskConfig] = Field(default_factory=_empty_list)
    env: Environment | None = None
    strict: bool = True

    @field_validator("env", mode="before")
    @classmethod
    def _parse_env(cls, value: Any) -> Any:
        if value is None or isinstance(value, Environment):
            return value
        try:
            return Environment.parse(str(value))
        except TaskConfigurationError:
            allowed = ", ".join(env.value for env in Environment)
            msg = f"is not a known environment. Use one of {allowed} (or prod, stage, dev, test)"
            raise ValueError(msg) from None

    @field_validator("backends")
    @classmethod
    def _check_backends(cls, entries: list[NamedTaskConfig]) -> list[NamedTaskConfig]:
        # Each error names the entries' values it is about (InvolvedValueError), so a
        # name or a primary flag set by a LEX_TASKS__BACKENDS__* variable is named too.
        names = [entry.name for entry in entries]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            msg = (
                f"backend names {duplicates} are used more than once. Give every entry of "
                "backends a unique name"
            )
            involved = [(i, "name") for i, name in enumerate(names) if name in duplicates]
            raise InvolvedValueError(msg, involves=involved)
        primaries = [entry.name for entry in entries if entry.primary]
        if len(primaries) > 1:
            msg = (
                f"backends {primaries} are all marked primary. Mark at most one backend "
                "primary: true"
            )
            involved = [(i, "primary") for i, entry in enumerate(entries) if entry.primary]
            raise InvolvedValueError(msg, involves=involved)
        primary = primaries[0] if primaries else (names[0] if names else None)
        if "default" in names and primary != "default":
            # @task(queue="default") and .delay() mean the primary backend by that word.
            msg = (
                f"a backend that is not the primary one ({primary!r}) is named 'default', "
                "the word @task(queue=...) uses for the primary backend, so .delay() and "
                "Named('default') would pick different backends. Rename it, or mark it "
                "primary: true"
            )
            involved = [(names.index("default"), "name")]
            involved += [(i, "primary") for i, entry in enumerate(entries) if entry.primary]
            raise InvolvedValueError(msg, involves=involved)
        return entries

    @model_validator(mode="after")
    def _check_worker_sections(self) -> TaskConfig:
        conflict = _worker_sections_conflict(self)
        if conflict is not None:
            raise conflict
        return self

    @model_validator(mode="after")
    def _check_backend_section(self) -> TaskConfig:
        # With a backends list every door builds its queues from the entries alone, so a
        # per-backend key of the backend section (a URL, a type) would be silently
        # ignored: refused, as an entry's enqueue_timeout is (keys_set_elsewhere).
        if not self.backends:
            return self
        per_backend = TaskBackendConfig.keys_set_per_backend
        unused = [name for name in per_backend if name in self.backend.model_fields_set]
        if unused:
            msg = (
                "is ignored when tasks.backends is set (each entry configures its own "
                "backend; of tasks.backend, only enqueue_timeout applies). Move it into an "
                "entry of tasks.backends, or remove it"
            )
            values: dict[Loc, Any] = {("backend", n): getattr(self.backend, n) for n in unused}
            raise FieldsValueError(msg, fields=values)
        return self

    def effective_worker(self) -> TaskWorkerConfig:
        """The worker settings every worker of this config runs with.

        The ``retry`` and ``timeout`` sections configure the worker: a value set in
        them replaces the worker section's default (``timeout.default_timeout`` becomes
        ``worker.default_timeout``, ``retry.max_delay`` becomes
        ``worker.retry.max_delay``). Setting the same value in both places differently
        is a configuration error. `TaskProvider` and ``lexigram-tasks worker`` both
        build their workers from this.

        Returns:
            A new `TaskWorkerConfig`.

        Raises:
            TaskConfigurationError: The two places contradict each other, which only a
                change by assignment since the config was validated can make them do.
        """
        # Assignment validates only the field assigned, so `c.worker.default_timeout = 7`
        # on a config whose timeout section sets 5 passed unchecked; with_environment
        # re-validated it, but only when some LEX_TASKS__* variable applied. The check is
        # here, not in an always re-validating with_environment: every door (TaskProvider
        # at registration, every command, each worker process) reports its config or
        # builds its workers through this, and it costs a few set lookups, where a
        # re-validation would rebuild the whole config on the common path (no variable).
        conflict = _worker_sections_conflict(self)
        if conflict is not None:
            raise configuration_error([problem_of_check(conflict, root=self.config_path)])
        timeout_updates = {
            name: getattr(self.timeout, name)
            for name in self.timeout.model_fields_set
            if name in TaskWorkerConfig.model_fields
        }
        retry = self.worker.retry
        retry_updates = {
            name: getattr(self.retry, name)
            for name in self.retry.model_fields_set
            if name not in retry.model_fields_set
        }
        if retry_updates:
            retry = retry.model_copy(update=retry_updates)
        updates: dict[str, Any] = {
            name: value
            for name, value in timeout_updates.items()
            if name not in self.worker.model_fields_set
        }
        updates["retry"] = retry
        return self.worker.model_copy(update=updates)

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        strict: bool | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> TaskConfig:
        """Build a config from a mapping (the contents of the ``tasks`` section).

        Args:
            data: The settings.
            strict: Reject unknown keys (the default). False only logs a warning about
                each, for configs written for a newer version; None takes the config's own
                ``strict`` key (default true).
            overrides: Settings that win over `data` (nested mappings merge).

        Returns:
            The validated config.

        Raises:
            TaskConfigurationError: A value is invalid, or a key is unknown (unless not strict); the
                message lists every problem with its field, value and fix; `data` is
                not a mapping.
        """
        if not isinstance(data, Mapping):  # untyped callers
            msg = (  # type: ignore[unreachable]
                f"TaskConfig.from_dict takes a mapping of the tasks section's settings, not "
                f"{type(data).__name__}. Pass e.g. {{'backend': {{'type': 'redis'}}}}."
            )
            raise TaskConfigurationError(msg)
        merged = deep_merge(data, overrides or {})
        return cls._build(RawConfig(merged), strict=strict)

    @classmethod
    def from_yaml(
        cls,
        path: str | Path = DEFAULT_CONFIG_FILE,
        *,
        section: str | None = None,
        env_override: bool = True,
        strict: bool | None = None,
        profile: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> TaskConfig:
        """Load a config from a YAML file.

        Strings may use ``${VAR}`` and ``${VAR:-default}``; ``$${`` is a literal ``${``.
        Precedence, lowest to highest: defaults, the file (then the profile file),
        ``LEX_TASKS__*`` variables (when `env_override`), `overrides`.

        Args:
            path: The YAML file.
            section: Dotted key of the tasks section. None takes the ``tasks`` key when
                the file has one and the whole file otherwise; ``""`` takes the whole file.
            env_override: Let ``LEX_TASKS__SECTION__FIELD`` variables override the file.
            strict: Reject unknown keys (the default). False only logs a warning about
                each, for configs written for a newer version; None takes the config's own
                ``strict`` key (default true).
            profile: Also load ``<name>.<profile>.yaml`` next to `path` over it, if present.
            overrides: Settings that win over everything else (explicit arguments).
            environ: Variables for interpolation and overrides (defaults to `os.environ`).

        Returns:
            The validated config.

        Raises:
            TaskConfigurationError: The file is missing or not YAML, a variable is unset,
                a value is invalid, or a key is unknown (unless not strict).
        """
        file = Path(path)
        origin = f"file '{file}'"
        data = cls._read_section(file, section, environ)
        if profile:
            overlay = profile_path(file, profile)
            if overlay.is_file():
                data = deep_merge(data, cls._read_section(overlay, section, environ))
                origin = f"files '{file}' and '{overlay}'"
        raw = RawConfig(data, origin=origin)
        if env_override:
            raw = apply_environment(raw, cls, environ=environ, prefix=cls.env_prefix)
        if overrides:
            raw = _overridden(raw, overrides)
        return cls._build(raw, strict=strict)

    @classmethod
    def from_env(
        cls,
        *,
        strict: bool | None = None,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> TaskConfig:
        """Load a config from ``LEX_TASKS__SECTION__FIELD`` environment variables.

        Example: ``LEX_TASKS__WORKER__WORKER_COUNT=4``,
        ``LEX_TASKS__BACKENDS__NOTIFICATIONS__REDIS_URL=redis://...``.

        Args:
            strict: Reject unknown keys (the default). False only logs a warning about
                each, for configs written for a newer version; None takes the config's own
                ``strict`` key (default true).
            environ: The variables (defaults to `os.environ`).
            overrides: Settings that win over the environment.

        Returns:
            The validated config.

        Raises:
            TaskConfigurationError: A value is invalid, or a key is unknown (unless not strict).
        """
        raw = apply_environment(
            RawConfig(origin="the environment"), cls, environ=environ, prefix=cls.env_prefix
        )
        if overrides:
            raw = _overridden(raw, overrides)
        return cls._build(raw, strict=strict)

    def with_environment(self, *, environ: Mapping[str, str] | None = None) -> TaskConfig:
        """This config with ``LEX_TASKS__*`` variables over it, as `from_yaml` reads a file.

        The command line reads an APP's own config (a `TaskProvider`'s) this way, so the
        variables win over it as they win over a ``--config`` file.

        Args:
            environ: The variables (defaults to `os.environ`).

        Returns:
            A new validated config; this one when no variable is set.

        Raises:
            TaskConfigurationError: A variable's value is invalid, or its key is unknown.
        """
        # This config was valid when built: what fails now, a variable made fail (or a
        # change by assignment since, which validates only the field assigned).
        raw = RawConfig(given_fields(self), origin="the environment")
        raw = apply_environment(raw, type(self), environ=environ, prefix=self.env_prefix)
        if not raw.sources:  # no variable applied
            return self
        return self._build(raw, strict=None)

    @classmethod
    def from_named(cls, entry: NamedTaskConfig, *, base: TaskConfig | None = None) -> TaskConfig:
        """Build a single-backend TaskConfig from a NamedTaskConfig entry.

        Used by `TaskProvider` to create one config per backend in multi-backend mode.

        Args:
            entry: The named backend entry to materialise.
            base: A config whose other sections (worker, scheduler, ...) are kept, and
                the settings of its backend section that are not per backend
                (``enqueue_timeout``).

        Returns:
            A TaskConfig configured for the single named backend.
        """
        # Every setting the entry has and the single-backend section knows; one left
        # unset (None) keeps the section's default.
        shared = set(TaskBackendConfig.model_fields) & set(NamedTaskConfig.model_fields)
        values = {name: getattr(entry, name) for name in shared}
        values = {name: value for name, value in values.items() if value is not None}
        if base is None:
            return cls(name=entry.name, backend=TaskBackendConfig(**values))
        # The keys a named entry cannot hold apply to every backend: the base's stay.
        kept = {key: getattr(base.backend, key) for key in NamedTaskConfig.keys_set_elsewhere}
        backend = TaskBackendConfig(**values, **kept)
        return base.model_copy(update={"name": entry.name, "backend": backend, "backends": []})

    @classmethod
    def _read_section(
        cls, file: Path, section: str | None, environ: Mapping[str, str] | None
    ) -> dict[str, Any]:
        data = select_section(read_yaml(file), section, file)
        result: dict[str, Any] = interpolate(data, origin=f"config file '{file}'", environ=environ)
        return result

    @classmethod
    def _build(cls, raw: RawConfig, *, strict: bool | None) -> TaskConfig:
        unknown = find_unknown_keys(cls, raw.data, root=cls.config_path, sources=raw.sources)
        if strict is None:
            own = raw.data.get("strict", True)
            strict = str(own).strip().lower() not in {"false", "0", "no", "off"}
        problems = list(unknown) if strict else []
        config: TaskConfig | None = None
        token = _NESTED.set(True)
        try:
            # BaseModel's own model_validate: the raw error keeps per-value locations,
            # which the sources (environment variables) are keyed by.
            config = cls._validate_raw(raw.data)
        except ValidationError as exc:
            problems += problems_from_validation_error(
                exc, cls, root=cls.config_path, sources=raw.sources
            )
        finally:
            _NESTED.reset(token)
        if problems or config is None:
            raise configuration_error(problems, origin=raw.origin)
        if unknown:
            report_unknown_keys(unknown, origin=raw.origin)
        # A backend checks its options only when it is built: its error needs them too.
        _remember_sources(config, raw.sources)
        return config

    def name_variables(self, error: _E, *, field: str, index: int | None = None) -> _E:
        """`error`, from building one of this config's backends, naming the variables behind it.

        A backend checks its own settings (``options``, its URL, its type) only when it
        is built. When a ``LEX_TASKS__*`` variable set the value it refuses, the error
        becomes one line in the format of loading's errors: the field, the value
        (secrets masked), ``(from environment variable ...)``, the problem and the fix.
        `TaskProvider` and the ``lexigram-tasks`` commands pass every error of building
        a configured backend through here.

        Args:
            error: The backend's error, its message prefixed with `field`.
            field: The config path the message is prefixed with (``tasks.backends[0]``).
            index: The entry of `backends` that was built; None for the `backend` section.

        Returns:
            A new error of the same type (same details, plus ``field`` and ``source``),
            or `error` itself when no variable set a value it may be about.
        """
        loc: Loc = ("backend",) if index is None else ("backends", index)
        return backend_error_with_sources(
            error,
            field=field,
            loc=loc,
            root=self.config_path,
            sources=_SOURCES.get(id(self), {}),
            value_at=self._value_at_loc,
        )

    def _value_at_loc(self, loc: Loc) -> Any:
        current: Any = self
        for part in loc:
            if isinstance(part, int):
                current = current[part] if isinstance(current, list) else None
            elif isinstance(current, BaseModel):
                current = getattr(current, part, None)
            elif isinstance(current, Mapping):
                current = current.get(part)
            else:
                return None
        return current

    # ------------------------------------------------------------------ environment

    @property
    def environment(self) -> Environment:
        """The deployment environment: `env` when set, else ``LEX_ENV``, else development."""
        return self.env if self.env is not None else Environment.current()

    @property
    def is_production(self) -> bool:
        """Check if running in production environment."""
        return self.environment is Environment.PRODUCTION

    @property
    def is_staging(self) -> bool:
        """Check if running in staging environment."""
        return self.environment is Environment.STAGING

    @property
    def is_development(self) -> bool:
        """Check if running in development environment."""
        return self.environment is Environment.DEVELOPMENT

    @property
    def is_testing(self) -> bool:
        """Check if running in test environment."""
        return self.environment is Environment.TESTING

    def validate_for_environment(
        self,
        env: Environment | str | None = None,
        *,
        registry: TaskBackendRegistry | None = None,
    ) -> list[ConfigIssue]:
        """Validate task configuration for the given environment.

        Flags what is valid but wrong for `env`: the memory backend in production,
        default or placeholder credentials (``guest:guest``), URLs without a password or
        pointing at localhost in production, a backend type that is not installed,
        workers disabled while the scheduler runs, timeouts that contradict each other.

        Args:
            env: Target environment; resolved from ``LEX_ENV`` when None (after `self.env`).
            registry: Where backend types are looked up besides the installed entry
                points (a provider's, with backends registered in code).

        Returns:
            List of ConfigIssue instances, errors first; empty when all is well.

        Raises:
            TaskConfigurationError: The ``retry``/``timeout`` sections and the worker's
                contradict each other since a change by assignment (`effective_worker`).
        """
        target = Environment.parse(env) if env is not None else self.environment
        return check_config(self, target, registry=registry)

    # ------------------------------------------------------------------ access

    @property
    def is_multi_backend(self) -> bool:
        """Whether `backends` declares named backends (otherwise `backend` is used)."""
        return bool(self.backends)

    @property
    def primary_backend(self) -> NamedTaskConfig | None:
        """The backend marked primary, else the first one, else None (single mode)."""
        for entry in self.backends:
            if entry.primary:
                return entry
        return self.backends[0] if self.backends else None

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value at a dotted path such as ``"worker.worker_count"``, or `default`."""
        current: Any = self
        for part in key.split("."):
            if isinstance(current, BaseModel) and part in type(current).model_fields:
                current = getattr(current, part)
            elif isinstance(current, Mapping) and part in current:
                current = current[part]
            else:
                return default
        return current

    def has_section(self, name: str) -> bool:
        """Return whether `name` is a section (a nested settings model) of this config."""
        field = type(self).model_fields.get(name)
        return field is not None and isinstance(getattr(self, name), BaseModel)

    def to_safe_dict(self) -> dict[str, Any]:
        """Return the settings as plain data with every secret masked (safe to log or show)."""
        masked: dict[str, Any] = _mask(self.model_dump(mode="python"))
        return masked


def _overridden(raw: RawConfig, overrides: Mapping[str, Any]) -> RawConfig:
    """`raw` with `overrides` merged over it; a value they replace is no longer a variable's."""
    replaced = _leaf_locs(overrides, ())
    sources = {
        loc: source
        for loc, source in raw.sources.items()
        if not any(loc[: len(at)] == at for at in replaced)
    }
    return RawConfig(deep_merge(raw.data, overrides), sources, raw.origin)


def _leaf_locs(data: Mapping[str, Any], base: Loc) -> list[Loc]:
    """Locations of the values a mapping sets (a mapping merges, anything else replaces)."""
    locs: list[Loc] = []
    for key, value in data.items():
        loc = (*base, str(key))
        locs += _leaf_locs(value, loc) if isinstance(value, Mapping) else [loc]
    return locs


def _explicit_pairs(config: TaskConfig) -> list[tuple[str, str]]:
    """(``section.field``, ``worker...field``) pairs set explicitly on both sides."""
    pairs = [
        (f"timeout.{name}", name)
        for name in config.timeout.model_fields_set
        if name in config.worker.model_fields_set
    ]
    pairs += [
        (f"retry.{name}", f"retry.{name}")
        for name in config.retry.model_fields_set
        if name in config.worker.retry.model_fields_set
    ]
    return pairs


def _worker_sections_conflict(config: TaskConfig) -> InvolvedValueError | None:
    """The error of values set both in `retry`/`timeout` and in `worker`, differently."""
    pairs = [
        (top, own)
        for top, own in _explicit_pairs(config)
        if _value_at(config, top) != _value_at(config.worker, own)
    ]
    if not pairs:
        return None
    conflicts = [
        f"tasks.{top} = {_value_at(config, top)!r} and tasks.worker.{own} = "
        f"{_value_at(config.worker, own)!r}"
        for top, own in pairs
    ]
    msg = (
        f"{'; '.join(conflicts)} contradict each other. Set each value in one place "
        "(the retry and timeout sections apply to the worker)"
    )
    involved: list[Loc] = [tuple(top.split(".")) for top, _ in pairs]
    involved += [("worker", *own.split(".")) for _, own in pairs]
    return InvolvedValueError(msg, involves=involved)


def _value_at(model: BaseModel, path: str) -> Any:
    value: Any = model
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _mask(value: Any) -> Any:
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        return mask_url(secret) if "://" in secret else "***"
    if isinstance(value, Mapping):
        return {key: _mask(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_mask(item) for item in value]
    return value


def given_fields(model: BaseModel) -> dict[str, Any]:
    """The fields of `model` that were set or differ from their defaults, nested alike.

    What rebuilding `model` needs: ``model_dump(exclude_unset=True)`` alone would drop
    a section that was never passed to the constructor but changed by assignment
    afterwards (``config.worker.max_concurrent_tasks = 3``), and a full dump would
    turn every default into an explicit setting.
    """
    given: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        explicit = name in model.model_fields_set
        if isinstance(value, BaseModel):
            nested = given_fields(value)
            if nested or explicit:
                given[name] = nested
        elif isinstance(value, list) and any(isinstance(item, BaseModel) for item in value):
            given[name] = [given_fields(i) if isinstance(i, BaseModel) else i for i in value]
        elif explicit or value != info.get_default(call_default_factory=True):
            given[name] = value
    return given
