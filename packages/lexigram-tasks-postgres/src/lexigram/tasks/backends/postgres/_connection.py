"""Connections: shared pools, retries across connection loss, and the LISTEN connection.

- One asyncpg pool per (event loop, DSN, pool settings) is shared, reference-counted, by
  every queue and store of a process; the last `close` closes it.
- The first connection fails at once with a `BackendConnectionError` that says what is
  wrong (refused, login rejected, unknown database, TLS, no answer within the connect
  timeout) and how to fix it; only a server that is starting or shutting down, or out
  of connection slots, is waited for.
- `Database.run` executes an operation on a pooled connection and retries it with
  exponential backoff when the connection is lost or the server is restarting. asyncpg
  replaces a dead pooled connection on the next acquire, so a retry after a PostgreSQL
  restart gets a fresh one. Operations handed to `run` are idempotent by construction
  (inserts use ``ON CONFLICT``, acks delete by id...), which makes the retry safe.
- `Listener` owns one dedicated connection per (event loop, DSN) that LISTENs on every
  channel a consumer cares about. When that connection dies it reconnects with backoff,
  LISTENs again and calls every subscriber with None ("re-check now"), because
  notifications sent while it was down are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from lexigram.contracts.tasks import (
    BackendConnectionError,
    ServerOutage,
    TaskValidationError,
    mask_url,
)
from lexigram.tasks.backends.postgres._diagnose import (
    SchemaMissingError,
    connect_error,
    connection_error,
    one_line,
    refusal_error,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
NotifyCallback = Callable[[str | None], None]
Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"
"""A connection an operation runs on: a pooled proxy or a plain connection."""

# Errors after which the same operation may succeed on another connection or a moment later.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08: connection failures
    asyncpg.exceptions.CannotConnectNowError,  # 57P03: the server is starting up
    asyncpg.exceptions.AdminShutdownError,  # 57P01: the server is shutting down
    asyncpg.exceptions.CrashShutdownError,  # 57P02
    asyncpg.exceptions.TooManyConnectionsError,  # 53300
    asyncpg.exceptions.SerializationError,  # 40001
    asyncpg.exceptions.DeadlockDetectedError,  # 40P01
    asyncpg.InterfaceError,  # "connection is closed" on a connection the server dropped
    # asyncpg's protocol state after the server killed the session mid-way
    # ("cannot switch to state 12; another operation is in progress").
    asyncpg.exceptions.InternalClientError,
    # 55000 on connect: the database does not accept connections now (ALLOW_CONNECTIONS
    # false during maintenance); it will again.
    asyncpg.exceptions.ObjectNotInPrerequisiteStateError,
)
# The server answered, and refused to this role or session: no retry can help.
REFUSED_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.InsufficientPrivilegeError,  # 42501
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # 25006
)
# Transient errors after which the connection itself is still sound.
_CONNECTION_OK_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
)
# What an operation may raise with its connection still fit for the pool: those, and a
# schema refused under `must_exist` (an OSError by its base class, yet the server answered).
_SOUND_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    *_CONNECTION_OK_ERRORS,
    SchemaMissingError,
)

_SERVER_SETTINGS = {
    "application_name": "lexigram-tasks",
    # The queue's statements are short; JIT compilation only adds latency to them.
    "jit": "off",
}
_PROBE_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, asyncpg.PostgresError)
_BACKOFF_FIRST = 0.2
_BACKOFF_MAX = 3.0
_LISTENER_HEALTH_INTERVAL = 15.0


def backoff_delays(attempts: int) -> list[float]:
    """Sleep before each retry: 0.2 s doubling up to 3 s, with +-20 % jitter."""
    delays: list[float] = []
    delay = _BACKOFF_FIRST
    for _ in range(attempts - 1):
        delays.append(delay * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not crypto
        delay = min(delay * 2, _BACKOFF_MAX)
    return delays


async def _keep_session(_conn: asyncpg.Connection[Any]) -> None:
    """Pool release hook: skip asyncpg's reset round trip (RESET ALL, UNLISTEN *...).

    Queue and store statements leave no session state behind (no LISTEN, session
    advisory lock, temp table or SET on pooled connections; every transaction is closed),
    so the default reset would only add a round trip to every operation.
    """


# U+0000 in a text parameter (22021) or a JSON escape jsonb refuses (22P05): the value,
# not the connection, is at fault. Records and payloads are stored NUL-safe (json,
# bytea); this is left for keys and names (ids, lock keys, cache keys...).
_NUL_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.CharacterNotInRepertoireError,
    asyncpg.exceptions.UntranslatableCharacterError,
)


# A server that is starting, shutting down or full: the first connection waits for it.
_WAIT_AT_CONNECT: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
)


# What asyncpg raises while opening a connection (a protocol error from something that
# is not a PostgreSQL server included).
_CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    *TRANSIENT_ERRORS,
    asyncpg.PostgresError,
    ssl.SSLError,
    ValueError,  # a DSN asyncpg cannot parse
)


async def connect_once(dsn: str | None, *, timeout: float = 10.0) -> asyncpg.Connection:
    """Open one connection (for migrations and the LISTEN connection).

    Raises:
        BackendConnectionError: The server cannot be reached or refuses the login (the
            message says which, see `connect_error`).
    """
    try:
        conn: asyncpg.Connection = await asyncio.wait_for(
            asyncpg.connect(dsn, timeout=timeout, server_settings=_SERVER_SETTINGS),
            timeout + 1.0,
        )
    except _CONNECT_ERRORS as exc:
        raise connect_error(dsn, exc, timeout=timeout) from exc
    return conn


@dataclass(slots=True)
class _SharedPool:
    pool: asyncpg.Pool
    outage: ServerOutage
    refs: int = 0


@dataclass(slots=True)
class _LoopState:
    pools: dict[tuple[object, ...], _SharedPool] = field(default_factory=dict)
    listeners: dict[str | None, Listener] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


# Pools and listeners are bound to the loop that created them.
_STATE: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
    weakref.WeakKeyDictionary()
)


def _loop_state() -> _LoopState:
    loop = asyncio.get_running_loop()
    state = _STATE.get(loop)
    if state is None:
        state = _STATE[loop] = _LoopState()
    return state


def pool_of(provider: Any) -> asyncpg.Pool | None:
    """Accept an asyncpg pool, or an object exposing one as ``.pool``."""
    if provider is None:
        return None
    if isinstance(provider, str):  # never echoed: it may be a DSN with its password
        msg = (
            "PostgresTaskQueue's provider (its second argument) is a string, not an asyncpg "
            "pool. Pass the queue name as queue_name=... and the DSN first or as dsn=...."
        )
        raise TypeError(msg)
    pool = provider if isinstance(provider, asyncpg.Pool) else getattr(provider, "pool", None)
    if not isinstance(pool, asyncpg.Pool):
        msg = (
            f"PostgresTaskQueue provider {type(provider).__name__} is neither an asyncpg pool "
            "nor an object with an asyncpg pool in `.pool`. Pass provider=<asyncpg.Pool> or a DSN."
        )
        raise TypeError(msg)
    return pool


async def _attempt(pool: asyncpg.Pool, operation: Callable[[Conn], Awaitable[T]]) -> T:
    """Run `operation` once on a pooled connection, terminating it if it may be broken."""
    async with pool.acquire() as conn:
        try:
            return await operation(conn)
        except _SOUND_CONNECTION_ERRORS:
            raise
        except TRANSIENT_ERRORS:
            # Never hand a possibly broken session back to the pool: the pool opens a
            # fresh connection in its place on the next acquire. (asyncpg may already
            # have released a connection it saw die.)
            with contextlib.suppress(asyncpg.InterfaceError):
                conn.terminate()
            raise


class Database:
    """A handle on a (shared) pool with retrying execution.

    Args:
        dsn: DSN for the pool and for `Listener`; None uses libpq's environment.
        min_size: Pool minimum size.
        max_size: Pool maximum size.
        command_timeout: Per-statement timeout in seconds.
        connect_timeout: Seconds to wait for a new connection.
        max_attempts: Attempts per operation before `BackendConnectionError`.
        pool: An application's pool to use instead of a shared one (never closed here).
    """

    def __init__(
        self,
        dsn: str | None,
        *,
        min_size: int = 1,
        max_size: int = 2,
        command_timeout: float = 60.0,
        connect_timeout: float = 10.0,
        max_attempts: int = 5,
        pool: asyncpg.Pool | None = None,
    ) -> None:
        self.dsn = dsn
        self._key = (dsn, min_size, max_size, command_timeout, connect_timeout)
        self._min_size = min_size
        self._max_size = max_size
        self._command_timeout = command_timeout
        self._connect_timeout = connect_timeout
        self.max_attempts = max_attempts
        self._external = pool
        self._shared: _SharedPool | None = None
        self._closed = False
        # Its pool's outage record: a shared pool takes that of the handle that opened it.
        self._own_outage = ServerOutage(logger, f"PostgreSQL at {self.masked_dsn}")

    @property
    def masked_dsn(self) -> str:
        """The DSN with its password masked."""
        return "(libpq environment)" if self.dsn is None else mask_url(self.dsn)

    async def pool(self) -> asyncpg.Pool:
        """Return the pool, creating (or joining) the shared one on first use."""
        if self._external is not None:
            return self._external
        if self._shared is not None:
            return self._shared.pool
        if self._closed:
            msg = (
                f"This PostgreSQL handle on {self.masked_dsn} was closed. Create a new "
                "queue or store instead of reusing a closed one."
            )
            raise BackendConnectionError(msg)
        state = _loop_state()
        async with state.lock:
            shared = state.pools.get(self._key)
            if shared is None:
                pool = await self._create_pool()
                shared = state.pools[self._key] = _SharedPool(pool, self._own_outage)
            shared.refs += 1
            self._shared = shared
        return shared.pool

    async def _create_pool(self) -> asyncpg.Pool:
        """Open the pool; fail at once with the cause unless the server is only busy.

        A refused connection, a rejected login, an unknown database, a TLS failure or no
        answer within `connect_timeout` will not go away by itself: it is reported at
        once. A server that is starting, shutting down or out of connection slots is
        tried again with backoff, `max_attempts` times in all.
        """
        delays = backoff_delays(self.max_attempts)
        attempt = 0
        while True:
            try:
                # The pool opens min_size connections, each bounded by the connect
                # timeout; the outer bound also covers a pool that never gets there.
                return await asyncio.wait_for(
                    asyncpg.create_pool(
                        self.dsn,
                        min_size=self._min_size,
                        max_size=self._max_size,
                        command_timeout=self._command_timeout,
                        timeout=self._connect_timeout,
                        server_settings=_SERVER_SETTINGS,
                        reset=_keep_session,
                    ),
                    self._connect_timeout + 1.0,
                )
            except _WAIT_AT_CONNECT as exc:
                if attempt >= len(delays):
                    raise connect_error(self.dsn, exc, timeout=self._connect_timeout) from exc
                delay = delays[attempt]
                attempt += 1
                logger.warning(
                    "PostgreSQL at %s cannot take a connection now (%s); retrying in %.1f s.",
                    self.masked_dsn,
                    one_line(exc),
                    delay,
                )
                await asyncio.sleep(delay)
            except _CONNECT_ERRORS as exc:
                raise connect_error(self.dsn, exc, timeout=self._connect_timeout) from exc

    async def run(self, operation: Callable[[Conn], Awaitable[T]], what: str) -> T:
        """Run `operation` on a pooled connection, retrying transient failures.

        Args:
            operation: Coroutine function taking the connection; must be idempotent.
            what: Verb phrase for the error message ("enqueue a job").

        Raises:
            BackendConnectionError: Every attempt failed on a transient error, or
                `operation` raised a `SchemaMissingError` (raised at once, not retried).
            TaskValidationError: A key or name sent holds U+0000 (text cannot store it).
        """
        delays = backoff_delays(self.max_attempts)
        attempt = 0
        while True:
            pool = await self.pool()  # a failed first connection raises from here
            try:
                result = await _attempt(pool, operation)
            except SchemaMissingError:
                raise  # the server answered: a retry would get the same answer
            except REFUSED_ERRORS as exc:
                raise refusal_error(self.dsn, what, exc) from exc
            except _NUL_ERRORS as exc:
                msg = (
                    f"PostgreSQL cannot {what}: a key or name holds U+0000 (NUL), which a "
                    f"text column cannot store ({one_line(exc)}). Remove the NUL character."
                )
                raise TaskValidationError(msg) from exc
            except TRANSIENT_ERRORS as exc:
                if self._closed or attempt >= len(delays):
                    raise connection_error(self.dsn, what, exc) from exc
                delay = delays[attempt]
                attempt += 1
                self._note_outage(what, exc, f"retry {attempt}/{len(delays)} in {delay:.2f} s")
                await asyncio.sleep(delay)
            else:
                outage = self._outage()
                if outage.ongoing:
                    outage.back()
                return result

    def _outage(self) -> ServerOutage:
        """The outage record of this handle's pool (shared by every handle on it)."""
        shared = self._shared
        return self._own_outage if shared is None else shared.outage

    def _note_outage(self, what: str, exc: BaseException, retry: str) -> None:
        """One WARNING when the server stops answering; each retry after it at DEBUG."""
        cause = f"{type(exc).__name__}: {one_line(exc)}"
        if not self._outage().lost(f"(could not {what}: {cause}); retrying with backoff"):
            logger.debug(
                "PostgreSQL at %s: could not %s (%s); %s.", self.masked_dsn, what, cause, retry
            )

    async def close(self) -> None:
        """Release this handle; the shared pool closes when its last user releases it."""
        self._closed = True
        shared, self._shared = self._shared, None
        if shared is None:
            return
        shared.refs -= 1
        if shared.refs > 0:
            return
        state = _loop_state()
        for key, value in list(state.pools.items()):
            if value is shared:
                del state.pools[key]
        closed = False
        with contextlib.suppress(*TRANSIENT_ERRORS):
            await asyncio.wait_for(shared.pool.close(), timeout=10.0)
            closed = True
        if not closed:  # close() timed out or failed: stop it hard
            shared.pool.terminate()


