"""One redis-py asyncio client per event loop, created lazily, and the retry policy.

Every Redis call of the backend goes through `RedisConnector.call`, which gives each
attempt a deadline (`command_timeout`, so a server that accepts and never answers
cannot hang a caller) and classifies failures (`_diagnose.py`):

- never heal by waiting (wrong password, missing permission, database out of range,
  TLS failure, not a Redis server): raised at once;
- could heal (connection refused or reset, timeouts, a server loading its AOF, a
  failover): raised at once on the first contact with the server, since a wrong URL
  is far likelier than a restart; once the server has answered, retried with
  exponential backoff for up to `retry_timeout` seconds.

Either way the caller gets a `BackendConnectionError` whose one-line message names
the masked URL, what failed and the fix.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import logging
import random
import socket
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import redis.asyncio as aioredis
from lexigram.contracts.tasks import (
    BackendConnectionError,
    BackendError,
    ServerOutage,
    TaskConfigurationError,
    mask_url,
    nearest_name,
)
from lexigram.tasks.backends.redis._diagnose import CommandDeadline, Diagnosis, diagnose
from lexigram.tasks.backends.redis._mux import SUPPORTED_KWARGS, MuxClient
from lexigram.tasks.backends.redis._sentinel import SENTINEL_SCHEME, SentinelRoute
from redis import exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_URL = "redis://localhost:6379"
URL_SCHEMES: tuple[str, ...] = ("redis", "rediss", "unix", SENTINEL_SCHEME)
"""The URL schemes the Redis backend serves."""

# Errors that can heal by waiting. AuthenticationError subclasses ConnectionError in
# redis-py, so it is filtered out first (see `_is_transient`).
_TRANSIENT: tuple[type[BaseException], ...] = (
    rexc.ConnectionError,
    rexc.TimeoutError,
    rexc.ReadOnlyError,
    rexc.TryAgainError,
    rexc.ClusterDownError,
    rexc.MasterDownError,
    ConnectionError,
    TimeoutError,
)
_PERMANENT: tuple[type[BaseException], ...] = (
    rexc.AuthenticationError,
    rexc.AuthorizationError,
    rexc.NoPermissionError,
)
_BACKOFF_BASE = 0.05
_BACKOFF_CAP = 1.0
# When a command deadline falls due, the reply gets this much longer: after a handler
# blocked the event loop, a reply that arrived meanwhile is read first, rather than the
# connection dropped and the command (an ack) sent twice.
_DEADLINE_GRACE = 0.1


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, _TRANSIENT) and not isinstance(exc, _PERMANENT)


def check_url(url: str) -> str:
    """Return `url` if its scheme is one redis-py understands, else raise.

    Raises:
        TaskConfigurationError: The scheme is not redis://, rediss:// or unix://.
    """
    scheme = urlsplit(url).scheme
    if scheme not in URL_SCHEMES:
        msg = (
            f"Redis URL {mask_url(url)!r} has scheme {scheme!r}. Use redis://host:port/db, "
            "rediss://host:port/db for TLS, unix:///path/to/redis.sock, or "
            "redis+sentinel://host1:26379,host2:26379/<service_name>/<db> for Sentinel."
        )
        raise TaskConfigurationError(msg, details={"url": mask_url(url)})
    if scheme in ("redis", "rediss"):
        _check_database_and_query(url)
    return url


def _check_database_and_query(url: str) -> None:
    """Refuse a database that is not a number and a query key redis-py does not take.

    redis-py's URL parser drops a database it cannot read (``/x`` meant database 0) and
    hands unknown query keys on as strings, so a typo would go unnoticed or write to
    another database.

    Raises:
        TaskConfigurationError: Naming the part and what to write instead.
    """
    parts = urlsplit(url)
    database = parts.path.strip("/")
    if database and not database.isdigit():
        msg = (
            f"Redis URL {mask_url(url)!r} names the database {database!r}, which is not a "
            "number. Use redis://host:6379/0 (databases are numbered from 0)."
        )
        raise TaskConfigurationError(msg, details={"url": mask_url(url)})
    for key in parse_qs(parts.query, keep_blank_values=True):
        if key.startswith("ssl_") or key in _url_query_keys():
            continue
        near = nearest_name(key, _url_query_keys())
        hint = f"Did you mean {near!r}? " if near else ""
        msg = (
            f"Redis URL {mask_url(url)!r} has the query option {key!r}, which redis-py does "
            f"not take. {hint}Fix or remove it."
        )
        raise TaskConfigurationError(msg, details={"url": mask_url(url)})


@functools.cache
def _url_query_keys() -> frozenset[str]:
    """What a Redis URL's query may set: redis-py's URL options and connection arguments."""
    from redis.asyncio.connection import AbstractConnection  # noqa: PLC0415
    from redis.connection import URL_QUERY_ARGUMENT_PARSERS  # noqa: PLC0415

    taken = set(URL_QUERY_ARGUMENT_PARSERS)
    taken.update(inspect.signature(AbstractConnection.__init__).parameters)
    taken.discard("self")
    return frozenset(taken)


def _keepalive_options() -> dict[int, int]:
    # Detect a dead peer within about a minute instead of the kernel's two hours; a
    # blocked BLPOP on a half-open connection would otherwise hang until then.
    opts: dict[int, int] = {}
    for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        const = getattr(socket, name, None)
        if isinstance(const, int):
            opts[const] = value
    return opts


class LuaScript:
    """A Lua script run by EVALSHA, loaded on first use and again after NOSCRIPT.

    The SHA1 is computed locally, so the first call on a fresh server costs one extra
    round trip (SCRIPT LOAD) and every later call sends only the digest. A server that
    restarted (and forgot its scripts) answers NOSCRIPT once; the script is loaded
    again and the call repeated.
    """

    __slots__ = ("name", "sha", "text")

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, client: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run the script on `client` with `keys` and `args`."""
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except rexc.NoScriptError:
            await client.script_load(self.text)
            return await client.evalsha(self.sha, len(keys), *keys, *args)


