"""A robust connection that follows a RabbitMQ cluster: the next node after each failure.

aio-pika's robust connection reconnects to the one URL it holds; a cluster URL names
several nodes (`split_amqp_url`), and `FailoverConnection` moves that URL along them.
It also reports an outage as the other backends do: one WARNING when the connection is
lost, one when it is back, and nothing more:

- aio-pika's robust channel, told that its channel closed with the connection, reopens
  it at once, on a connection that has no transport yet, and logs that failure as an
  ERROR ("Callback <OneShotCallback: cb=<bound method RobustChannel._on_close ...>>
  error: ChannelInvalidStateError"), while the connection reopens every channel once it
  is back anyway. `RestoredChannel` leaves the reopening to the connection.
- aiormq logs every close the server sends as an ERROR ("Unexpected connection close
  from remote ... CONNECTION_FORCED") and the end of its reader as a WARNING with a
  traceback, with no way to say that the connection reconnects. `_RecoveredCloseFilter`
  drops those two records for the connections of this module only; the outage WARNING
  carries the same reason.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.connection import make_url
from aiormq.abc import AbstractConnection

from lexigram.contracts.tasks import ServerOutage, mask_url

# Its records keep the logger of `_connection`, where this code was before, so that logging
# configurations naming that logger still see them.
logger = logging.getLogger("lexigram.tasks.backends.rabbitmq._connection")


# The transports of live `FailoverConnection`s: whose closes `_RecoveredCloseFilter` drops.
_RECOVERING: weakref.WeakSet[AbstractConnection] = weakref.WeakSet()

_REMOTE_CLOSE = 'Unexpected connection close from remote "%s", '
_READER_EXIT = "Cancelling cause reader exited abnormally"


class _RecoveredCloseFilter(logging.Filter):
    """Drops aiormq's records of a server-side close of a connection that reconnects.

    The ERROR names the connection; the WARNING that follows it (the reader ending on
    that close) does not, so it is matched by its exception's code and text.
    """

    def __init__(self) -> None:
        super().__init__()
        self._closes: deque[tuple[object, ...]] = deque(maxlen=64)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        message = str(record.msg)
        if message.startswith(_REMOTE_CLOSE) and isinstance(args, tuple) and args:
            connection, *code_and_text = args
            if connection in _RECOVERING:
                self._closes.append(tuple(code_and_text))
                return False
            return True
        if message == _READER_EXIT and record.exc_info:
            reason = tuple(getattr(record.exc_info[1], "args", ())[:2])
            if reason in self._closes:
                self._closes.remove(reason)
                return False
        return True


logging.getLogger("aiormq.connection").addFilter(_RecoveredCloseFilter())


class RestoredChannel(aio_pika.RobustChannel):
    """A robust channel reopened by its connection only, once the connection is back."""

    async def restore(self, channel: Any = None) -> None:
        """Reopen the channel, unless its connection is down (it reopens it when back)."""
        transport = self._connection.transport
        # The channel's close callback runs before the connection's own, which clears
        # its transport: a closed transport is as down as none.
        if transport is None or transport.connection.is_closed:
            return
        await super().restore(channel)


class FailoverConnection(aio_pika.RobustConnection):
    """A robust connection that moves to the next node of a cluster when one fails.

    aio-pika reconnects to the URL it holds; every failed attempt and every loss of an
    established connection passes through `_on_connection_close`, so that is where
    the URL moves on to the next node (round robin). With one node this is aio-pika's
    robust connection unchanged.
    """

    CHANNEL_CLASS = RestoredChannel

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

    async def _on_connected(self) -> None:
        transport = self.transport
        if transport is not None:
            _RECOVERING.add(transport.connection)
        await super()._on_connected()

    def _reconnected(self, _connection: object) -> None:
        self._outage.server = self._server()  # the node it reached
        self._outage.back()

    def _server(self) -> str:
        return f"RabbitMQ at {mask_url(str(self.url))}"
