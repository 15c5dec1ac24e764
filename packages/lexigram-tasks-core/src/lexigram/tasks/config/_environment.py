"""Deployment environments and the checks `TaskConfig.validate_for_environment` runs.

A configuration can be valid (every value has the right type and range) and still be
wrong for where it runs: an in-memory queue in production loses every job on restart,
``guest:guest`` is RabbitMQ's well-known default login, and a ``localhost`` URL in
production usually means a forgotten override. These checks return `ConfigIssue`s
instead of raising, so a deployment can decide what to block on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from lexigram.contracts.tasks import TaskConfigurationError, mask_url
from lexigram.tasks.constants import (
    BACKEND_MEMORY,
    DEFAULT_AMQP_URL,
    DEFAULT_REDIS_URL,
    ENV_ENVIRONMENT_VAR,
)

if TYPE_CHECKING:
    from lexigram.tasks._backends import TaskBackendRegistry
    from lexigram.tasks.config._sections import NamedTaskConfig, TaskBackendConfig
    from lexigram.tasks.config._task_config import TaskConfig

Severity = Literal["error", "warning", "info"]


class Environment(StrEnum):
    """Where an application runs; read from ``LEX_ENV`` unless the config sets ``env``."""

    PRODUCTION = "production"
    STAGING = "staging"
    DEVELOPMENT = "development"
    TESTING = "testing"

    @classmethod
    def parse(cls, value: str | Environment, *, source: str = "env") -> Environment:
        """Return the environment named by `value` (``prod``, ``dev``, ``test`` also work).

        Args:
            value: The name.
            source: Where the name came from, for the error message.

        Raises:
            TaskConfigurationError: The name is not an environment.
        """
        if isinstance(value, Environment):
            return value
        key = str(value).strip().lower()
        found = _ALIASES.get(key)
        if found is None:
            allowed = ", ".join(repr(env.value) for env in cls)
            msg = (
                f"{source}={value!r} is not a known environment. Use one of {allowed} "
                "(or prod, stage, dev, test)."
            )
            raise TaskConfigurationError(msg, details={"value": str(value)})
        return found

    @classmethod
    def current(cls, environ: Mapping[str, str] | None = None) -> Environment:
        """Return the environment named by ``LEX_ENV``, or development when it is unset."""
        env = os.environ if environ is None else environ
        value = env.get(ENV_ENVIRONMENT_VAR, "").strip()
        if not value:
            return cls.DEVELOPMENT
        return cls.parse(value, source=ENV_ENVIRONMENT_VAR)


_ALIASES: Mapping[str, Environment] = {
    **{env.value: env for env in Environment},
    "prod": Environment.PRODUCTION,
    "stage": Environment.STAGING,
    "dev": Environment.DEVELOPMENT,
    "test": Environment.TESTING,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigIssue:
    """One finding of `TaskConfig.validate_for_environment`.

    Attributes:
        field: Dotted path of the field, e.g. ``tasks.backends[1].amqp_url``.
        value: The value, rendered with any password masked.
        severity: ``"error"`` (must fix before deploying), ``"warning"`` or ``"info"``.
        message: What is wrong, as a sentence.
        fix: What to do, as a sentence.
        blocking: The backend cannot be built at all (its type is not installed, or its
            URL's scheme is served by none): whoever builds it (`TaskProvider`, a
            ``lexigram-tasks`` command) raises this same problem as an error.
    """

    field: str
    value: str
    severity: Severity
    message: str
    fix: str
    blocking: bool = False

    def __str__(self) -> str:
        return f"[{self.severity}] {self.field} = {self.value}: {self.message} {self.fix}"


_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})  # noqa: S104 - compared, not bound
_DEFAULT_LOGINS = frozenset({("guest", "guest"), ("admin", "admin"), ("user", "password")})
_PLACEHOLDERS = ("changeme", "change-me", "example", "placeholder", "xxx", "todo")
_DEFAULT_URLS = frozenset({DEFAULT_REDIS_URL, DEFAULT_AMQP_URL, DEFAULT_REDIS_URL + "/0"})


def _backend_url(
    backend: NamedTaskConfig | TaskBackendConfig, registry: TaskBackendRegistry | None
) -> tuple[str, str | None]:
    """Return (field name, URL) of the URL a backend will connect to."""
    # Imported here: discovery reads entry-point metadata, which only these checks need.
    from lexigram.tasks._backends import url_of  # noqa: PLC0415

    return url_of(backend, registry=registry)


def _needs_url(backend_type: str, registry: TaskBackendRegistry | None) -> bool:
    """Whether the backend connects somewhere and has no usable default (``url_required``)."""
    return _registry(registry).url_required(backend_type)


def _is_process_local(backend_type: str, registry: TaskBackendRegistry | None) -> bool:
    return _registry(registry).is_process_local(backend_type)


def _registry(registry: TaskBackendRegistry | None) -> TaskBackendRegistry:
    """`registry`, or one that resolves the installed backends only."""
    from lexigram.tasks._backends import TaskBackendRegistry  # noqa: PLC0415

    return registry if registry is not None else TaskBackendRegistry()


def check_config(
    config: TaskConfig, env: Environment, *, registry: TaskBackendRegistry | None = None
) -> list[ConfigIssue]:
    """Run every check on `config` for `env` and return the findings, errors first.

    Args:
        config: The configuration.
        env: Where it is to run.
        registry: Where backend types are resolved (backends registered in code count
            as installed); None reads the installed entry points only.
    """
    issues = list(_check_all(config, env, registry))
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted(issues, key=lambda issue: order[issue.severity])


def _check_all(
    config: TaskConfig, env: Environment, registry: TaskBackendRegistry | None
) -> Iterator[ConfigIssue]:
    strict_env = env in (Environment.PRODUCTION, Environment.STAGING)
    if not config.enabled:
        yield ConfigIssue(
            field="tasks.enabled",
            value="False",
            severity="info",
            message="The tasks module is disabled; no queue, worker or scheduler starts.",
            fix="Set tasks.enabled to true to run tasks.",
        )
    backends: list[tuple[str, NamedTaskConfig | TaskBackendConfig]]
    if config.backends:
        backends = [(f"tasks.backends[{i}]", entry) for i, entry in enumerate(config.backends)]
    else:
        backends = [("tasks.backend", config.backend)]
    for path, backend in backends:
        yield from _check_backend(path, backend, env, strict_env=strict_env, registry=registry)
    yield from _check_workers(config, env)
    yield from _check_timeouts(config)


def _check_backend(
    path: str,
    backend: NamedTaskConfig | TaskBackendConfig,
    env: Environment,
    *,
    strict_env: bool,
    registry: TaskBackendRegistry | None,
) -> Iterator[ConfigIssue]:
    # Imported here: discovery reads entry-point metadata, which only this check needs.
    from lexigram.tasks._backends import (  # noqa: PLC0415
        available_backends,
        backend_type_of,
        missing_backend_fix,
        shown_url,
    )

    try:
        # What the runtime builds: with ``type`` unset, a ``url`` chooses by its scheme.
        backend_type = backend_type_of(backend, registry=registry, path=path)
    except TaskConfigurationError as exc:
        yield ConfigIssue(
            field=f"{path}.url",
            value=repr(shown_url(_backend_url(backend, registry)[1] or "")),
            severity="error",
            message=str(exc),
            fix="No backend can be built from this configuration until it is fixed.",
            blocking=True,
        )
        return
    installed = registry.available_backends() if registry is not None else available_backends()
    if backend_type not in installed:
        yield ConfigIssue(
            field=f"{path}.type",
            value=repr(backend_type),
            severity="error",
            message=(
                f"No task backend named {backend_type!r} is installed (installed: "
                f"{', '.join(map(repr, installed)) or 'none'})."
            ),
            fix=missing_backend_fix(backend_type),
            blocking=True,
        )
    if strict_env and backend_type in installed and _is_process_local(backend_type, registry):
        what = "in-memory" if backend_type == BACKEND_MEMORY else f"process-local {backend_type}"
        yield ConfigIssue(
            field=f"{path}.type",
            value=repr(backend_type),
            severity="error" if env is Environment.PRODUCTION else "warning",
            message=(
                f"The {what} backend loses every queued job when the process exits and "
                f"is not shared between processes; it is not meant for {env.value}."
            ),
            fix="Use a backend that keeps jobs outside the process (see docs/backends/).",
        )
        return
    field_name, url = _backend_url(backend, registry)
    field = f"{path}.{field_name}"
    if not url and backend_type in installed and _needs_url(backend_type, registry):
        # `field_name` is the backend's older field when it declares one (redis_url),
        # which still works; the generic url is what to recommend.
        older = f" (or {path}.{field_name})" if field_name != "url" else ""
        yield ConfigIssue(
            field=field,
            value="None",
            severity="error",
            message=f"The {backend_type} backend has no URL to connect to.",
            fix=f"Set {path}.url{older}, e.g. from an environment variable.",
        )
        return
    if url:
        yield from _check_url(field, url, env, strict_env=strict_env)


def _check_url(
    field: str, url: str, env: Environment, *, strict_env: bool
) -> Iterator[ConfigIssue]:
    shown = repr(mask_url(url))
    try:
        parts = urlsplit(url)
        host, user, password = parts.hostname, parts.username, parts.password
    except ValueError:
        yield ConfigIssue(
            field=field,
            value=shown,
            severity="error",
            message="The URL cannot be parsed.",
            fix="Write it as scheme://user:password@host:port/path.",
        )
        return
    if (user, password) in _DEFAULT_LOGINS:
        yield ConfigIssue(
            field=field,
            value=shown,
            severity="error" if strict_env else "warning",
            message=(
                f"The URL uses the well-known default login {user!r} with its default password."
            ),
            fix="Create a dedicated user with a strong password and read it from a secret.",
        )
    elif password and any(marker in password.lower() for marker in _PLACEHOLDERS):
        yield ConfigIssue(
            field=field,
            value=shown,
            severity="error" if strict_env else "warning",
            message="The URL's password looks like a placeholder.",
            fix="Set the real password, e.g. through ${VAR} interpolation from a secret.",
        )
    if not strict_env:
        return
    if url.rstrip("/") in {u.rstrip("/") for u in _DEFAULT_URLS}:
        yield ConfigIssue(
            field=field,
            value=shown,
            severity="error" if env is Environment.PRODUCTION else "warning",
            message="The URL is the built-in default placeholder, not a configured server.",
            fix="Set the URL of your server, e.g. from ${REDIS_URL} or ${AMQP_URL}.",
        )
    elif host in _LOCAL_HOSTS:
        yield ConfigIssue(
            field=field,
            value=shown,
            severity="warning",
            message=f"The URL points at {host}, which in {env.value} is rarely the real server.",
            fix="Point it at the service's hostname, or ignore this if the server is local.",
        )
    if password is None:
        yield ConfigIssue(
            field=field,
            value=shown,
            severity="warning",
            message="The URL has no password; the server accepts anyone who can reach it.",
            fix="Enable authentication on the server and put the password in the URL.",
        )


def _check_workers(config: TaskConfig, env: Environment) -> Iterator[ConfigIssue]:
    worker = config.worker
    if worker.worker_count == 0 and config.scheduler.enabled:
        yield ConfigIssue(
            field="tasks.worker.worker_count",
            value="0",
            severity="warning",
            message=(
                "No workers run in this process, but the scheduler is enabled: scheduled "
                "jobs are enqueued and wait for a worker elsewhere."
            ),
            fix=(
                "Set worker_count ≥ 1, or disable the scheduler, or make sure worker "
                "processes consume the same queue."
            ),
        )
    if worker.shutdown_timeout == 0 and env is Environment.PRODUCTION:
        yield ConfigIssue(
            field="tasks.worker.shutdown_timeout",
            value="0.0",
            severity="warning",
            message="Running jobs are cancelled and requeued at once on every shutdown.",
            fix="Give running jobs time to finish, e.g. shutdown_timeout: 30.",
        )


def _check_timeouts(config: TaskConfig) -> Iterator[ConfigIssue]:
    # What the workers run with: the worker section with the timeout section's values
    # over its defaults, each blamed on the section that set it (or on the worker
    # section, for a default).
    effective = config.effective_worker()
    if effective.default_timeout <= effective.max_timeout:
        return

    def source(name: str) -> str:
        if name not in config.worker.model_fields_set and name in config.timeout.model_fields_set:
            return f"tasks.timeout.{name}"
        return f"tasks.worker.{name}"

    yield ConfigIssue(
        field=source("default_timeout"),
        value=repr(effective.default_timeout),
        severity="error",
        message=(
            f"The default timeout exceeds {source('max_timeout')} "
            f"({effective.max_timeout!r}), so every job would be cut to max_timeout."
        ),
        fix="Make default_timeout ≤ max_timeout.",
    )
