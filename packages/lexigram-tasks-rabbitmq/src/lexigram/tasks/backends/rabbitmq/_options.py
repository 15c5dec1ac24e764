"""Pure helpers of the RabbitMQ backend: options, URLs, names, priorities and delays.

Nothing here touches the network, so all of it is unit-tested without a broker.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, get_args
from urllib.parse import unquote, urlsplit, urlunsplit

from lexigram.contracts.tasks import (
    PRIORITY_MAX,
    CacheBackendProtocol,
    Priority,
    TaskConfigurationError,
    mask_url,
    parse_options,
)

DEFAULT_AMQP_URL = "amqp://localhost:5672/"
"""The URL used when none is given."""

QueueType = Literal["classic", "quorum"]
QueueMode = Literal["lazy", "default", "none"]
DelayMode = Literal["ttl", "auto", "plugin"]

BUCKET_MIN_EXP = 5
"""Smallest delay bucket is 2**5 = 32 ms; a shorter remainder is held by the consumer."""
BUCKET_MAX_EXP = 31
"""Largest delay bucket is 2**31 ms (about 24.9 days); longer delays take several hops."""
QUORUM_HIGH_PRIORITY = 5
"""RabbitMQ 3.13+ quorum queues treat message priority 5 and above as "high"."""
DAY = 86400.0
_MAX_QUEUE_NAME = 200  # AMQP allows 255 bytes; keep room for ".delay.2147483648ms"


class AMQPTarget(NamedTuple):
    """The parts of an AMQP URL the backend needs (never holds the password).

    Attributes:
        scheme: ``amqp`` or ``amqps``.
        host: Broker host name.
        port: Broker port (5672 / 5671 by default).
        vhost: Virtual host (``/`` when the URL has no path).
    """

    scheme: str
    host: str
    port: int
    vhost: str


def split_amqp_url(url: str) -> list[str]:
    """One URL per broker node of a cluster URL, in the order written.

    A cluster is written as one URL whose host part lists the nodes separated by
    commas: ``amqp://user:pass@rabbit1:5672,rabbit2:5672,rabbit3/vhost?heartbeat=30``.
    Every node gets the same credentials, virtual host and query (TLS options
    included); a node without a port gets the scheme's default. A URL naming one
    host comes back as it is.

    Raises:
        TaskConfigurationError: A node of the list is empty (``h1,,h2`` or a trailing
            comma).
    """
    parts = urlsplit(url)
    if "," not in parts.netloc:
        return [url]
    userinfo, at, hosts = parts.netloc.rpartition("@")
    nodes = hosts.split(",")
    if any(not node.strip() for node in nodes):
        msg = (
            f"AMQP URL {mask_url(url)!r} lists an empty host. Separate the cluster's nodes "
            "with single commas: amqp://user:pass@rabbit1:5672,rabbit2:5672/vhost."
        )
        raise TaskConfigurationError(msg, details={"url": mask_url(url)})
    prefix = f"{userinfo}{at}"
    return [
        urlunsplit((parts.scheme, prefix + node.strip(), parts.path, parts.query, parts.fragment))
        for node in nodes
    ]


def parse_amqp_url(url: str) -> AMQPTarget:
    """Validate an ``amqp://`` / ``amqps://`` URL and return its parts.

    The virtual host is the URL path without its leading slash, percent-decoded, as
    every AMQP client reads it: ``amqp://h/`` and ``amqp://h`` mean ``/``,
    ``amqp://h/%2F`` means ``/`` too, and ``amqp://h/orders`` means ``orders``.
    A cluster URL (``amqp://u:p@h1:5672,h2:5672/vhost``, see `split_amqp_url`) is
    checked node by node; the target is its first node.

    Args:
        url: The connection URL.

    Returns:
        The parsed target.

    Raises:
        TaskConfigurationError: The scheme is not amqp/amqps or the host is missing.
    """
    nodes = split_amqp_url(url)
    targets = [_parse_one(node) for node in nodes]
    return targets[0]


def _parse_one(url: str) -> AMQPTarget:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        msg = f"AMQP URL {mask_url(url)!r} is malformed ({exc}). Use amqp://user:pass@host:5672/vhost."
        raise TaskConfigurationError(msg, details={"url": mask_url(url)}) from None
    scheme = parts.scheme.lower()
    if scheme not in ("amqp", "amqps"):
        msg = (
            f"AMQP URL {mask_url(url)!r} has scheme {parts.scheme!r}. "
            "Use amqp://host:5672/ or amqps://host:5671/ for TLS."
        )
        raise TaskConfigurationError(msg, details={"url": mask_url(url)})
    if not parts.hostname:
        msg = f"AMQP URL {mask_url(url)!r} has no host. Use amqp://user:pass@host:5672/vhost."
        raise TaskConfigurationError(msg, details={"url": mask_url(url)})
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    vhost = unquote(path) or "/"
    default_port = 5671 if scheme == "amqps" else 5672
    return AMQPTarget(scheme=scheme, host=parts.hostname, port=port or default_port, vhost=vhost)


def validate_queue_name(name: str) -> str:
    """Return `name` if RabbitMQ accepts it as a queue name (with our suffixes).

    Raises:
        TaskConfigurationError: Empty, reserved (``amq.``) or too long.
    """
    if not name or name.startswith("amq.") or len(name.encode()) > _MAX_QUEUE_NAME:
        msg = (
            f"Queue name {name!r} cannot be used with RabbitMQ: it must be 1-200 bytes "
            "and must not start with 'amq.' (reserved by the broker). Pick another queue_name."
        )
        raise TaskConfigurationError(msg)
    return name


# -- names -------------------------------------------------------------------------------


def dead_letter_name(queue: str) -> str:
    """Name of the broker-side dead-letter exchange and queue of `queue`."""
    return f"{queue}.dlx"


def delayed_exchange_name(queue: str) -> str:
    """Name of the delayed-message-plugin exchange of `queue`."""
    return f"{queue}.delayed"


def cancel_exchange_name(queue: str) -> str:
    """Name of the fanout exchange announcing the cancelled running jobs of `queue`."""
    return f"{queue}.cancel"


def bucket_queue_name(queue: str, exp: int) -> str:
    """Name of the delay bucket queue holding messages for 2**exp milliseconds."""
    return f"{queue}.delay.{1 << exp}ms"


def family_queues(queue: str) -> list[str]:
    """The queue and every delay bucket it may have (the ones that hold waiting jobs)."""
    return [queue] + [
        bucket_queue_name(queue, exp) for exp in range(BUCKET_MIN_EXP, BUCKET_MAX_EXP + 1)
    ]


def owned_queues(queue: str) -> list[str]:
    """Every queue a `RabbitMQTaskQueue` may declare: `family_queues` and ``<queue>.dlx``."""
    return [*family_queues(queue), dead_letter_name(queue)]


def state_namespace(vhost: str, queue: str) -> str:
    """Key prefix of this queue's job-state records in the state store."""
    return f"lexigram:rabbitmq:{vhost}:{queue}:"


# -- priorities --------------------------------------------------------------------------


def map_priority(priority: int, max_priority: int, queue_type: QueueType = "classic") -> int:
    """Map a job priority (0..255) onto the AMQP priority the queue supports.

    Classic queues support ``0..max_priority``. The mapping keeps order (a higher job
    priority never maps lower) and is one-to-one for small values: priorities up to
    ``max_priority // 2`` map to themselves, larger ones are spread logarithmically
    over the remaining levels, so the named points stay apart (with the default 10
    levels: LOW 0 -> 0, NORMAL 5 -> 5, HIGH 10 -> 6, CRITICAL 20 -> 7, 255 -> 10).
    Quorum queues (RabbitMQ 3.13+) know only "normal" and "high": jobs above
    `Priority.NORMAL` are published as high.

    Args:
        priority: The job's priority, 0..255.
        max_priority: The queue's ``x-max-priority`` (0 disables priorities).
        queue_type: ``classic`` or ``quorum``.

    Returns:
        The AMQP message priority.
    """
    if queue_type == "quorum":
        return QUORUM_HIGH_PRIORITY if priority > Priority.NORMAL else 0
    if max_priority <= 0 or priority <= 0:
        return 0
    if max_priority >= PRIORITY_MAX:
        return min(priority, PRIORITY_MAX)
    linear = max_priority // 2
    if priority <= linear:
        return priority
    if linear == 0:
        return max_priority
    span = max_priority - linear
    ratio = math.log(priority / linear) / math.log(PRIORITY_MAX / linear)
    return min(max_priority, linear + max(1, math.ceil(span * ratio)))


# -- delays ------------------------------------------------------------------------------


def delay_bucket(remaining: float) -> int | None:
    """Pick the delay bucket for a job due in `remaining` seconds.

    The bucket is the largest power of two milliseconds not above the delay, so a job
    never arrives early and each hop at least halves what is left: a delay takes at
    most one hop per bit of its millisecond value (about 10 hops for an hour).

    Returns:
        The bucket exponent (the queue holds 2**exp ms), or None when less than the
        smallest bucket (32 ms) remains: the consumer then holds the job until due.
    """
    millis = math.floor(remaining * 1000.0)
    if millis < (1 << BUCKET_MIN_EXP):
        return None
    return min(millis.bit_length() - 1, BUCKET_MAX_EXP)


# -- options -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RabbitMQOptions:
    """The options of the RabbitMQ backend: the keys of ``TaskBackendSpec.options``.

    The backend reads them with `parse_options`, which converts strings from YAML or
    environment variables and names the nearest option on a typo; this class checks
    the ranges. `RabbitMQTaskQueue` takes an instance (``options=``) or the same names
    as keyword arguments.

    Attributes:
        durable: Durable queues and persistent messages (survive a broker restart).
        queue_type: ``classic`` (priorities) or ``quorum`` (replicated).
        max_priority: ``x-max-priority`` of a classic queue (0 disables priorities).
        queue_version: ``x-queue-version`` of classic queues (2: the v2 storage, whose
            publisher confirms for persistent messages come about twice as fast as v1's
            on RabbitMQ 3.10-3.12; 0 or None sends no argument: the broker's default).
        queue_mode: ``x-queue-mode`` of classic queues. ``lazy`` (the default) writes
            messages to disk as they arrive instead of holding them in memory first: on
            RabbitMQ 3.10/3.11 that takes persistent messages about 1.3x as fast and uses
            less broker memory; 3.12+ works this way always and ignores the argument.
            ``none`` (or None) sends no argument (for queues created without it, or set
            by a policy).
        visibility_timeout: The lease of a delivery, in seconds: a job neither acked nor
            extended for this long is given back to the broker for another consumer.
            The worker heartbeats every third of it.
        idempotency_ttl: How long an idempotency key is held, in seconds.
        broker_idempotency: Without a shared state store, claim idempotency keys on the
            broker (one small self-expiring queue per key), so producers and schedulers
            in separate processes agree on them; False keeps them in this process only.
        delay_mode: ``ttl`` (bucket queues), ``plugin`` (rabbitmq_delayed_message_exchange)
            or ``auto`` (the plugin when the broker has it, else buckets).
        dead_letter_ttl: ``x-message-ttl`` of the broker-side dead-letter queue in seconds
            (0 or None keeps messages until an operator removes them).
        connect_timeout: Seconds to wait for the broker on connect (TCP, TLS and the AMQP
            handshake together).
        reconnect_interval: Seconds between reconnect attempts after a connection loss.
        publish_timeout: Seconds an enqueue waits (including for a reconnect) for a confirm.
        publish_window: Publisher confirms in flight at once in `enqueue_many`.
        state_ttl: Lifetime of a job-state record in seconds (plus the job's delay).
        state_max_entries: Size bound of the in-process state store.
        stores: Another installed backend whose stores (results, progress, DLQ,
            schedules, locks, ...) this backend hands out: a ``redis://`` /
            ``postgresql://`` URL or ``{"type": ..., "url": ..., "options": {...}}``.
        state_store: Where the job-state records live (same forms, or a
            `CacheBackendProtocol` object); defaults to the ``stores`` backend's cache,
            else to an in-process store.
        must_exist: Create nothing on the broker: the queue, its dead-letter queue and
            exchange, delay buckets and the cancellation exchange are looked up with
            passive declares only. A queue that does not exist counts 0 jobs, and an
            enqueue or a consume of it fails naming the queue. The command line's
            read-only commands set it, so a mistyped ``--queue`` leaves nothing behind.
    """

    durable: bool = True
    queue_type: QueueType = "classic"
    max_priority: int = 10
    queue_version: int | None = 2
    queue_mode: QueueMode | None = "lazy"
    visibility_timeout: float = 30.0
    idempotency_ttl: float = DAY
    broker_idempotency: bool = True
    delay_mode: DelayMode = "ttl"
    dead_letter_ttl: float | None = 7 * DAY
    connect_timeout: float = 4.0
    reconnect_interval: float = 1.0
    publish_timeout: float = 30.0
    publish_window: int = 256
    state_ttl: float = 7 * DAY
    state_max_entries: int = 100_000
    stores: object = None
    state_store: object = None
    must_exist: bool = False

    def __post_init__(self) -> None:
        if self.queue_type not in get_args(QueueType):
            _bad("queue_type", self.queue_type, "'classic' or 'quorum'")
        if self.delay_mode not in get_args(DelayMode):
            _bad("delay_mode", self.delay_mode, "'ttl', 'auto' or 'plugin'")
        if not 0 <= self.max_priority <= PRIORITY_MAX:
            _bad("max_priority", self.max_priority, f"an int in 0..{PRIORITY_MAX} (10 is typical)")
        if self.queue_type == "quorum" and not self.durable:
            _bad("durable", self.durable, "true: quorum queues are always durable")
        self._check_storage()
        self._check_numbers()
        for name in ("stores", "state_store"):
            value = getattr(self, name)
            if value is None or isinstance(value, str | Mapping):
                continue
            if name == "state_store" and isinstance(value, CacheBackendProtocol):
                continue
            _bad(name, value, "a redis:// or postgresql:// URL, or {'type': ..., 'url': ...}")

    def _check_storage(self) -> None:
        if self.queue_version not in (None, 0, 1, 2):
            _bad("queue_version", self.queue_version, "1, 2, or 0 for the broker's default")
        if self.queue_mode is not None and self.queue_mode not in get_args(QueueMode):
            _bad("queue_mode", self.queue_mode, "'lazy', 'default' or 'none' (no argument)")

    def _check_numbers(self) -> None:
        for name in (
            "visibility_timeout",
            "idempotency_ttl",
            "connect_timeout",
            "reconnect_interval",
            "publish_timeout",
            "state_ttl",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                _bad(name, value, "a positive number of seconds")
        if self.dead_letter_ttl is not None and not self.dead_letter_ttl >= 0:
            _bad("dead_letter_ttl", self.dead_letter_ttl, "seconds, or 0 to keep dead letters")
        if self.publish_window < 1:
            _bad("publish_window", self.publish_window, "an int of 1 or more")
        if self.state_max_entries < 1:
            _bad("state_max_entries", self.state_max_entries, "an int of 1 or more")

    @property
    def queue_version_argument(self) -> int | None:
        """The ``x-queue-version`` to declare, or None for no argument."""
        return self.queue_version or None

    @property
    def queue_mode_argument(self) -> str | None:
        """The ``x-queue-mode`` to declare, or None for no argument."""
        return None if self.queue_mode in (None, "none") else self.queue_mode

    @property
    def dead_letter_ttl_ms(self) -> int | None:
        """The ``x-message-ttl`` of ``<queue>.dlx`` in ms, or None to keep dead letters."""
        return int(self.dead_letter_ttl * 1000) if self.dead_letter_ttl else None

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, name: str = "rabbitmq") -> RabbitMQOptions:
        """Read `TaskBackendSpec.options` (strings from env/YAML are converted).

        Args:
            options: The spec's options.
            name: The configured backend's name, for messages.

        Raises:
            TaskConfigurationError: An unknown option (naming the nearest one), a value of
                the wrong type, or one out of range.
        """
        return parse_options("rabbitmq", name, options, cls)


def _bad(key: str, value: object, expected: str) -> Any:
    msg = f"RabbitMQ backend option {key}={value!r} is invalid. Use {expected}."
    raise TaskConfigurationError(msg, details={"backend": "rabbitmq", "option": key})
