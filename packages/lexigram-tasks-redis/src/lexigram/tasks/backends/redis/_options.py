"""`RedisOptions`: every option a Redis backend spec may carry, with its default.

`RedisBackend` reads ``TaskBackendSpec.options`` into this dataclass with the contracts'
`parse_options`, which converts strings from YAML or the environment, rejects unknown
keys with the nearest valid name, and names the backend, option and fix in its errors.
`RedisTaskQueue`, which also takes them as keyword arguments, checks their ranges here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lexigram.contracts.tasks import (
    TaskBackendSpec,
    TaskConfigurationError,
    parse_options,
    require_number,
)

BACKEND_TYPE = "redis"


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """Options of a ``type: redis`` backend (``TaskBackendSpec.options``).

    Attributes:
        visibility_timeout: Lease length in seconds; a job not acked, nacked or
            extended within it is delivered again.
        idempotency_ttl: Seconds an idempotency key stays held after its job was enqueued.
        max_size: Most jobs that may wait at once (None: no limit).
        key_prefix: First part of every key's hash tag.
        max_connections: Connection pool limit (None: unbounded).
        socket_timeout: Read timeout of one socket read in seconds (None: none; the
            command deadline below still applies).
        socket_connect_timeout: Seconds to open a connection (TCP and TLS).
        command_timeout: Seconds a command may take before it counts as unanswered (a
            server that accepts connections and never replies fails within it).
        retry_timeout: Seconds transient failures (a restart, a failover) are retried
            once the server has been reached; a first contact that fails is reported
            at once.
        client_name: CLIENT SETNAME for every connection (shows in CLIENT LIST).
        result_ttl: Seconds a job result is kept.
        progress_ttl: Seconds progress records are kept.
        dlq_max_entries: Most dead-letter records kept (the oldest go first).
        wait_for_replicas: Enqueue answers only once this many replicas hold the job
            (Redis ``WAIT``; 0: do not wait). See docs/backends/redis.md, "Sentinel".
        replication_timeout: Seconds an enqueue waits for those replicas before it
            raises.
    """

    visibility_timeout: float = 30.0
    idempotency_ttl: float = 86400.0
    max_size: int | None = None
    key_prefix: str = "lexigram"
    max_connections: int | None = None
    socket_timeout: float | None = None
    socket_connect_timeout: float = 5.0
    command_timeout: float = 10.0
    retry_timeout: float = 15.0
    client_name: str | None = None
    result_ttl: float = 3600.0
    progress_ttl: float = 86400.0
    dlq_max_entries: int = 100_000
    wait_for_replicas: int = 0
    replication_timeout: float = 1.0

    @classmethod
    def from_spec(cls, spec: TaskBackendSpec) -> RedisOptions:
        """Read and check `spec.options`.

        Raises:
            TaskConfigurationError: An unknown option or a value of the wrong type.
        """
        return parse_options(BACKEND_TYPE, spec.name, spec.options, cls)

    def connection_key(self) -> tuple[object, ...]:
        """The options that shape a connection pool (specs equal in these share one)."""
        return (
            self.max_connections,
            self.socket_timeout,
            self.socket_connect_timeout,
            self.command_timeout,
            self.retry_timeout,
            self.client_name,
        )


def positive_seconds(name: str, value: float) -> float:
    """`value` as a float, when it is a positive finite number of seconds."""
    require_number("RedisTaskQueue", name, value)
    if not value > 0 or not math.isfinite(value):
        msg = f"RedisTaskQueue {name}={value!r} is not a positive number of seconds. Use e.g. 30.0."
        raise TaskConfigurationError(msg, details={"option": name})
    return float(value)


def check_queue_limits(idempotency_ttl: float, max_size: int | None) -> None:
    """Refuse the idempotency TTL and the size limit `RedisTaskQueue` was given, if out of range.

    Raises:
        TaskConfigurationError: A negative `idempotency_ttl`, or a `max_size` below 1.
    """
    require_number("RedisTaskQueue", "idempotency_ttl", idempotency_ttl)
    if max_size is not None:
        require_number("RedisTaskQueue", "max_size", max_size, whole=True)
    if not idempotency_ttl >= 0:
        msg = (
            f"RedisTaskQueue idempotency_ttl={idempotency_ttl!r} is negative. "
            "Use 0 or more seconds."
        )
        raise TaskConfigurationError(msg, details={"option": "idempotency_ttl"})
    if max_size is not None and max_size < 1:
        msg = f"RedisTaskQueue max_size={max_size!r} is below 1. Use None for no limit."
        raise TaskConfigurationError(msg, details={"option": "max_size"})