class _Deadline:
    """Expires an `asyncio.timeout` `seconds` after `arm`, plus one short grace.

    The grace is measured from when the deadline's timer ran, so a loop that was blocked
    past the deadline first reads what arrived meanwhile (the I/O callbacks of the turn
    after a block run before its timers, but the reply still needs a turn or two to
    reach the caller).
    """

    __slots__ = ("_handle", "_seconds", "_timer")

    def __init__(self, timer: asyncio.Timeout, seconds: float) -> None:
        self._timer = timer
        self._seconds = seconds
        self._handle: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        self._handle = asyncio.get_running_loop().call_later(self._seconds, self._due)

    def _due(self) -> None:
        loop = asyncio.get_running_loop()
        self._handle = loop.call_later(_DEADLINE_GRACE, self._expire)

    def _expire(self) -> None:
        self._handle = None
        self._timer.reschedule(asyncio.get_running_loop().time())

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class RedisConnector:
    """Owns a lazily created redis-py client per event loop and retries transient errors.

    Creating the connector opens nothing: the client (and its pool) is built on first
    use inside a running event loop, so a queue can be constructed at import time. A
    client built on one loop is never used on another (asyncio connections are bound
    to their loop); a new loop gets a new client.

    Args:
        url: ``redis://``, ``rediss://`` (TLS) or ``unix://`` URL; ACL user and password
            go in the URL (``redis://user:secret@host:6379/0``). A
            ``redis+sentinel://host1:26379,host2:26379/<service_name>/<db>`` URL finds
            the primary through Sentinel (see `_sentinel.py`).
        client: An existing ``redis.asyncio.Redis`` (or ``RedisCluster``) to use
            instead of building one; the caller keeps ownership (it is not closed).
        max_connections: Pool size limit (None: redis-py's default, unbounded).
        socket_timeout: Read timeout of one socket read (None: none; `command_timeout`
            still bounds every command).
        socket_connect_timeout: Seconds to open a connection (TCP and TLS).
        command_timeout: Seconds one attempt of a non-blocking operation may take
            (None: no deadline). Blocking waits bound themselves.
        retry_timeout: How long transient failures are retried, once the server has
            answered at least once, before giving up.
        client_name: CLIENT SETNAME for every connection (shows in CLIENT LIST).
        connection_kwargs: Extra keyword arguments for ``Redis.from_url`` (TLS files,
            ``parser_class``, ``health_check_interval``, ...).
        multiplex: Send the queue's scripts over one multiplexed connection per event
            loop (see `_mux.py`); it is used only without an injected `client` and
            when every connection option is one it supports, else redis-py is used.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        client: Any | None = None,
        max_connections: int | None = None,
        socket_timeout: float | None = None,
        socket_connect_timeout: float = 5.0,
        command_timeout: float | None = 10.0,
        retry_timeout: float = 15.0,
        client_name: str | None = None,
        connection_kwargs: Mapping[str, Any] | None = None,
        multiplex: bool = True,
    ) -> None:
        self.url = check_url(url)
        self.masked_url = mask_url(url) if client is None else f"<{type(client).__name__}>"

        if max_connections is not None and max_connections < 1:
            msg = f"Redis max_connections={max_connections!r} is below 1. Use None or >= 1."
            raise TaskConfigurationError(msg, details={"option": "max_connections"})
        if not retry_timeout >= 0:
            msg = f"Redis retry_timeout={retry_timeout!r} is negative. Use 0 or more seconds."
            raise TaskConfigurationError(msg, details={"option": "retry_timeout"})
        if command_timeout is not None and not command_timeout > 0:
            msg = (
                f"Redis command_timeout={command_timeout!r} is not positive. "
                "Use a number of seconds above 0 (default 10), or None for no deadline."
            )
            raise TaskConfigurationError(msg, details={"option": "command_timeout"})
        self.retry_timeout = float(retry_timeout)
        self.command_timeout = None if command_timeout is None else float(command_timeout)
        self.connect_timeout = socket_connect_timeout
        # Whether the server ever answered: before that, a failure is reported at once.
        self._reached = False
        self._external = client
        self._kwargs: dict[str, Any] = {
            "socket_connect_timeout": socket_connect_timeout,
            "socket_timeout": socket_timeout,
            "socket_keepalive": True,
            "socket_keepalive_options": _keepalive_options(),
            # The connector owns the retry policy; redis-py retrying underneath would
            # multiply attempts and hide the outage from our logs.
            "retry": Retry(NoBackoff(), 0),
        }
        if max_connections is not None:
            self._kwargs["max_connections"] = max_connections
        if client_name is not None:
            self._kwargs["client_name"] = client_name
        self._kwargs.update(connection_kwargs or {})
        # TLS settings may come in the URL's query (rediss://...?ssl_ca_certs=...): one the
        # multiplexed path does not honour would be dropped silently, so it means redis-py.
        url_tls = {key for key in parse_qs(urlsplit(self.url).query) if key.startswith("ssl_")}
        self.multiplexed = (
            multiplex and client is None and set(self._kwargs) | url_tls <= SUPPORTED_KWARGS
        )
        # Behind Sentinel, every connection asks the sentinels where the primary is.
        self._route = (
            SentinelRoute(url, self._kwargs)
            if client is None and urlsplit(url).scheme == SENTINEL_SCHEME
            else None
        )
        self._node_url = url if self._route is None else self._route.target.node_url()
        self._muxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MuxClient] = (
            weakref.WeakKeyDictionary()
        )
        self._mux_loop: asyncio.AbstractEventLoop | None = None
        self._mux: MuxClient | None = None
        # Idle dedicated connections for blocking waits, per loop (one per waiter).
        self._blocking: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[MuxClient]] = (
            weakref.WeakKeyDictionary()
        )
        self._blocking_busy: set[MuxClient] = set()
        # One client per event loop (asyncio connections cannot move between loops); the
        # entry of a loop that is garbage-collected goes with it.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any | None = None
        self._outage = ServerOutage(logger, f"Redis at {self.masked_url}")
        # Stores sharing this connector (see `share` / `release`).
        self._sharers = 0

    def __repr__(self) -> str:
        return f"RedisConnector(url={self.masked_url!r})"

    @property
    def owns_client(self) -> bool:
        """True when the connector built its client (and so closes it)."""
        return self._external is None

    def client(self) -> Any:
        """Return the client for the running event loop, building it on first use."""
        if self._external is not None:
            return self._external
        loop = asyncio.get_running_loop()
        if loop is self._loop and self._client is not None:
            return self._client
        client = self._clients.get(loop)
        if client is None:
            client = (
                self._route.client()
                if self._route is not None
                else aioredis.Redis.from_url(self.url, **self._kwargs)
            )
            self._clients[loop] = client
        self._loop, self._client = loop, client
        return client

    def fast_client(self) -> Any:
        """Return the multiplexed client of the running loop (or `client()` without one).

        Only for non-blocking commands: a blocking one would stall every request
        queued behind it on the shared connection.
        """
        if not self.multiplexed:
            return self.client()
        loop = asyncio.get_running_loop()
        if loop is self._mux_loop and self._mux is not None:
            return self._mux
        mux = self._muxes.get(loop)
        if mux is None:
            mux = self._new_mux()
            self._muxes[loop] = mux
        self._mux_loop, self._mux = loop, mux
        return mux

    def take_blocking(self) -> MuxClient | None:
        """Return a dedicated connection for one blocking wait (None without multiplexing).

        Give it back with `give_back_blocking`; a connection in an unknown state (the
        wait was interrupted) is aborted instead.
        """
        if not self.multiplexed:
            return None
        idle = self._blocking.setdefault(asyncio.get_running_loop(), [])
        conn = idle.pop() if idle else self._new_mux()
        self._blocking_busy.add(conn)
        return conn

    def _new_mux(self) -> MuxClient:
        locate = None if self._route is None else self._route.locate
        return MuxClient(self._node_url, self._kwargs, locate=locate)

    def give_back_blocking(self, conn: MuxClient, *, healthy: bool) -> None:
        """Return a connection from `take_blocking` (or abort it when not `healthy`)."""
        self._blocking_busy.discard(conn)
        if not healthy:
            conn.abort()
            return
        self._blocking.setdefault(asyncio.get_running_loop(), []).append(conn)

    async def call(
        self,
        what: str,
        fn: Callable[[Any], Awaitable[T]],
        *,
        retry_timeout: float | None = None,
        fast: bool = False,
        blocking: bool = False,
        fail_fast: bool = True,
    ) -> T:
        """Run ``fn(client)`` under the command deadline, retrying what may heal.

        Args:
            what: What is being done, for logs and error messages ("enqueue", ...).
            fn: The operation; it may be run several times, so it must be idempotent
                or covered by leases (a lost dequeue reply leaves jobs leased until
                their lease runs out, never lost).
            retry_timeout: Override of the connector's retry budget in seconds.
            fast: Give `fn` the multiplexed client (non-blocking commands only).
            blocking: `fn` blocks on the server (BLPOP) and bounds its own wait, so
                `command_timeout` does not apply.
            fail_fast: Report a failure on the first contact at once (False: spend
                the retry budget even then, for a consumer that waits anyway).

        Returns:
            What `fn` returned.

        Raises:
            BackendConnectionError: The server cannot be reached or refused us (the
                message says which and what to change).
            BackendError: Redis answered with an error (a bug or a misconfiguration).
        """
        budget = self.retry_timeout if retry_timeout is None else retry_timeout
        deadline: float | None = None
        attempt = 0
        while True:
            try:
                result = await self._attempt(what, fn, fast=fast, blocking=blocking)
            except rexc.RedisError as exc:
                if not _is_transient(exc):
                    raise self._permanent_error(what, exc) from exc
                self._leave_replica(exc, fast=fast)
                last: BaseException = exc
            except (OSError, TimeoutError) as exc:  # ConnectionError, ssl.SSLError
                last = exc
            else:
                self._reached = True
                if self._outage.ongoing:
                    self._outage.back()
                return result
            found = self._diagnose(what, last)
            now_error = self.failure(what, last, fail_fast=fail_fast)
            if now_error is not None:
                raise now_error from last
            now = time.monotonic()
            if deadline is None:
                deadline = now + budget
                self._outage.lost(
                    f"during {what} ({type(last).__name__}: {last}); retrying with backoff"
                )
            if now >= deadline:
                msg = (
                    f"Redis at {self.masked_url} stayed unreachable for {budget:.1f} s "
                    f"during {what} (last: {found.kind}, {type(last).__name__}: {last}). "
                    "Check that the server is running; the operation can be retried."
                )
                raise BackendConnectionError(
                    msg, url=self.masked_url, operation=what, transient=True, reason=found.kind
                ) from last
            # The first retry is immediate: a pooled connection that died with the
            # server fails once and is replaced by a fresh one.
            delay = 0.0 if attempt == 0 else min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** (attempt - 1))
            delay *= 0.5 + random.random() / 2  # noqa: S311 - jitter, not cryptography
            attempt += 1
            await asyncio.sleep(min(delay, max(0.0, deadline - now)))

    async def _attempt(
        self, what: str, fn: Callable[[Any], Awaitable[T]], *, fast: bool, blocking: bool
    ) -> T:
        """One try of `fn`; a missed command deadline raises `CommandDeadline`."""
        client = self.fast_client() if fast else self.client()
        if blocking or self.command_timeout is None:
            return await fn(client)
        timer = asyncio.timeout(None)
        deadline = _Deadline(timer, self.command_timeout)
        try:
            async with timer:
                deadline.arm()
                try:
                    return await fn(client)
                finally:
                    deadline.cancel()
        except TimeoutError as exc:
            if not timer.expired():
                raise
            self._drop_fast(fast)
            msg = f"no reply to {what} within {self.command_timeout:g} s"
            raise CommandDeadline(msg) from exc

    def failure(
        self, what: str, exc: BaseException, *, fail_fast: bool = True
    ) -> BackendConnectionError | None:
        """The error to raise at once for `exc`, or None when retrying is worth it.

        Failures that never heal are raised at once; so are those that could, while
        the server has never answered (with `fail_fast`). Otherwise (an outage of a
        server that answered before) the caller retries within its budget.
        """
        found = self._diagnose(what, exc)
        if found.transient and not (fail_fast and not self._reached):
            return None
        return BackendConnectionError(
            found.message,
            url=self.masked_url,
            operation=what,
            transient=found.transient,
            reason=found.kind,
        )

    def _diagnose(self, what: str, exc: BaseException) -> Diagnosis:
        return diagnose(
            exc,
            url=self.url,
            masked=self.masked_url,
            what=what,
            connect_timeout=self.connect_timeout,
            command_timeout=self.command_timeout,
        )

    def _drop_fast(self, fast: bool) -> None:
        """Drop the multiplexed connection after a command got no reply in time."""
        if fast and self._mux is not None and self._mux_loop is asyncio.get_running_loop():
            self._mux.abort()

    def _leave_replica(self, exc: rexc.RedisError, *, fast: bool) -> None:
        """Drop the multiplexed connection after READONLY (its server was demoted).

        Retrying on the same connection would meet the replica again; a new one asks
        the sentinels (or DNS) where the primary is now.
        """
        if isinstance(exc, rexc.ReadOnlyError):
            self._drop_fast(fast)

    def _permanent_error(self, what: str, exc: rexc.RedisError) -> BackendError:
        found = self._diagnose(what, exc)
        if found.kind in ("auth", "noauth", "noperm", "db", "not_redis", "not_sentinel", "tls"):
            return BackendConnectionError(
                found.message,
                url=self.masked_url,
                operation=what,
                transient=False,
                reason=found.kind,
            )
        msg = (
            f"Redis at {self.masked_url} answered {what} with an error: "
            f"{type(exc).__name__}: {exc}. This is a bug or a server misconfiguration "
            "(e.g. a key of another type under our key prefix); report it with this message."
        )
        return BackendError(msg, url=self.masked_url, operation=what)

    def detached(self, *, retry_timeout: float) -> RedisConnector | None:
        """A connector to the same server with the same options and nothing shared.

        For another thread's event loop (the lease keeper): its connections are its
        own. None when this one uses an injected client, which cannot be copied.
        """
        if self._external is not None:
            return None
        return RedisConnector(
            self.url,
            socket_connect_timeout=self.connect_timeout,
            command_timeout=self.command_timeout,
            retry_timeout=retry_timeout,
            connection_kwargs=self._kwargs,
            multiplex=self.multiplexed,
        )

    def share(self) -> RedisConnector:
        """Count one more user (a queue or store) that closes it with `release`.

        A backend object hands one connector to the queue and to every store it builds
        for the same server, so closing one of them never cuts the connections of the
        others; the connections close when the last user releases them (stores borrowed
        without a queue, as RabbitMQ's ``stores`` option does, included). A release
        too many only closes early: the next call reconnects.
        """
        self._sharers += 1
        return self

    async def release(self) -> None:
        """Give back one `share`; the last one given back closes the connector."""
        self._sharers = max(0, self._sharers - 1)
        if self._sharers == 0:
            await self.close()

    async def close(self) -> None:
        """Close the client of the running loop (an injected client is left open).

        Clients built on other, finished loops cannot be closed from here; they are
        dropped (close the queue inside each loop that used it to release them cleanly).
        """
        self._loop, self._client = None, None
        self._mux_loop, self._mux = None, None
        running = asyncio.get_running_loop()
        client = self._clients.pop(running, None)
        mux = self._muxes.pop(running, None)
        for conn in (*self._blocking.pop(running, ()), *self._blocking_busy):
            conn.abort()
        self._blocking_busy.clear()
        for loop in list(self._clients):
            if loop.is_closed():
                del self._clients[loop]
        if mux is not None:
            await mux.aclose()
        if client is not None:
            await client.aclose()
        if self._route is not None:
            await self._route.close()