class Listener:
    """One LISTEN connection per (loop, DSN), shared by every subscriber in the process.

    Obtain it with `Listener.acquire` and give it back with `release`.
    """

    def __init__(self, dsn: str | None, connect_timeout: float) -> None:
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._subs: dict[str, set[NotifyCallback]] = {}
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._refs = 0
        self._closed = False
        self._reconnect_task: asyncio.Task[None] | None = None
        self._health_task: asyncio.Task[None] | None = None

    @classmethod
    async def acquire(cls, dsn: str | None, connect_timeout: float = 10.0) -> Listener:
        """Return the shared listener for `dsn` on the running loop (one more reference)."""
        state = _loop_state()
        listener = state.listeners.get(dsn)
        if listener is None:
            listener = state.listeners[dsn] = cls(dsn, connect_timeout)
        listener._refs += 1
        return listener

    @property
    def connected(self) -> bool:
        """Whether the LISTEN connection is up right now."""
        return self._conn is not None and not self._conn.is_closed()

    async def subscribe(self, channel: str, callback: NotifyCallback) -> None:
        """Call `callback(payload)` for every NOTIFY on `channel` (None after a reconnect).

        If the server is unreachable the subscription is kept and LISTENed on reconnect;
        no error is raised (consumers have their safety-net poll meanwhile).
        """
        first = channel not in self._subs
        self._subs.setdefault(channel, set()).add(callback)
        async with self._lock:
            if not self.connected:
                if not await self._connect_locked():
                    self._schedule_reconnect()
                return
            if first:
                conn = self._conn
                assert conn is not None  # noqa: S101 - connected checked above
                try:
                    await conn.add_listener(channel, self._on_notify)
                except TRANSIENT_ERRORS as exc:
                    logger.warning("LISTEN %s failed (%s); reconnecting.", channel, exc)
                    self._schedule_reconnect()

    async def unsubscribe(self, channel: str, callback: NotifyCallback) -> None:
        """Stop calling `callback` for `channel` (UNLISTEN when it was the last one)."""
        callbacks = self._subs.get(channel)
        if callbacks is None:
            return
        callbacks.discard(callback)
        if callbacks:
            return
        del self._subs[channel]
        async with self._lock:
            if self.connected:
                conn = self._conn
                assert conn is not None  # noqa: S101 - connected checked above
                with contextlib.suppress(*TRANSIENT_ERRORS):
                    await conn.remove_listener(channel, self._on_notify)

    async def release(self) -> None:
        """Drop one reference; the connection closes with the last one."""
        self._refs -= 1
        if self._refs > 0:
            return
        self._closed = True
        state = _loop_state()
        if state.listeners.get(self._dsn) is self:
            del state.listeners[self._dsn]
        for task in (self._reconnect_task, self._health_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(*TRANSIENT_ERRORS):
                await asyncio.wait_for(conn.close(), timeout=5.0)
            if not conn.is_closed():
                conn.terminate()

    # -- internals ------------------------------------------------------------------

    def _on_notify(self, _conn: Conn, _pid: int, channel: str, payload: object) -> None:
        for callback in list(self._subs.get(channel, ())):
            callback(str(payload))

    def _on_terminate(self, conn: object) -> None:
        if conn is self._conn and not self._closed:
            where = "(libpq environment)" if self._dsn is None else mask_url(self._dsn)
            logger.warning("PostgreSQL LISTEN connection to %s was lost; reconnecting.", where)
            self._conn = None
            self._schedule_reconnect()

    async def _connect_locked(self) -> bool:
        """Connect and LISTEN on every channel; False if the server is unreachable."""
        try:
            conn = await connect_once(self._dsn, timeout=self._connect_timeout)
        except BackendConnectionError:
            return False
        try:
            for channel in list(self._subs):
                await conn.add_listener(channel, self._on_notify)
        except TRANSIENT_ERRORS:
            conn.terminate()
            return False
        conn.add_termination_listener(self._on_terminate)
        self._conn = conn
        if self._health_task is None or self._health_task.done():
            self._health_task = asyncio.create_task(self._watch_health())
        return True

    def _schedule_reconnect(self) -> None:
        if self._closed or (self._reconnect_task is not None and not self._reconnect_task.done()):
            return
        self._reconnect_task = asyncio.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = _BACKOFF_FIRST
        while not self._closed:
            async with self._lock:
                if self.connected or await self._connect_locked():
                    break
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX)
        if self._closed:
            return
        # Notifications sent while the connection was down are lost: make every
        # subscriber look again.
        for callbacks in list(self._subs.values()):
            for callback in list(callbacks):
                callback(None)

    async def _watch_health(self) -> None:
        """Catch a silently dead connection (no FIN from the server) with a probe."""
        while not self._closed:
            await asyncio.sleep(_LISTENER_HEALTH_INTERVAL)
            async with self._lock:
                conn = self._conn
                if conn is None or conn.is_closed():
                    continue
                try:
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), timeout=5.0)
                except _PROBE_ERRORS:
                    logger.warning("PostgreSQL LISTEN connection failed its health probe.")
                    conn.terminate()
                    self._on_terminate(conn)


def payload_delay(payload: str | None) -> float | None:
    """Seconds-from-now carried by a NOTIFY payload ('' = ready now, None = reconnect)."""
    if not payload:
        return None
    try:
        return float(payload)
    except ValueError:
        return None
