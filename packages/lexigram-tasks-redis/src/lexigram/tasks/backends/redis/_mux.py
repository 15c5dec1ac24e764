"""A multiplexed Redis connection for the queue's hot path (scripts, not blocking calls).

One TCP (or TLS, or unix) connection per event loop carries every concurrent request:
a request is written at once and its future queued; Redis answers in order, so each
reply resolves the oldest future. Compared with a pooled redis-py call this saves the
pool round (acquire, liveness probe, release) and the stream-reader layers, and many
coroutines share one socket, so concurrent calls are pipelined for free. A caller that
is cancelled leaves its future behind; the reply is read and dropped, the connection
stays usable (a pooled connection would have to be closed).

Blocking commands (BLPOP), pub/sub and SCAN never come here: they would stall every
request queued behind them. They use the redis-py client.

Replies are parsed by hiredis when it is installed, else by `RespParser` below.
Errors are raised as redis-py's exception classes, so the retry policy in
`RedisConnector` treats both paths alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from lexigram.tasks.backends.redis._diagnose import ConnectFailed
from redis import exceptions as rexc
from redis.connection import parse_url

_hiredis_reader: Any = None
_hiredis_error: Any = None
_hiredis_pack: Any = None
try:  # optional: hiredis parses replies and encodes commands in C
    import hiredis
except ImportError:  # pragma: no cover - depends on the environment
    HIREDIS = False
else:
    _hiredis_reader, _hiredis_error = hiredis.Reader, hiredis.ReplyError
    _hiredis_pack = hiredis.pack_command
    HIREDIS = True

_CLOSE_TIMEOUT = 1.0
"""Longest wait for a closed connection's socket to go (a TLS goodbye to the server)."""

SUPPORTED_KWARGS = frozenset(
    {
        "socket_connect_timeout",
        "socket_timeout",
        "socket_keepalive",
        "socket_keepalive_options",
        "retry",
        "max_connections",
        "client_name",
        "ssl_ca_certs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_cert_reqs",
        "ssl_check_hostname",
    }
)
"""Connection options the multiplexed path honours; any other one disables it."""

_ERRORS: tuple[tuple[str, type[rexc.RedisError]], ...] = (
    ("NOSCRIPT", rexc.NoScriptError),
    ("LOADING", rexc.BusyLoadingError),
    ("READONLY", rexc.ReadOnlyError),
    ("NOPERM", rexc.NoPermissionError),
    ("WRONGPASS", rexc.AuthenticationError),
    ("NOAUTH", rexc.AuthenticationError),
    ("TRYAGAIN", rexc.TryAgainError),
    ("CLUSTERDOWN", rexc.ClusterDownError),
    ("MASTERDOWN", rexc.MasterDownError),
    ("EXECABORT", rexc.ExecAbortError),
)


def error_for(message: str) -> rexc.RedisError:
    """Map a Redis error reply to redis-py's exception class for it."""
    for prefix, cls in _ERRORS:
        if message.startswith(prefix):
            return cls(message)
    return rexc.ResponseError(message)


class _ProtocolError(Exception):
    pass


_SIMPLE, _ERROR, _INTEGER, _BULK, _ARRAY = b"+-:$*"


def pack(args: tuple[Any, ...] | list[Any]) -> bytes:
    """Encode one command in RESP (bytes, str, int and float arguments)."""
    if _hiredis_pack is not None:
        try:  # the same bytes as below (floats as repr), in C
            return _hiredis_pack(args if type(args) is tuple else tuple(args))  # type: ignore[no-any-return]
        except TypeError:
            pass  # an argument of another type: the encoder below names it
    return b"*%d\r\n" % len(args) + pack_args(args)


