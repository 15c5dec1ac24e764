"""The backend's options and the queue's settings, read with the contracts' `parse_options`.

`PostgresOptions` is what a `TaskBackendSpec.options` may carry (the backend object's
``options_type``); `PostgresTaskConfig` is what a `PostgresTaskQueue` runs with: those
options plus the DSN and the queue name. Both are frozen dataclasses checked once in
``__post_init__``. Identifiers (schema, table) are validated here because they are
spliced into SQL text: they cannot be bind parameters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lexigram.contracts.tasks import (
    TaskBackendSpec,
    TaskConfigurationError,
    mask_url,
    parse_options,
    require_number,
)

BACKEND_TYPE = "postgres"
"""The entry-point name of this backend."""

DEFAULT_SCHEMA = "lexigram_tasks"
"""Schema that holds the queue and store tables unless `schema` says otherwise."""

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")
_CHANNEL_SAFE = re.compile(r"^[a-z0-9_.:-]+$")
# LISTEN/NOTIFY channel names are identifiers: at most NAMEDATALEN - 1 bytes.
_MAX_CHANNEL = 63


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
        raise TaskConfigurationError(msg, details={"option": field})
    if field == "schema" and (value.startswith("pg_") or value == "information_schema"):
        msg = (
            f"PostgreSQL backend schema={value!r} is a name PostgreSQL keeps for itself. "
            "Use a schema of your own, e.g. 'lexigram_tasks'."
        )
        raise TaskConfigurationError(msg, details={"option": field})
    if field == "table" and (value in STORE_TABLES or value.endswith("_keys")):
        msg = (
            f"PostgreSQL backend table={value!r} is a name of the backend's own tables (the "
            "stores', or the '<table>_keys' of a jobs table). Name the jobs table "
            "otherwise, e.g. 'tasks' or 'email_jobs'."
        )
        raise TaskConfigurationError(msg, details={"option": field})
    return value


STORE_TABLES = frozenset(
    (
        "cache",
        "dead_letters",
        "idempotency",
        "locks",
        "progress",
        "rate_limits",
        "results",
        "schedules",
        "schema_migrations",
        "workflow_runs",
        "workflow_stages",
        "workflow_steps",
        "workflows",
    )
)
"""The tables of the stores and of the migrations, beside the jobs tables of a schema."""


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


def _positive(name: str, value: float) -> None:
    require_number("PostgreSQL backend", name, value)
    if not (value > 0 and math.isfinite(value)):
        msg = (
            f"PostgreSQL backend {name}={value!r} is not a positive number of seconds. "
            f"Set {name} to a number above 0."
        )
        raise TaskConfigurationError(msg, details={"option": name})


def _check(settings: PostgresOptions | PostgresTaskConfig) -> None:
    """Check the values `parse_options` cannot (ranges, identifiers, consistency)."""
    validate_identifier(settings.schema, field="schema")
    validate_identifier(settings.table, field="table")
    for name in ("visibility_timeout", "poll_interval", "command_timeout", "connect_timeout"):
        _positive(name, getattr(settings, name))
    require_number("PostgreSQL backend", "idempotency_ttl", settings.idempotency_ttl)
    for name in ("max_attempts", "pool_min_size", "pool_max_size"):
        require_number("PostgreSQL backend", name, getattr(settings, name), whole=True)
    if not settings.idempotency_ttl >= 0:
        msg = (
            f"PostgreSQL backend idempotency_ttl={settings.idempotency_ttl!r} is negative. "
            "Use 0 or more seconds."
        )
        raise TaskConfigurationError(msg, details={"option": "idempotency_ttl"})
    if settings.max_attempts < 1:
        msg = (
            f"PostgreSQL backend max_attempts={settings.max_attempts!r} is below 1. Use 1 "
            "(no retry) or more."
        )
        raise TaskConfigurationError(msg, details={"option": "max_attempts"})
    if not 0 <= settings.pool_min_size <= settings.pool_max_size or settings.pool_max_size < 1:
        msg = (
            f"PostgreSQL backend pool sizes min={settings.pool_min_size!r}, "
            f"max={settings.pool_max_size!r} are inconsistent. Use 0 <= pool_min_size <= "
            "pool_max_size and pool_max_size >= 1."
        )
        raise TaskConfigurationError(msg)


@dataclass(frozen=True, slots=True)
class PostgresOptions:
    """The options a ``postgres`` backend spec may carry (``options:`` in config).

    Attributes:
        schema: Schema holding every table of the backend.
        table: Name of the jobs table (its idempotency keys live in ``<table>_keys``).
        visibility_timeout: Lease length in seconds for dequeued jobs.
        poll_interval: Safety-net poll in seconds for idle consumers; LISTEN/NOTIFY wakes
            them first, this only bounds the delay if a notification is ever missed.
        idempotency_ttl: Seconds an idempotency key stays held after its job's enqueue
            (it is also held while that job is still in the queue).
        pool_min_size: Connections the pool keeps open.
        pool_max_size: Most connections the pool opens (the LISTEN connection is extra).
        command_timeout: Seconds a single statement may take before it is abandoned.
        connect_timeout: Seconds to wait for a new connection (TCP, TLS and login).
        max_attempts: Attempts for an operation that fails on a lost connection or a
            restarting server (with exponential backoff) before `BackendConnectionError`.
        namespace: Which records the stores of this spec see (stores built from specs
            with different namespaces share the tables without seeing each other's rows).
        result_ttl: Seconds a job's result is kept.
        progress_ttl: Seconds a job's progress entry is kept after its last change.
        must_exist: Refuse a schema that holds none of the backend's tables (no
            ``schema_migrations`` table) instead of creating it; a schema that has them is
            still upgraded to the current migrations. The command line's commands on
            existing data (``inspect``, ``dlq``, ``job``, ``schedule``, ``workflow show``,
            ``dashboard``) set it, so that a mistyped schema fails instead of showing a
            new, empty queue.

    Example:
        options = parse_options("postgres", "default", {"visibility_timeout": "60"},
                                PostgresOptions)
    """

    schema: str = DEFAULT_SCHEMA
    table: str = "tasks"
    visibility_timeout: float = 30.0
    poll_interval: float = 5.0
    idempotency_ttl: float = 86400.0
    pool_min_size: int = 1
    pool_max_size: int = 2
    command_timeout: float = 60.0
    connect_timeout: float = 10.0
    max_attempts: int = 5
    namespace: str = "default"
    result_ttl: float = 3600.0
    progress_ttl: float = 86400.0
    must_exist: bool = False

    def __post_init__(self) -> None:
        _check(self)
        if not self.namespace:
            msg = "PostgreSQL backend namespace='' is empty. Use e.g. 'default'."
            raise TaskConfigurationError(msg, details={"option": "namespace"})
        _positive("result_ttl", self.result_ttl)
        _positive("progress_ttl", self.progress_ttl)

    @classmethod
    def from_spec(cls, spec: TaskBackendSpec) -> PostgresOptions:
        """Read `spec.options` with `parse_options` (unknown keys, bad values rejected).

        Raises:
            TaskConfigurationError: An option is unknown or has a wrong value.
        """
        return parse_options(BACKEND_TYPE, spec.name, spec.options, cls)


# The fields of PostgresOptions that only the stores read.
_STORE_ONLY = frozenset({"namespace", "result_ttl", "progress_ttl"})


@dataclass(frozen=True, slots=True)
class PostgresTaskConfig:
    """What a `PostgresTaskQueue` runs with: the DSN, the queue name and the options.

    Attributes:
        dsn: PostgreSQL DSN (``postgresql://user:pass@host:5432/db``); None uses the
            libpq environment variables (``PGHOST``...). Never logged unmasked.
        table: See `PostgresOptions`; so are the other fields but `dsn` and `queue_name`.
        queue_name: Queue served by a `PostgresTaskQueue` built from this config.

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
    must_exist: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "dsn", normalize_dsn(_unwrap_secret(self.dsn)))
        if not self.queue_name:
            msg = f"PostgreSQL backend queue_name={self.queue_name!r} is empty. Name the queue."
            raise TaskConfigurationError(msg)
        _check(self)

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
    def from_options(
        cls, dsn: str | None, queue_name: str, options: PostgresOptions
    ) -> PostgresTaskConfig:
        """Build the queue's settings from a DSN, a queue name and parsed options."""
        fields = {
            f.name: getattr(options, f.name)
            for f in dataclasses.fields(PostgresOptions)
            if f.name not in _STORE_ONLY
        }
        return cls(dsn=dsn, queue_name=queue_name, **fields)

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, source: str = "PostgresTaskQueue"
    ) -> PostgresTaskConfig:
        """Build a config from a dict of its fields (e.g. YAML), read with `parse_options`.

        Args:
            data: Keys named like the fields; missing keys take the defaults.
            source: Name used in error messages.

        Raises:
            TaskConfigurationError: A key is unknown or a value has the wrong type.
        """
        options = dict(data)
        dsn = _unwrap_secret(options.pop("dsn", None))
        if dsn is not None and not isinstance(dsn, str):
            msg = f"{source} dsn is a {type(dsn).__name__}, not a string. Pass the DSN text."
            raise TaskConfigurationError(msg)
        queue_name = options.pop("queue_name", None)
        for name in _STORE_ONLY:
            if name in options:
                msg = (
                    f"{source} got the store option {name!r}. A queue does not use it; "
                    "set it on the backend spec's options instead."
                )
                raise TaskConfigurationError(msg)
        parsed = parse_options(BACKEND_TYPE, source, options, PostgresOptions)
        return cls.from_options(dsn, str(queue_name or "tasks"), parsed)

    @classmethod
    def from_spec(cls, spec: TaskBackendSpec) -> PostgresTaskConfig:
        """Build a config from a backend spec: its url, queue_name and options.

        Raises:
            TaskConfigurationError: An option is unknown or has a wrong value.
        """
        return cls.from_options(spec.url, spec.queue_name, PostgresOptions.from_spec(spec))
