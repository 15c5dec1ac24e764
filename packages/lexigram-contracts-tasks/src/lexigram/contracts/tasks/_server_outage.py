"""`ServerOutage`: a backend's lost server as two log lines, when it went and when it is back.

Every backend retries a server that stopped answering (a pool, a connector, a robust
connection); operators read the outage the same way whichever it is: one WARNING
``<server> unreachable <detail>.`` at the first failed attempt and one ``<server>
reachable again after N s.`` at the first success after it. The attempts in between are
the backend's to log at DEBUG, if at all.
"""

from __future__ import annotations

import logging
import time


class ServerOutage:
    """The outage state of one connection to a server, and its two log lines.

    Args:
        logger: The backend's logger.
        server: How the lines name the server, e.g. ``"Redis at redis://h:6379/0"`` (its
            URL masked). A connection that moves between nodes may change it.
    """

    __slots__ = ("_logger", "_since", "server")

    def __init__(self, logger: logging.Logger, server: str) -> None:
        self._logger = logger
        self.server = server
        self._since: float | None = None  # monotonic time the outage began

    @property
    def ongoing(self) -> bool:
        """True from the first failed attempt of an outage to the success that ends it."""
        return self._since is not None

    def lost(self, detail: str) -> bool:
        """Note a failed attempt; True (and the WARNING) for the first of an outage.

        Args:
            detail: What failed and what happens next, e.g. ``"(could not dequeue jobs:
                ConnectionRefusedError: ...); retrying with backoff"``.
        """
        if self._since is not None:
            return False
        self._since = time.monotonic()
        self._logger.warning("%s unreachable %s.", self.server, detail)
        return True

    def back(self) -> None:
        """Note a successful attempt: ends the outage under way with one WARNING."""
        since, self._since = self._since, None
        if since is not None:
            self._logger.warning(
                "%s reachable again after %.2f s.", self.server, time.monotonic() - since
            )
