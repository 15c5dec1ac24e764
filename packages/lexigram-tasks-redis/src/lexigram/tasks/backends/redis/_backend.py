"""`RedisBackend`: the object the ``redis`` entry point names (design §2).

It builds the queue and every store from a `TaskBackendSpec`, sharing one connection
pool per URL and connection options, so ``type: redis`` puts the whole stack on Redis.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lexigram.contracts.tasks import TaskBackendSpec, TaskConfigurationError
from lexigram.tasks.backends.redis._connection import DEFAULT_URL, RedisConnector
from lexigram.tasks.backends.redis._kv import RedisCacheBackend, RedisIdempotencyStore
from lexigram.tasks.backends.redis._locks import RedisLockManager, RedisRateLimiter
from lexigram.tasks.backends.redis._progress import RedisProgressTracker
from lexigram.tasks.backends.redis._queue import RedisTaskQueue
from lexigram.tasks.backends.redis._stores import (
    RedisDLQBackend,
    RedisProgressStore,
    RedisResultStore,
    RedisSchedulerStore,
    RedisWorkflowStateStore,
)

_FLOAT_OPTIONS = {
    "visibility_timeout": 30.0,
    "idempotency_ttl": 86400.0,
    "socket_timeout": None,
    "socket_connect_timeout": 5.0,
    "retry_timeout": 15.0,
    "result_ttl": 3600.0,
    "progress_ttl": 86400.0,
}
_INT_OPTIONS = ("max_size", "max_connections", "dlq_max_entries")
_STR_OPTIONS = ("key_prefix", "client_name")
_CONNECTION_OPTIONS = (
    "max_connections",
    "socket_timeout",
    "socket_connect_timeout",
    "retry_timeout",
    "client_name",
)
OPTIONS = frozenset((*_FLOAT_OPTIONS, *_INT_OPTIONS, *_STR_OPTIONS))
"""Every option a Redis backend spec may carry in `TaskBackendSpec.options`."""


def _bad(spec: TaskBackendSpec, name: str, value: object, what: str) -> TaskConfigurationError:
    msg = (
        f"Redis backend {spec.name!r} option {name}={value!r} is not {what}. "
        f"Set options.{name} to {what}, or leave it out for the default."
    )
    return TaskConfigurationError(msg)


def _options(spec: TaskBackendSpec) -> dict[str, Any]:
    """Validate and convert `spec.options`."""
    unknown = sorted(str(name) for name in spec.options if name not in OPTIONS)
    if unknown:
        msg = (
            f"Redis backend {spec.name!r} got unknown option(s) {unknown}. "
            f"Known options: {sorted(OPTIONS)}."
        )
        raise TaskConfigurationError(msg)
    return {
        name: _convert(spec, name, value)
        for name, value in spec.options.items()
        if value is not None
    }


def _convert(spec: TaskBackendSpec, name: str, value: object) -> Any:
    if name in _FLOAT_OPTIONS:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise _bad(spec, name, value, "a number of seconds")
        try:
            return float(value)
        except ValueError:
            raise _bad(spec, name, value, "a number of seconds") from None
    if name in _INT_OPTIONS:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise _bad(spec, name, value, "a whole number")
        try:
            return int(value)
        except ValueError:
            raise _bad(spec, name, value, "a whole number") from None
    if not isinstance(value, str):
        raise _bad(spec, name, value, "a string")
    return value


class RedisBackend:
    """Builds `RedisTaskQueue` and the Redis stores from a `TaskBackendSpec`.

    Options (``spec.options``): `visibility_timeout`, `idempotency_ttl`, `max_size`,
    `key_prefix`, `max_connections`, `socket_timeout`, `socket_connect_timeout`,
    `retry_timeout`, `client_name`, `result_ttl`, `progress_ttl`, `dlq_max_entries`.
    The URL is ``spec.url`` (default ``redis://localhost:6379``).
    """

    def __init__(self) -> None:
        self._connectors: dict[tuple[Any, ...], RedisConnector] = {}

    def __repr__(self) -> str:
        return f"RedisBackend(pools={len(self._connectors)})"

    def connector(self, spec: TaskBackendSpec) -> RedisConnector:
        """Return the shared connector for the spec's URL and connection options."""
        options = _options(spec)
        url = spec.url or DEFAULT_URL
        conn = {name: options[name] for name in _CONNECTION_OPTIONS if name in options}
        key = (url, tuple(sorted(conn.items())))
        found = self._connectors.get(key)
        if found is None:
            found = RedisConnector(url, **conn)
            self._connectors[key] = found
        return found

    @staticmethod
    def _prefix(spec: TaskBackendSpec) -> str:
        prefix = spec.options.get("key_prefix", "lexigram")
        return str(prefix) if prefix is not None else "lexigram"

    def create_queue(self, spec: TaskBackendSpec, /) -> RedisTaskQueue:
        """Build a `RedisTaskQueue` for `spec` (lazy: nothing connects until first use).

        Raises:
            TaskConfigurationError: An option is unknown or has a wrong value.
        """
        options = _options(spec)
        queue_options: Mapping[str, Any] = {
            name: options[name]
            for name in ("visibility_timeout", "idempotency_ttl", "max_size")
            if name in options
        }
        return RedisTaskQueue(
            queue_name=spec.queue_name,
            key_prefix=self._prefix(spec),
            connector=self.connector(spec),
            **queue_options,
        )

    def create_result_store(self, spec: TaskBackendSpec, /) -> RedisResultStore:
        """Build a `RedisResultStore` (option `result_ttl`, default 3600 s)."""
        ttl = _options(spec).get("result_ttl", 3600.0)
        return RedisResultStore(
            key_prefix=self._prefix(spec), ttl=ttl, connector=self.connector(spec)
        )

    def create_progress_store(self, spec: TaskBackendSpec, /) -> RedisProgressStore:
        """Build a `RedisProgressStore` (option `progress_ttl`, default 86400 s)."""
        ttl = _options(spec).get("progress_ttl", 86400.0)
        return RedisProgressStore(
            key_prefix=self._prefix(spec), ttl=ttl, connector=self.connector(spec)
        )

    def create_progress_tracker(self, spec: TaskBackendSpec, /) -> RedisProgressTracker:
        """Build a `RedisProgressTracker` (live progress over pub/sub)."""
        ttl = _options(spec).get("progress_ttl", 86400.0)
        return RedisProgressTracker(
            key_prefix=self._prefix(spec), ttl=ttl, connector=self.connector(spec)
        )

    def create_dlq_backend(self, spec: TaskBackendSpec, /) -> RedisDLQBackend:
        """Build a `RedisDLQBackend` (option `dlq_max_entries`, default 100000)."""
        cap = _options(spec).get("dlq_max_entries", 100_000)
        return RedisDLQBackend(
            key_prefix=self._prefix(spec), max_entries=cap, connector=self.connector(spec)
        )

    def create_scheduler_store(self, spec: TaskBackendSpec, /) -> RedisSchedulerStore:
        """Build a `RedisSchedulerStore`."""
        return RedisSchedulerStore(key_prefix=self._prefix(spec), connector=self.connector(spec))

    def create_workflow_state_store(self, spec: TaskBackendSpec, /) -> RedisWorkflowStateStore:
        """Build a `RedisWorkflowStateStore`."""
        return RedisWorkflowStateStore(
            key_prefix=self._prefix(spec), connector=self.connector(spec)
        )

    def create_lock_manager(self, spec: TaskBackendSpec, /) -> RedisLockManager:
        """Build a `RedisLockManager`."""
        return RedisLockManager(key_prefix=self._prefix(spec), connector=self.connector(spec))

    def create_cache_backend(self, spec: TaskBackendSpec, /) -> RedisCacheBackend:
        """Build a `RedisCacheBackend`."""
        return RedisCacheBackend(key_prefix=self._prefix(spec), connector=self.connector(spec))

    def create_idempotency_store(self, spec: TaskBackendSpec, /) -> RedisIdempotencyStore:
        """Build a `RedisIdempotencyStore`."""
        return RedisIdempotencyStore(key_prefix=self._prefix(spec), connector=self.connector(spec))

    def create_rate_limiter(
        self,
        spec: TaskBackendSpec,
        /,
        *,
        name: str,
        rate: float,
        per: float = 1.0,
        burst: float | None = None,
    ) -> RedisRateLimiter:
        """Build a `RedisRateLimiter` shared by every process using the same `name`.

        Args:
            spec: The backend spec (URL and key prefix).
            name: Limiter name, e.g. ``"global"`` or ``"queue:emails"``.
            rate: Tokens per `per` seconds.
            per: Window length in seconds.
            burst: Bucket capacity (default: `rate`).
        """
        return RedisRateLimiter(
            self.connector(spec),
            name=name,
            rate=rate,
            per=per,
            burst=burst,
            key_prefix=self._prefix(spec),
        )

    async def close(self) -> None:
        """Close every connection pool this backend object opened."""
        for connector in self._connectors.values():
            await connector.close()


backend = RedisBackend()
"""The object the ``redis`` entry point in group ``lexigram.tasks.backends`` names."""


def create_queue(spec: TaskBackendSpec, /) -> RedisTaskQueue:
    """Build a `RedisTaskQueue` for `spec` (the module-level form of `backend.create_queue`)."""
    return backend.create_queue(spec)
