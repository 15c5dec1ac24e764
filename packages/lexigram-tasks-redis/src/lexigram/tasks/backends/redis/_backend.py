"""`RedisBackend`: the object the ``redis`` entry point names.

It describes itself (URL schemes, legacy URL field, options type) so that the core
needs no knowledge of Redis, and builds the queue and every store from a
`TaskBackendSpec`, sharing one connection pool per URL and connection options, so
``type: redis`` puts the whole stack on Redis.
"""

from __future__ import annotations

from typing import Any

from lexigram.contracts.tasks import TaskBackendSpec
from lexigram.tasks.backends.redis._connection import DEFAULT_URL, URL_SCHEMES, RedisConnector
from lexigram.tasks.backends.redis._kv import RedisCacheBackend, RedisIdempotencyStore
from lexigram.tasks.backends.redis._locks import RedisLockManager, RedisRateLimiter
from lexigram.tasks.backends.redis._options import RedisOptions
from lexigram.tasks.backends.redis._progress import RedisProgressTracker
from lexigram.tasks.backends.redis._queue import RedisTaskQueue
from lexigram.tasks.backends.redis._schedules import RedisSchedulerStore
from lexigram.tasks.backends.redis._stores import (
    RedisDLQBackend,
    RedisProgressStore,
    RedisResultStore,
    RedisWorkflowStateStore,
)


class RedisBackend:
    """Builds `RedisTaskQueue` and the Redis stores from a `TaskBackendSpec`.

    The options ``spec.options`` may carry are the fields of `RedisOptions`
    (`options_type`). The URL is ``spec.url`` (default ``redis://localhost:6379``).

    Attributes:
        url_schemes: URL schemes this backend serves (``--backend redis://...``).
        url_field: The older config field that holds the URL when ``url`` is not set.
        options_type: The dataclass of accepted options, with their defaults.
        first_answer_options: The options ``--connect-timeout`` sets: the connect
            timeout, and the command deadline that catches a server that accepts
            connections and never replies.
    """

    url_schemes: tuple[str, ...] = URL_SCHEMES
    url_field: str | None = "redis_url"
    options_type: type[RedisOptions] = RedisOptions
    first_answer_options: tuple[str, ...] = ("socket_connect_timeout", "command_timeout")

    def __init__(self) -> None:
        self._connectors: dict[tuple[Any, ...], RedisConnector] = {}

    def __repr__(self) -> str:
        return f"RedisBackend(pools={len(self._connectors)})"

    def connector(self, spec: TaskBackendSpec) -> RedisConnector:
        """Return the shared connector for the spec's URL and connection options."""
        return self._connector(spec, RedisOptions.from_spec(spec))

    def _connector(self, spec: TaskBackendSpec, options: RedisOptions) -> RedisConnector:
        url = spec.url or DEFAULT_URL
        key = (url, options.connection_key())
        found = self._connectors.get(key)
        if found is None:
            found = RedisConnector(
                url,
                max_connections=options.max_connections,
                socket_timeout=options.socket_timeout,
                socket_connect_timeout=options.socket_connect_timeout,
                command_timeout=options.command_timeout,
                retry_timeout=options.retry_timeout,
                client_name=options.client_name,
            )
            self._connectors[key] = found
        return found

    def _parts(self, spec: TaskBackendSpec) -> tuple[RedisOptions, str, RedisConnector]:
        options = RedisOptions.from_spec(spec)
        return options, options.key_prefix, self._connector(spec, options)

    def create_queue(self, spec: TaskBackendSpec, /) -> RedisTaskQueue:
        """Build a `RedisTaskQueue` for `spec` (lazy: nothing connects until first use).

        Raises:
            TaskConfigurationError: An option is unknown or has a wrong value.
        """
        options, prefix, connector = self._parts(spec)
        return RedisTaskQueue(
            queue_name=spec.queue_name,
            key_prefix=prefix,
            connector=connector,
            visibility_timeout=options.visibility_timeout,
            idempotency_ttl=options.idempotency_ttl,
            max_size=options.max_size,
            wait_for_replicas=options.wait_for_replicas,
            replication_timeout=options.replication_timeout,
        )

    def create_result_store(self, spec: TaskBackendSpec, /) -> RedisResultStore:
        """Build a `RedisResultStore` (option `result_ttl`, default 3600 s)."""
        options, prefix, connector = self._parts(spec)
        return RedisResultStore(key_prefix=prefix, ttl=options.result_ttl, connector=connector)

    def create_progress_store(self, spec: TaskBackendSpec, /) -> RedisProgressStore:
        """Build a `RedisProgressStore` (option `progress_ttl`, default 86400 s)."""
        options, prefix, connector = self._parts(spec)
        return RedisProgressStore(key_prefix=prefix, ttl=options.progress_ttl, connector=connector)

    def create_progress_tracker(self, spec: TaskBackendSpec, /) -> RedisProgressTracker:
        """Build a `RedisProgressTracker` (live progress over pub/sub)."""
        options, prefix, connector = self._parts(spec)
        return RedisProgressTracker(
            key_prefix=prefix, ttl=options.progress_ttl, connector=connector
        )

    def create_dlq_backend(self, spec: TaskBackendSpec, /) -> RedisDLQBackend:
        """Build a `RedisDLQBackend` (option `dlq_max_entries`, default 100000)."""
        options, prefix, connector = self._parts(spec)
        return RedisDLQBackend(
            key_prefix=prefix, max_entries=options.dlq_max_entries, connector=connector
        )

    def create_scheduler_store(self, spec: TaskBackendSpec, /) -> RedisSchedulerStore:
        """Build a `RedisSchedulerStore`."""
        _, prefix, connector = self._parts(spec)
        return RedisSchedulerStore(key_prefix=prefix, connector=connector)

    def create_workflow_state_store(self, spec: TaskBackendSpec, /) -> RedisWorkflowStateStore:
        """Build a `RedisWorkflowStateStore`."""
        _, prefix, connector = self._parts(spec)
        return RedisWorkflowStateStore(key_prefix=prefix, connector=connector)

    def create_lock_manager(self, spec: TaskBackendSpec, /) -> RedisLockManager:
        """Build a `RedisLockManager`."""
        _, prefix, connector = self._parts(spec)
        return RedisLockManager(key_prefix=prefix, connector=connector)

    def create_cache_backend(self, spec: TaskBackendSpec, /) -> RedisCacheBackend:
        """Build a `RedisCacheBackend`."""
        _, prefix, connector = self._parts(spec)
        return RedisCacheBackend(key_prefix=prefix, connector=connector)

    def create_idempotency_store(self, spec: TaskBackendSpec, /) -> RedisIdempotencyStore:
        """Build a `RedisIdempotencyStore`."""
        _, prefix, connector = self._parts(spec)
        return RedisIdempotencyStore(key_prefix=prefix, connector=connector)

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
        _, prefix, connector = self._parts(spec)
        return RedisRateLimiter(
            connector, name=name, rate=rate, per=per, burst=burst, key_prefix=prefix
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
