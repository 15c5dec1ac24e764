"""Key names: every key of one queue shares the hash tag ``{<prefix>:<queue>}``.

Redis Cluster places a key by the part between the first ``{`` and the next ``}``, so
all keys of a queue land in one slot and every Lua script may touch all of them. The
layout is documented in docs/backends/redis.md.
"""

from __future__ import annotations

from typing import NamedTuple

from lexigram.contracts.tasks import TaskConfigurationError

_FORBIDDEN = frozenset("{}")
_GLOB_SPECIAL = frozenset("*?[]\\")


def check_name(kind: str, value: str, *, option: str | None = None) -> str:
    """Return `value` if it can be part of a hash tag, else raise.

    Raises:
        TaskConfigurationError: The value is empty or contains a brace; naming `option`
            (``details["option"]``) when the value is a backend option's.
    """
    if not value or _FORBIDDEN & set(value):
        msg = (
            f"Redis {kind} {value!r} is empty or contains '{{' or '}}', which would break the "
            f"key hash tag. Use a {kind} made of letters, digits and '-', '_', '.', ':'."
        )
        raise TaskConfigurationError(msg, details={"option": option} if option else {})
    return value


def check_key_prefix(value: str) -> str:
    """Return the ``key_prefix`` option's `value` if it can open a hash tag, else raise."""
    return check_name("key prefix", value, option="key_prefix")


def glob_escape(text: str) -> str:
    """Escape `text` for a SCAN MATCH pattern (glob characters get a backslash)."""
    return "".join("\\" + ch if ch in _GLOB_SPECIAL else ch for ch in text)


class QueueKeys(NamedTuple):
    """The keys of one queue (see docs/backends/redis.md, "Key layout")."""

    tag: str
    jobs: str
    ready: str
    delayed: str
    inflight: str
    score: str
    deliveries: str
    retrying: str
    idem: str
    seq: str
    notify: str

    @classmethod
    def build(cls, prefix: str, queue_name: str) -> QueueKeys:
        """Build the keys of `queue_name` under `prefix`."""
        tag = f"{{{check_key_prefix(prefix)}:{check_name('queue name', queue_name)}}}"
        return cls(
            tag=tag,
            jobs=f"{tag}:jobs",
            ready=f"{tag}:ready",
            delayed=f"{tag}:delayed",
            inflight=f"{tag}:inflight",
            score=f"{tag}:score",
            deliveries=f"{tag}:deliveries",
            retrying=f"{tag}:retrying",
            idem=f"{tag}:idem",
            seq=f"{tag}:seq",
            notify=f"{tag}:notify",
        )

    @property
    def fixed(self) -> tuple[str, ...]:
        """The fixed keys, in the order every queue script receives them as KEYS."""
        return (
            self.jobs,
            self.ready,
            self.delayed,
            self.inflight,
            self.score,
            self.deliveries,
            self.retrying,
            self.idem,
            self.seq,
            self.notify,
        )

    @property
    def cancel_channel(self) -> str:
        """Pub/sub channel announcing the ids of the queue's jobs cancelled in flight."""
        return f"{self.tag}:cancel"

    def idempotency_key(self, key: str) -> str:
        """Name of the key that holds idempotency key `key` (value: the first job id)."""
        return f"{self.idem}:{key}"

    @property
    def idempotency_pattern(self) -> str:
        """SCAN MATCH pattern for every idempotency key of the queue."""
        return f"{glob_escape(self.idem)}:*"


class StoreKeys(NamedTuple):
    """Key builder for one store namespace ``{<prefix>:<store>}``."""

    tag: str

    @classmethod
    def build(cls, prefix: str, store: str) -> StoreKeys:
        """Build the namespace of `store` under `prefix`."""
        return cls(tag=f"{{{check_key_prefix(prefix)}:{store}}}")

    def key(self, *parts: str) -> str:
        """Join `parts` under the namespace tag."""
        return ":".join((self.tag, *parts))

    def pattern(self, *parts: str) -> str:
        """SCAN MATCH pattern for keys starting with ``key(*parts)``."""
        return glob_escape(self.key(*parts)) + "*"
