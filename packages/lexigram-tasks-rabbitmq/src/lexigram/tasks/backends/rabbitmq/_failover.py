"""A robust connection that follows a RabbitMQ cluster: the next node after each failure.

aio-pika's robust connection reconnects to the one URL it holds; a cluster URL names
several nodes (`split_amqp_url`), and `FailoverConnection` moves that URL along them.
It also reports an outage as the other backends do: one WARNING when the broker is lost,
one when it is back, and nothing more:

- A process holds several connections to one broker (each queue object its own, opened
  again at each retry while a first connect fails), and all of them fail together. They
  share one `BrokerOutage` per broker URL and event loop: the WARNING comes with the first
  failure, the line that ends it once none of them is down any more, and the attempts in
  between are DEBUG (with a reminder every `REMIND_AFTER` seconds of a long outage).
- A broker that refuses the URL's login or virtual host is not unreachable: the WARNING
  then says what `connect_failure` says (what to fix in the URL).
- aio-pika's robust channel, told that its channel closed with the connection, reopens
  it at once, on a connection that has no transport yet, and logs that failure as an
  ERROR ("Callback <OneShotCallback: cb=<bound method RobustChannel._on_close ...>>
  error: ChannelInvalidStateError"), while the connection reopens every channel once it
  is back anyway. `RestoredChannel` leaves the reopening to the connection.
- aiormq logs every close the server sends as an ERROR ("Unexpected connection close
  from remote ... CONNECTION_FORCED"), every failed connect as an ERROR ("error when
  creating transport") and the end of its reader as a WARNING with a traceback; aio-pika
  logs every failed reconnect attempt as a WARNING, each with no way to say that the
  connection reconnects. `_RecoveredCloseFilter` drops those records for the connections
  of this module only; the outage's lines carry the same reason.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import TimeoutType
from aio_pika.connection import make_url
from aiormq.abc import AbstractConnection, ExceptionType

from lexigram.contracts.tasks import ServerOutage, mask_url
from lexigram.tasks.backends.rabbitmq._errors import ConnectAttempt, broker_refusal
from lexigram.tasks.backends.rabbitmq._options import parse_amqp_url
from lexigram.tasks.backends.rabbitmq._short_strings import read_short_strings_leniently

# Its records keep the logger of `_connection`, where this code was before, so that logging
# configurations naming that logger still see them.
logger = logging.getLogger("lexigram.tasks.backends.rabbitmq._connection")

REMIND_AFTER = 300.0
"""Seconds after an outage's last WARNING at which a failed attempt logs a reminder."""

NEW_OUTAGE_AFTER = 60.0
"""Seconds without a failed attempt after which the next one starts a new outage, when no
connection is down any more (those that saw the last one were closed before it ended)."""


