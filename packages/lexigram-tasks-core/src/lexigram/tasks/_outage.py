"""How a worker's background loops report a backend they cannot reach.

When the broker restarts, every loop that talks to it fails together and keeps failing
until it is back: taking jobs, following cancellations, the heartbeat and its lease
extensions, the worker's registration. Each loop retries on its own. Logging every
failed attempt with its traceback buried the one fact that mattered under hundreds of
lines, so each loop keeps an `OutageLog`: one warning when its outage begins (what
failed and why), one line when it works again (after how long), and the attempts in
between at DEBUG. A failure that is not a lost connection (a bug, a misconfiguration)
is not an outage: it is logged with its traceback every time.
"""

from __future__ import annotations

import logging
import time
from typing import Any

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
"""Failures that mean "the backend cannot be reached now" (`BackendConnectionError` is a
`ConnectionError`; so are the socket errors a backend may let through)."""

NEW_OUTAGE_AFTER = 60.0
"""Seconds without a failure after which the next failure starts a new outage, for a loop
that cannot tell when it works again (a subscription that delivers nothing)."""


def describe_failure(exc: BaseException) -> str:
    """``"<ExceptionType>: <first line of its message>"``, for a one-line log record."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class OutageLog:
    """The log of one background loop's outages: a line when one begins and one when it ends.

    Args:
        logger: Where the lines go.
        subject: Who retries, e.g. ``"Worker worker-1"``.
        activity: What it could not do, as a verb phrase: ``"take jobs from the queue"``
            gives "Worker worker-1 could not take jobs from the queue (...)" and "Worker
            worker-1 can take jobs from the queue again after 6.1 s".
    """

    __slots__ = ("_failures", "_last_failure", "_since", "activity", "logger", "subject")

    def __init__(
        self, logger: logging.Logger | logging.LoggerAdapter[Any], subject: str, activity: str
    ) -> None:
        self.logger = logger
        self.subject = subject
        self.activity = activity
        self._since: float | None = None  # monotonic time the current outage began
        self._last_failure = 0.0
        self._failures = 0

    @property
    def in_outage(self) -> bool:
        """True between an outage's first failure and the success that ends it."""
        return self._since is not None

    def failed(self, exc: BaseException, retry_in: float | None = None) -> None:
        """Record a failed attempt; `retry_in` is the pause before the next one, if known."""
        then = f"; retrying in {retry_in:.1f} s" if retry_in is not None else ""
        if not isinstance(exc, CONNECTION_ERRORS):
            self.logger.error("%s could not %s%s.", self.subject, self.activity, then, exc_info=exc)
            return
        now = time.monotonic()
        if self._since is not None and now - self._last_failure > NEW_OUTAGE_AFTER:
            self._since = None  # it worked in between; this failure is a new outage
        self._last_failure = now
        if self._since is None:
            self._since = now
            self._failures = 1
            self.logger.warning(
                "%s could not %s (%s); retrying with backoff until it works again "
                "(further failures are logged at DEBUG).",
                self.subject,
                self.activity,
                describe_failure(exc),
            )
            return
        self._failures += 1
        self.logger.debug(
            "%s still could not %s (%s)%s.",
            self.subject,
            self.activity,
            describe_failure(exc),
            then,
        )

    def succeeded(self) -> None:
        """Record a successful attempt: ends the outage under way, if any, with one line."""
        since = self._since
        if since is None:
            return
        self._since = None
        self.logger.warning(
            "%s can %s again after %.1f s (%d failed attempt%s).",
            self.subject,
            self.activity,
            time.monotonic() - since,
            self._failures,
            "" if self._failures == 1 else "s",
        )
