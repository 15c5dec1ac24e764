"""A robust connection that follows a RabbitMQ cluster: the next node after each failure.

aio-pika's robust connection reconnects to the one URL it holds; a cluster URL names
several nodes (`split_amqp_url`), and `FailoverConnection` moves that URL along them.
It also reports an outage as the other backends do: one WARNING when the connection is
lost, one when it is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.connection import make_url

from lexigram.contracts.tasks import ServerOutage, mask_url

# Its records keep the logger of `_connection`, where this code was before, so that logging
# configurations naming that logger still see them.
logger = logging.getLogger("lexigram.tasks.backends.rabbitmq._connection")


class FailoverConnection(aio_pika.RobustConnection):
    """A robust connection that moves to the next node of a cluster when one fails.

    aio-pika reconnects to the URL it holds; every failed attempt and every loss of an
    established connection passes through `_on_connection_close`, so that is where
    the URL moves on to the next node (round robin). With one node this is aio-pika's
    robust connection unchanged.
    """

    def __init__(self, nodes: Sequence[str], first: int, **kwargs: Any) -> None:
        super().__init__(make_url(nodes[first]), **kwargs)
        self._nodes = [make_url(node) for node in nodes]
        self._current = first
        self._outage = ServerOutage(logger, self._server())
        self.reconnect_callbacks.add(self._reconnected)

    @property
    def node(self) -> int:
        """Index of the node the next (or current) connection goes to."""
        return self._current

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        if not self._outage.ongoing and not self._close_called and not self.is_closed:
            cause = closing.exception() if closing.done() and not closing.cancelled() else None
            what = "connection closed" if cause is None else f"{type(cause).__name__}: {cause}"
            self._outage.server = self._server()
            self._outage.lost(
                f"({mask_url(what)}); reconnecting every {self.reconnect_interval:g} s"
            )
        if len(self._nodes) > 1 and not self._close_called:
            self._current = (self._current + 1) % len(self._nodes)
            self.url = self._nodes[self._current]
            logger.info("RabbitMQ connection lost or refused; next attempt goes to %s.", self)
        await super()._on_connection_close(closing)

    def _reconnected(self, _connection: object) -> None:
        self._outage.server = self._server()  # the node it reached
        self._outage.back()

    def _server(self) -> str:
        return f"RabbitMQ at {mask_url(str(self.url))}"