class BrokerOutage(ServerOutage):
    """The outage of one broker URL as every connection of one event loop to it sees it.

    It begins with the first failed attempt of any of them (one WARNING: the broker is
    unreachable, or it refused the URL's login or virtual host) and ends when one of them
    connects while none of the others is still down (one line, after how long). A
    connection closed while down leaves the outage on; the next success ends it.
    """

    __slots__ = ("_down", "_last_failure", "_refusal_told", "_told")

    def __init__(self, server: str) -> None:
        super().__init__(logger, server)
        self._down: weakref.WeakSet[FailoverConnection] = weakref.WeakSet()
        self._last_failure = 0.0
        self._told = 0.0  # monotonic time of this outage's last WARNING
        self._refusal_told = False  # whether a WARNING of this outage named a refusal

    def failed(
        self, connection: FailoverConnection, cause: BaseException | None, then: str
    ) -> None:
        """Note a failed attempt (a loss or a refused connect) of `connection`.

        Args:
            connection: The connection that failed; its current node names the broker.
            cause: What the client raised, if anything.
            then: What happens next, e.g. ``"reconnecting every 1 s"``.
        """
        now = time.monotonic()
        if self.ongoing and not self._down and now - self._last_failure > NEW_OUTAGE_AFTER:
            self._since = None  # nothing was down any more: an outage no success ended
        self._last_failure = now
        self._down.add(connection)
        self.server = connection.described
        what = "connection closed" if cause is None else f"{type(cause).__name__}: {cause}"
        what = mask_url(what)
        refusal = None if cause is None else connection.refusal(cause)
        if not self.ongoing:
            self._told, self._refusal_told = now, refusal is not None
            if refusal is None:
                self.lost(f"({what}); {then}")
            else:  # begun as `lost` begins one, in the words of the connect error
                self._since = now
                logger.warning("%s; %s.", refusal.removesuffix("."), then)
        elif refusal is not None and not self._refusal_told:
            # Down, and now turned away: what to fix is news (a password changed, say).
            self._told, self._refusal_told = now, True
            logger.warning("%s; %s.", refusal.removesuffix("."), then)
        elif now - self._told >= REMIND_AFTER:
            self._told = now
            since = now - (self._since or now)
            if refusal is None:
                logger.warning(
                    "%s still unreachable after %.0f s (%s); %s.", self.server, since, what, then
                )
            else:
                logger.warning(
                    "%s (still, after %.0f s); %s.", refusal.removesuffix("."), since, then
                )
        else:
            state = "unreachable" if refusal is None else "refusing the connection"
            logger.debug("%s still %s (%s); %s.", self.server, state, what, then)

    def connected(self, connection: FailoverConnection) -> None:
        """Note that `connection` connected: the end of the outage if none is still down."""
        self._down.discard(connection)
        if self.ongoing and not self._down:
            self.server = connection.described  # the node it reached
            self.back()

    def closed(self, connection: FailoverConnection) -> None:
        """Forget `connection`: it was closed and no longer retries."""
        self._down.discard(connection)


# One `BrokerOutage` per event loop and broker URL (its nodes, as written).
_OUTAGES: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, ...], BrokerOutage]
] = weakref.WeakKeyDictionary()


def broker_outage(loop: asyncio.AbstractEventLoop, nodes: Sequence[str]) -> BrokerOutage:
    """The outage record every connection of `loop` to the broker at `nodes` shares."""
    outages = _OUTAGES.setdefault(loop, {})
    key = tuple(nodes)
    outage = outages.get(key)
    if outage is None:
        outage = outages[key] = BrokerOutage(f"RabbitMQ at {mask_url(nodes[0])}")
    return outage


# The transports of live `FailoverConnection`s: whose closes `_RecoveredCloseFilter` drops.
_RECOVERING: weakref.WeakSet[AbstractConnection] = weakref.WeakSet()

# True in the task that connects and reconnects a `FailoverConnection` (it is started in
# `connect`, with a copy of the context), and in the tasks that one starts (aiormq's reader).
_RECONNECTING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "lexigram_rabbitmq_reconnecting", default=False
)

_REMOTE_CLOSE = 'Unexpected connection close from remote "%s", '
_READER_EXIT = "Cancelling cause reader exited abnormally"
_NO_TRANSPORT = "error when creating transport: %r"
_ATTEMPT_FAILED = 'Connection attempt to "%s" failed: %s. Reconnecting after %r seconds.'
_WILL_RECONNECT = "Connection to %s closed. Reconnecting after %r seconds."


def _lost_socket(exc: BaseException | None) -> bool:
    """True for the error aiormq's reader ends with when its socket closed or failed.

    A frame it cannot parse ends the reader with another error, which keeps its record.
    """
    return isinstance(exc, aiormq.exceptions.AMQPConnectionError) and isinstance(
        exc.__cause__, asyncio.IncompleteReadError | OSError
    )


