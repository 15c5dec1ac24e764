"""`PostgresTaskConfig` and the parsing of backend options.

Everything a queue or store needs to know about its database lives in one frozen
dataclass, built from keyword arguments, a dict, or a `TaskBackendSpec`'s ``options``.
Identifiers (schema, table) are validated here once, because they are spliced into SQL
text: they cannot be bind parameters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lexigram.contracts.tasks import TaskBackendSpec, TaskConfigurationError, mask_url

DEFAULT_SCHEMA = "lexigram_tasks"
"""Schema that holds the queue and store tables unless `schema` says otherwise."""

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")
_CHANNEL_SAFE = re.compile(r"^[a-z0-9_.:-]+$")
# LISTEN/NOTIFY channel names are identifiers: at most NAMEDATALEN - 1 bytes.
_MAX_CHANNEL = 63

# Options a spec may carry, beyond the fields of PostgresTaskConfig.
_STORE_OPTIONS = ("namespace", "result_ttl")


def _unwrap_secret(value: Any) -> Any:
    """Accept a pydantic `SecretStr` (or anything with `get_secret_value`) for the DSN."""
    getter = getattr(value, "get_secret_value", None)
    return getter() if callable(getter) else value


def normalize_dsn(dsn: str | None) -> str | None:
    """Return `dsn` in the form asyncpg accepts.

    SQLAlchemy-style schemes (``postgresql+asyncpg://``) are reduced to ``postgresql://``;
    an empty string means "use the libpq environment variables" (None).
    """
    if not dsn:
        return None
    scheme, sep, rest = dsn.partition("://")
    if sep and "+" in scheme:
        scheme = scheme.split("+", 1)[0]
    return f"{scheme}{sep}{rest}"


def validate_identifier(value: object, *, field: str) -> str:
    """Return `value` if it is a safe lower-case SQL identifier, else raise.

    Raises:
        TaskConfigurationError: The value is not a lower-case identifier.
    """
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        msg = (
            f"PostgreSQL backend {field}={value!r} is not a valid name. Use lower-case "
            "letters, digits and underscores, starting with a letter or underscore "
            "(at most 48 characters), e.g. 'lexigram_tasks'."
        )
        raise TaskConfigurationError(msg)
    return value


def quote_ident(name: str) -> str:
    """Double-quote an identifier already checked by `validate_identifier`."""
    return f'"{name}"'


def channel_name(*parts: str) -> str:
    """Return the LISTEN/NOTIFY channel for `parts` (schema, table, queue...).

    Readable when it fits in 63 bytes of safe characters, otherwise a stable hash, so
    any queue name maps to a valid channel.
    """
    readable = "lexigram." + ".".join(parts)
    if len(readable.encode()) <= _MAX_CHANNEL and _CHANNEL_SAFE.fullmatch(readable):
        return readable
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
    return f"lexigram.{digest}"


def _number(data: Mapping[str, Any], name: str, default: float, *, source: str) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        msg = f"{source} option {name}={value!r} is not a number. Use e.g. {default!r}."
        raise TaskConfigurationError(msg)
    try:
        return float(value)
    except ValueError:
        msg = f"{source} option {name}={value!r} is not a number. Use e.g. {default!r}."
        raise TaskConfigurationError(msg) from None


def _integer(data: Mapping[str, Any], name: str, default: int, *, source: str) -> int:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | str):
        msg = f"{source} option {name}={value!r} is not a whole number. Use e.g. {default!r}."
        raise TaskConfigurationError(msg)
    try:
        return int(value)
    except ValueError:
        msg = f"{source} option {name}={value!r} is not a whole number. Use e.g. {default!r}."
        raise TaskConfigurationError(msg) from None


@dataclass(frozen=True, slots=True)
class PostgresTaskConfig:
    """Connection and queue settings of the PostgreSQL backend.

    Attributes:
        dsn: PostgreSQL DSN (``postgresql://user:pass@host:5432/db``); None uses the
            libpq environment variables (``PGHOST``...). Never logged unmasked.
        table: Name of the jobs table (its idempotency keys live in ``<table>_keys``).
        pool_min_size: Connections the pool keeps open.
        pool_max_size: Most connections the pool opens (the LISTEN connection is extra).
        command_timeout: Seconds a single statement may take before it is abandoned.
        max_attempts: Attempts for an operation that fails on a lost connection or a
            restarting server (with exponential backoff) before `BackendConnectionError`.
        schema: Schema holding every table of the backend.
        queue_name: Queue served by a `PostgresTaskQueue` built from this config.
        visibility_timeout: Lease length in seconds for dequeued jobs.
        poll_interval: Safety-net poll in seconds for idle consumers; LISTEN/NOTIFY wakes
            them first, this only bounds the delay if a notification is ever missed.
        idempotency_ttl: Seconds an idempotency key stays held after its job's enqueue
            (it is also held while that job is still in the queue).
        connect_timeout: Seconds to wait for a new connection.

    Example:
        config = PostgresTaskConfig("postgresql://app@db/app", visibility_timeout=60.0)
        queue = PostgresTaskQueue(config)
    """

    dsn: str | None = None
    table: str = "tasks"
    pool_min_size: int = 1
    pool_max_size: int = 2
    command_timeout: float = 60.0
    max_attempts: int = 5
    schema: str = DEFAULT_SCHEMA
    queue_name: str = "tasks"
    visibility_timeout: float = 30.0
    poll_interval: float = 5.0
    idempotency_ttl: float = 86400.0
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "dsn", normalize_dsn(_unwrap_secret(self.dsn)))
        validate_identifier(self.schema, field="schema")
        validate_identifier(self.table, field="table")
        if not self.queue_name:
            msg = f"PostgreSQL backend queue_name={self.queue_name!r} is empty. Name the queue."
            raise TaskConfigurationError(msg)
        self._check_positive("visibility_timeout", self.visibility_timeout)
        self._check_positive("poll_interval", self.poll_interval)
        self._check_positive("command_timeout", self.command_timeout)
        self._check_positive("connect_timeout", self.connect_timeout)
        if not self.idempotency_ttl >= 0:
            msg = (
                f"PostgreSQL backend idempotency_ttl={self.idempotency_ttl!r} is negative. "
                "Use 0 or more seconds."
            )
            raise TaskConfigurationError(msg)
        if self.max_attempts < 1:
            msg = (
                f"PostgreSQL backend max_attempts={self.max_attempts!r} is below 1. Use 1 "
                "(no retry) or more."
            )
            raise TaskConfigurationError(msg)
        if not 0 <= self.pool_min_size <= self.pool_max_size or self.pool_max_size < 1:
            msg = (
                f"PostgreSQL backend pool sizes min={self.pool_min_size!r}, "
                f"max={self.pool_max_size!r} are inconsistent. Use 0 <= pool_min_size <= "
                "pool_max_size and pool_max_size >= 1."
            )
            raise TaskConfigurationError(msg)

    @staticmethod
    def _check_positive(name: str, value: float) -> None:
        if isinstance(value, bool) or not (value > 0 and math.isfinite(value)):
            msg = f"PostgreSQL backend {name}={value!r} is not a positive number of seconds."
            raise TaskConfigurationError(msg)

    def __repr__(self) -> str:
        dsn = None if self.dsn is None else mask_url(self.dsn)
        return (
            f"PostgresTaskConfig(dsn={dsn!r}, schema={self.schema!r}, table={self.table!r}, "
            f"queue_name={self.queue_name!r}, visibility_timeout={self.visibility_timeout!r})"
        )

    @property
    def masked_dsn(self) -> str:
        """The DSN with its password replaced by ``***`` (safe for logs and errors)."""
        return "(libpq environment)" if self.dsn is None else mask_url(self.dsn)

    def replace(self, **changes: Any) -> PostgresTaskConfig:
        """Return a copy with `changes` applied (None values are ignored)."""
        kept = {name: value for name, value in changes.items() if value is not None}
        return dataclasses.replace(self, **kept) if kept else self

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, source: str = "PostgreSQL backend"
    ) -> PostgresTaskConfig:
        """Build a config from a dict (e.g. YAML or a spec's options).

        Args:
            data: Keys named like the fields; missing keys take the defaults.
            source: Name used in error messages.

        Returns:
            The validated config.

        Raises:
            TaskConfigurationError: A key is unknown or a value has the wrong type.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(key) for key in data if key not in known)
        if unknown:
            msg = (
                f"{source} got unknown option(s) {unknown}. It accepts {sorted(known)}; "
                "check the spelling."
            )
            raise TaskConfigurationError(msg)
        defaults = cls()
        dsn = _unwrap_secret(data.get("dsn"))
        if dsn is not None and not isinstance(dsn, str):
            msg = f"{source} dsn is a {type(dsn).__name__}, not a string. Pass the DSN text."
            raise TaskConfigurationError(msg)
        return cls(
            dsn=dsn,
            table=str(data.get("table", defaults.table)),
            pool_min_size=_integer(data, "pool_min_size", defaults.pool_min_size, source=source),
            pool_max_size=_integer(data, "pool_max_size", defaults.pool_max_size, source=source),
            command_timeout=_number(
                data, "command_timeout", defaults.command_timeout, source=source
            ),
            max_attempts=_integer(data, "max_attempts", defaults.max_attempts, source=source),
            schema=str(data.get("schema", defaults.schema)),
            queue_name=str(data.get("queue_name", defaults.queue_name)),
            visibility_timeout=_number(
                data, "visibility_timeout", defaults.visibility_timeout, source=source
            ),
            poll_interval=_number(data, "poll_interval", defaults.poll_interval, source=source),
            idempotency_ttl=_number(
                data, "idempotency_ttl", defaults.idempotency_ttl, source=source
            ),
            connect_timeout=_number(
                data, "connect_timeout", defaults.connect_timeout, source=source
            ),
        )

    @classmethod
    def from_spec(cls, spec: TaskBackendSpec) -> PostgresTaskConfig:
        """Build a config from a backend spec: its url, queue_name and options.

        Store-only options (``namespace``, ``result_ttl``) are accepted and left out.

        Raises:
            TaskConfigurationError: An option is unknown or has a wrong value.
        """
        options = {k: v for k, v in spec.options.items() if k not in _STORE_OPTIONS}
        options.pop("queue_name", None)
        options["dsn"] = spec.url
        options["queue_name"] = spec.queue_name
        return cls.from_mapping(options, source=f"PostgreSQL backend {spec.name!r}")


def store_namespace(spec: TaskBackendSpec) -> str:
    """The ``namespace`` option of a spec: which records a store lists (default 'default')."""
    value = spec.options.get("namespace", "default")
    if not isinstance(value, str) or not value:
        msg = (
            f"PostgreSQL backend {spec.name!r} option namespace={value!r} is not a non-empty "
            "string. Use e.g. 'default'."
        )
        raise TaskConfigurationError(msg)
    return value


def result_ttl(spec: TaskBackendSpec) -> float:
    """The ``result_ttl`` option of a spec in seconds (default one day)."""
    value = _number(spec.options, "result_ttl", 86400.0, source=f"PostgreSQL backend {spec.name!r}")
    if not value > 0:
        msg = f"PostgreSQL backend {spec.name!r} result_ttl={value!r} is not positive."
        raise TaskConfigurationError(msg)
    return value