def pack_args(args: tuple[Any, ...] | list[Any]) -> bytes:
    """Encode arguments as RESP bulk strings, without the array header."""
    parts: list[bytes] = []
    append = parts.append
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int) and not isinstance(arg, bool):
            data = b"%d" % arg
        elif isinstance(arg, float):
            data = repr(arg).encode()
        else:
            msg = (
                f"Cannot send {type(arg).__name__} {arg!r} to Redis; pass bytes, str, int or float."
            )
            raise rexc.DataError(msg)
        append(b"$%d\r\n" % len(data))
        append(data)
        append(b"\r\n")
    return b"".join(parts)


_MAX_HEADS = 256  # cached EVALSHA prefixes per connection (one per script and queue)
_CACHED_KEYS = 8  # a queue's scripts name at most this many keys, and always the same ones


class RespParser:
    """A RESP2 reply parser with the interface of ``hiredis.Reader`` (feed / gets).

    `gets` returns the next complete reply, or False when more data is needed. Error
    replies are returned as `rexc.ResponseError` instances (not raised).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        if self._pos:
            del self._buffer[: self._pos]
            self._pos = 0
        self._buffer += data

    def gets(self) -> Any:
        """Return the next complete reply, or False if it has not fully arrived."""
        try:
            reply, pos = self._parse(self._pos)
        except IndexError:
            return False
        self._pos = pos
        return reply

    def _line(self, pos: int) -> tuple[bytes, int]:
        end = self._buffer.find(b"\r\n", pos)
        if end < 0:
            raise IndexError
        return bytes(self._buffer[pos:end]), end + 2

    def _parse(self, pos: int) -> tuple[Any, int]:
        if pos >= len(self._buffer):
            raise IndexError
        kind = self._buffer[pos]
        line, pos = self._line(pos + 1)
        if kind == _BULK:
            return self._bulk(int(line), pos)
        if kind == _ARRAY:
            return self._array(int(line), pos)
        return _scalar(kind, line), pos

    def _bulk(self, size: int, pos: int) -> tuple[bytes | None, int]:
        if size < 0:
            return None, pos
        if pos + size + 2 > len(self._buffer):
            raise IndexError
        return bytes(self._buffer[pos : pos + size]), pos + size + 2

    def _array(self, count: int, pos: int) -> tuple[list[Any] | None, int]:
        if count < 0:
            return None, pos
        items = []
        for _ in range(count):
            item, pos = self._parse(pos)
            items.append(item)
        return items, pos


def _scalar(kind: int, line: bytes) -> Any:
    if kind == _SIMPLE:
        return line
    if kind == _ERROR:
        return rexc.ResponseError(line.decode(errors="replace"))
    if kind == _INTEGER:
        return int(line)
    msg = f"unexpected reply type byte {kind!r}"
    raise _ProtocolError(msg)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _reader() -> Any:
    if _hiredis_reader is not None:
        return _hiredis_reader()
    return RespParser()


def _is_error(reply: Any) -> bool:
    if isinstance(reply, rexc.ResponseError):
        return True
    return _hiredis_error is not None and isinstance(reply, _hiredis_error)


class _MuxProtocol(asyncio.Protocol):
    """One connection: requests written in order, replies matched to queued futures."""

    def __init__(self) -> None:
        self._waiters: deque[asyncio.Future[Any]] = deque()
        self._reader = _reader()
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None
        self._gone: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101 - stream transports only
        self.transport = transport
        self._gone = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiters = self._waiters
        while True:
            try:
                reply = reader.gets()
            except Exception as exc:
                self._abort(rexc.ConnectionError(f"Unreadable reply from Redis: {exc}"))
                return
            if reply is False:
                return
            if not waiters:
                self._abort(rexc.ConnectionError("Redis sent a reply nobody asked for."))
                return
            future = waiters.popleft()
            if future.done():
                continue  # its caller gave up (cancelled or timed out); drop the reply
            if _is_error(reply):
                future.set_exception(error_for(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost is None:  # else `_abort` already said why (kept for the callers)
            self.lost = rexc.ConnectionError(
                f"Connection to Redis lost ({exc})." if exc else "Connection closed by server."
            )
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_exception(self.lost)
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(None)

    def _abort(self, exc: BaseException) -> None:
        self.lost = exc
        if self.transport is not None:
            self.transport.abort()

    def request(self, packed: bytes) -> asyncio.Future[Any]:
        if self.lost is not None or self.transport is None or self.transport.is_closing():
            raise self.lost or rexc.ConnectionError("Connection to Redis is closed.")
        future = asyncio.get_running_loop().create_future()
        self.transport.write(packed)
        self._waiters.append(future)
        return future

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def shut(self, timeout: float) -> None:
        """Close and wait until the socket is closed (at most `timeout`, then abort).

        A TLS connection first exchanges close_notify with the server; an event loop
        that ended right after `close` would cut that off and leave the socket open.
        """
        self.close()
        if self._gone is None or self.transport is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._gone)
        except TimeoutError:
            self.transport.abort()


class MuxClient:
    """The multiplexed client of one event loop (built by `RedisConnector`).

    Exposes the three calls the scripts need (`execute_command`, `evalsha`,
    `script_load`) with redis-py's raw reply types and exception classes.
    """

    def __init__(
        self,
        url: str,
        options: Mapping[str, Any],
        *,
        locate: Callable[[], Awaitable[tuple[str, int]]] | None = None,
    ) -> None:
        self._params: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        self._options = dict(options)
        # Behind Sentinel the address is asked for anew before every connect.
        self._locate = locate
        self._protocol: _MuxProtocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._heads: dict[tuple[str, tuple[Any, ...]], bytes] = {}

    def __repr__(self) -> str:
        return f"MuxClient(connected={self._protocol is not None and self._protocol.lost is None})"

    async def execute_command(self, *args: Any) -> Any:
        """Send one command and return its raw reply."""
        return await self._send(pack(args))

    async def _send(self, packed: bytes) -> Any:
        protocol = self._protocol
        if protocol is None or protocol.lost is not None:
            protocol = await self._connect()
        future = protocol.request(packed)
        timeout = self._options.get("socket_timeout")
        if timeout is None:
            return await future
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            # A silent server: drop the connection so the next call starts afresh.
            protocol._abort(rexc.TimeoutError("Redis did not answer in time."))  # noqa: SLF001
            msg = f"Redis did not answer within socket_timeout={timeout} s."
            raise rexc.TimeoutError(msg) from None

    async def send_many(self, *commands: tuple[Any, ...]) -> list[asyncio.Future[Any]]:
        """Write several commands at once and return their reply futures, in order.

        Used for a blocking pop followed by the lease script: Redis runs the second as
        soon as the first unblocks, without waiting for the client. Every future gets a
        callback that retrieves its exception, so an abandoned one never warns.
        """
        protocol = self._protocol
        if protocol is None or protocol.lost is not None:
            protocol = await self._connect()
        futures = [protocol.request(pack(command)) for command in commands]
        for future in futures:
            future.add_done_callback(_retrieve)
        return futures

    def abort(self) -> None:
        """Drop the connection now (a blocked command on the server goes with it)."""
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol._abort(rexc.ConnectionError("Connection closed by the client."))  # noqa: SLF001

    async def evalsha(self, sha: str, numkeys: int, *args: Any) -> Any:
        """EVALSHA `sha` with `numkeys` keys followed by arguments.

        Without hiredis, the encoded ``EVALSHA <sha> <numkeys> <keys...>`` prefix is
        cached per script and key set (a queue's keys never change), so only the
        arguments are encoded in Python.
        """
        if _hiredis_pack is not None or numkeys > _CACHED_KEYS:
            # hiredis encodes it all faster than a cached prefix saves; a batch's keys
            # vary per call, so there is nothing to reuse either.
            return await self._send(pack(("EVALSHA", sha, numkeys, *args)))
        keys = args[:numkeys]
        head = self._heads.get((sha, keys))
        if head is None:
            if len(self._heads) >= _MAX_HEADS:
                self._heads.clear()
            head = pack_args(("EVALSHA", sha, numkeys, *keys))
            self._heads[sha, keys] = head
        packed = b"*%d\r\n" % (3 + len(args)) + head + pack_args(args[numkeys:])
        return await self._send(packed)

    async def script_load(self, text: str) -> Any:
        """SCRIPT LOAD `text`."""
        return await self.execute_command("SCRIPT", "LOAD", text)

    async def _connect(self) -> _MuxProtocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            protocol = self._protocol
            if protocol is not None and protocol.lost is None:
                return protocol  # another caller connected meanwhile
            if protocol is not None:
                protocol.close()
            self._protocol = None
            protocol = await self._open()
            self._protocol = protocol
            return protocol

    async def _open(self) -> _MuxProtocol:
        loop = asyncio.get_running_loop()
        params = self._params
        timeout = self._options.get("socket_connect_timeout") or None
        try:
            async with asyncio.timeout(timeout):
                if "path" in params:
                    _, protocol = await loop.create_unix_connection(_MuxProtocol, params["path"])
                else:
                    host, port = (
                        await self._locate()
                        if self._locate is not None
                        else (params.get("host", "localhost"), int(params.get("port", 6379)))
                    )
                    _, protocol = await loop.create_connection(
                        _MuxProtocol, host, port, ssl=self._ssl_context()
                    )
        except (OSError, TimeoutError) as exc:
            msg = f"Could not connect to Redis: {type(exc).__name__}: {exc}"
            raise ConnectFailed(msg) from exc
        self._tune(protocol)
        try:
            await self._handshake(protocol)
        except BaseException:
            protocol.close()
            raise
        return protocol

    def _ssl_context(self) -> ssl.SSLContext | None:
        params = {**self._params, **self._options}
        if "connection_class" not in self._params or "SSL" not in str(
            self._params["connection_class"]
        ):
            return None
        context = ssl.create_default_context(cafile=params.get("ssl_ca_certs"))
        if params.get("ssl_certfile"):
            context.load_cert_chain(params["ssl_certfile"], params.get("ssl_keyfile"))
        reqs = params.get("ssl_cert_reqs", "required")
        if reqs in ("none", None, ssl.CERT_NONE):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif params.get("ssl_check_hostname") is False:
            context.check_hostname = False
        return context

    def _tune(self, protocol: _MuxProtocol) -> None:
        assert protocol.transport is not None  # noqa: S101 - set by connection_made
        sock = protocol.transport.get_extra_info("socket")
        if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._options.get("socket_keepalive"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                for option, value in (self._options.get("socket_keepalive_options") or {}).items():
                    sock.setsockopt(socket.IPPROTO_TCP, option, value)

    async def _handshake(self, protocol: _MuxProtocol) -> None:
        params = self._params
        steps: list[tuple[Any, ...]] = []
        password = params.get("password")
        if password:
            username = params.get("username")
            steps.append(("AUTH", username, password) if username else ("AUTH", password))
        if int(params.get("db") or 0):
            steps.append(("SELECT", int(params["db"])))
        name = self._options.get("client_name")
        if name:
            steps.append(("CLIENT", "SETNAME", name))
        futures = [protocol.request(pack(step)) for step in steps]
        # Every reply is collected, so a failure of the first step (a refused AUTH, a
        # server that is not Redis closing the connection) leaves no reply unread.
        replies = await asyncio.gather(*futures, return_exceptions=True)
        for reply in replies:
            if isinstance(reply, rexc.ResponseError):
                text = str(reply)
                if "AUTH" in text or "WRONGPASS" in text or "NOAUTH" in text:
                    raise rexc.AuthenticationError(text) from reply
                raise reply
            if isinstance(reply, BaseException):
                raise reply

    async def aclose(self) -> None:
        """Close the connection (pending requests fail with ConnectionError)."""
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            await protocol.shut(_CLOSE_TIMEOUT)