class _RecoveredCloseFilter(logging.Filter):
    """Drops aiormq's and aio-pika's records of a lost connection that reconnects.

    aiormq's ERROR of a server-side close names the connection; the WARNING that follows
    it (the reader ending on that close) does not, so it is matched by its exception's
    code and text. Its ERROR of a failed connect and its reader's end on a lost socket
    name nothing either: they are dropped when logged by a `FailoverConnection`'s own
    tasks. aio-pika's records of a failed attempt name the connection.
    """

    def __init__(self) -> None:
        super().__init__()
        self._closes: deque[tuple[object, ...]] = deque(maxlen=64)

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        args = record.args if isinstance(record.args, tuple) else ()
        if message.startswith(_REMOTE_CLOSE) and args:
            return self._keep_remote_close(args)
        if message in (_ATTEMPT_FAILED, _WILL_RECONNECT):
            return not (args and isinstance(args[0], FailoverConnection))
        if message == _READER_EXIT and record.exc_info:
            return not self._reader_ended_by_a_loss(record.exc_info[1])
        return not (message == _NO_TRANSPORT and _RECONNECTING.get())

    def _keep_remote_close(self, args: tuple[object, ...]) -> bool:
        connection, *code_and_text = args
        if connection not in _RECOVERING:
            return True
        self._closes.append(tuple(code_and_text))
        return False

    def _reader_ended_by_a_loss(self, exc: BaseException | None) -> bool:
        if _RECONNECTING.get() and _lost_socket(exc):
            return True
        reason = tuple(getattr(exc, "args", ())[:2])
        if reason in self._closes:
            self._closes.remove(reason)
            return True
        return False


_FILTER = _RecoveredCloseFilter()
logging.getLogger("aiormq.connection").addFilter(_FILTER)
logging.getLogger("aio_pika.robust_connection").addFilter(_FILTER)


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
    the URL moves on to the next node (round robin) and the outage is noted. With one
    node this is aio-pika's robust connection unchanged, but for the logging.
    """

    CHANNEL_CLASS = RestoredChannel

    def __init__(self, nodes: Sequence[str], first: int, **kwargs: Any) -> None:
        read_short_strings_leniently()  # a foreign message id must not end the connection
        super().__init__(make_url(nodes[first]), **kwargs)
        self._urls = list(nodes)
        self._nodes = [make_url(node) for node in nodes]
        self._current = first
        self._outage = broker_outage(self.loop, nodes)

    @property
    def node(self) -> int:
        """Index of the node the next (or current) connection goes to."""
        return self._current

    @property
    def described(self) -> str:
        """How the log names the broker: ``RabbitMQ at <current node's masked URL>``."""
        return f"RabbitMQ at {mask_url(str(self.url))}"

    def refusal(self, cause: BaseException) -> str | None:
        """What `connect_failure` says of `cause` if it is a refused login or virtual host."""
        url = self._urls[self._current]
        target = parse_amqp_url(url)
        attempt = ConnectAttempt.of(url, target.host, target.port, target.vhost, timeout=0.0)
        return broker_refusal(cause, attempt)

    async def connect(self, timeout: TimeoutType = None) -> None:
        """Connect; the reconnecting task this starts (the first time) marks its records."""
        marked = _RECONNECTING.set(True)
        try:
            await super().connect(timeout)
        finally:
            _RECONNECTING.reset(marked)

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        if not self._close_called and not self.is_closed:
            cause = closing.exception() if closing.done() and not closing.cancelled() else None
            self._outage.failed(self, cause, f"reconnecting every {self.reconnect_interval:g} s")
        if len(self._nodes) > 1 and not self._close_called:
            self._current = (self._current + 1) % len(self._nodes)
            self.url = self._nodes[self._current]
            logger.info("RabbitMQ connection lost or refused; next attempt goes to %s.", self)
        await super()._on_connection_close(closing)

    async def _on_connected(self) -> None:
        transport = self.transport
        if transport is not None:
            _RECOVERING.add(transport.connection)
        await super()._on_connected()  # every channel reopened, reconnect callbacks run
        self._outage.connected(self)

    async def close(self, exc: ExceptionType | None = asyncio.CancelledError) -> None:
        """Close for good (the outage no longer waits for this connection)."""
        self._outage.closed(self)
        await super().close(exc)
