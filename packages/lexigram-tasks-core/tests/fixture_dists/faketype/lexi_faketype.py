"""A third-party backend for the tests: type ``faketype``, URL scheme ``fake://``.

It describes itself the way every backend does (``url_schemes``, ``url_field``,
``options_type``) and keeps its jobs in the core's in-memory queue. It also offers a
shared rate limiter whose bucket names it records, so a test can check that every
composition root asks for the same bucket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lexigram.contracts.tasks import TaskBackendSpec, parse_options
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.concurrency import GlobalRateLimiter

BUCKETS: list[str] = []
"""Names of the rate-limit buckets asked for in this process."""

SPECS: list[TaskBackendSpec] = []
"""Every spec `create_queue` received in this process."""


@dataclass(frozen=True, slots=True)
class FakeOptions:
    """The options a ``faketype`` backend accepts."""

    visibility_timeout: float = 30.0


class FakeBackend:
    """The object the ``faketype`` entry point names."""

    url_schemes = ("fake",)
    url_field = None
    options_type = FakeOptions

    def create_queue(self, spec: TaskBackendSpec, /) -> MemoryTaskQueue:
        """Build an in-memory queue for `spec`."""
        options = parse_options("faketype", spec.name, spec.options, FakeOptions)
        SPECS.append(spec)
        return MemoryTaskQueue(
            queue_name=spec.queue_name, visibility_timeout=options.visibility_timeout
        )

    def create_rate_limiter(
        self, spec: TaskBackendSpec, /, *, name: str, rate: int, per: float, burst: int | None
    ) -> Any:
        """A process-local limiter; records the bucket name."""
        BUCKETS.append(name)
        return GlobalRateLimiter(rate=rate, per=per, burst=burst)


backend = FakeBackend()
