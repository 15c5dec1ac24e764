"""Locks on keys that expire: `InMemoryLock`, `LockManager`, `UniqueTask`, `distributed_lock`.

An `InMemoryLock` guards one key inside one process. A hold lasts at most the lock's
timeout: after that the key is free again (auto-release), so a holder that hangs or
forgets to release cannot block the key forever. Waiting is event-driven: each hold
owns an `asyncio.Lock` that stays locked while the hold lasts, and a waiter blocks on
it (bounded by the hold's expiry) instead of polling.

For locks that hold across processes, give `LockManager` a backend's
`LockManagerProtocol` (the Redis and Postgres backends' `create_lock_manager`).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, ParamSpec, Protocol, Self, TypeVar, overload, runtime_checkable

from lexigram.contracts.tasks import LockManagerProtocol, LockProtocol
from lexigram.tasks.execution._cancel import current_entry
from lexigram.tasks.models import BuildsDefault

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")

LockTable = dict[str, tuple[float, asyncio.Lock]]
"""Shared state of a `LockManager`: key -> (hold expiry on the monotonic clock, hold lock)."""


_LONGEST_HOLD = 366 * 24 * 3600.0
"""The longest lock timeout taken: a year. Beyond it the backends' own limits differ (an
infinite hold never expires in memory or SQLite, Redis refuses it, PostgreSQL overflows),
and a hold whose holder died would outlive anyone waiting for it."""


def _positive_timeout(timeout: float, owner: str) -> float:
    if not 0 < timeout <= _LONGEST_HOLD:
        msg = (
            f"{owner} timeout={timeout!r} is not a positive number of seconds up to a year. "
            "Pass the longest a hold may last; the lock is released automatically after it."
        )
        raise ValueError(msg)
    return float(timeout)


class InMemoryLock:
    """In-memory lock for preventing duplicate task execution within a single process.

    Note: this is NOT a distributed lock. For locking across processes or servers, give
    `LockManager` a backend lock manager (Redis or Postgres).

    `acquire` and `try_acquire` never wait; `acquire_wait` and ``async with`` wait. A
    hold is released by `release` or, at the latest, `timeout` seconds after it began.

    Example:
        lock_manager = LockManager()
        async with lock_manager.acquire("user:123:sync", timeout=60):
            await sync_user_data(user_id=123)

    Args:
        key: Unique lock key.
        timeout: Lock timeout in seconds (auto-release).
        locks_dict: Shared locks dictionary (from `LockManager`); a private one if None.
        locks_lock: Shared lock for accessing `locks_dict` (from `LockManager`).

    Raises:
        ValueError: A non-positive timeout.
    """

    def __init__(
        self,
        key: str,
        timeout: float,
        locks_dict: LockTable | None = None,
        locks_lock: asyncio.Lock | None = None,
    ) -> None:
        self.key = key
        self.timeout = _positive_timeout(timeout, f"InMemoryLock {key!r}")
        self._locks: LockTable = {} if locks_dict is None else locks_dict
        self._locks_lock = asyncio.Lock() if locks_lock is None else locks_lock
        self._hold: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"InMemoryLock(key={self.key!r}, timeout={self.timeout!r}, held={self.is_held})"

    @property
    def is_held(self) -> bool:
        """True while this object holds the key and its hold has not expired."""
        entry = self._locks.get(self.key)
        return (
            self._hold is not None
            and entry is not None
            and entry[1] is self._hold
            and entry[0] > time.monotonic()
        )

    async def acquire(self) -> bool:
        """Acquire the lock if it is free, without waiting.

        Returns:
            True if the lock was acquired, False if already held.
        """
        async with self._locks_lock:
            return await self._claim()

    async def try_acquire(self) -> bool:
        """Try to acquire the lock without waiting.

        Returns:
            True if acquired, False if already held.
        """
        return await self.acquire()

    async def acquire_wait(self, timeout: float | None = None) -> bool:
        """Wait up to `timeout` seconds (None: as long as it takes) for the lock.

        A current holder frees the key by releasing it or when its hold expires, so the
        wait never outlasts the holder's timeout by more than scheduling delay.

        Returns:
            True if the lock was acquired, False if `timeout` passed first.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        if self.is_held:
            return True
        while True:
            async with self._locks_lock:
                if await self._claim():
                    return True
                expires_at, hold = self._locks[self.key]
            # Wake when the holder releases (its hold lock is released) or its hold
            # expires, whichever comes first; then compete again.
            wake_at = loop.time() + max(0.0, expires_at - time.monotonic())
            if deadline is not None:
                if loop.time() >= deadline:
                    return False
                wake_at = min(wake_at, deadline)
            await _wait_for_release(hold, wake_at)

    async def release(self) -> None:
        """Release the lock if this object still holds it.

        After the hold expired (and maybe another holder took the key) this does
        nothing: a lock is never released on behalf of someone else.
        """
        async with self._locks_lock:
            hold, self._hold = self._hold, None
            if hold is None:
                return
            entry = self._locks.get(self.key)
            expired = entry is None or entry[1] is not hold or entry[0] <= time.monotonic()
            if expired:
                logger.warning(
                    "Lock %r was held longer than its timeout of %.1f s; the protected "
                    "work may have overlapped with another holder. Raise the timeout.",
                    self.key,
                    self.timeout,
                )
            if entry is not None and entry[1] is hold:
                del self._locks[self.key]
                hold.release()  # wakes the waiters
            # Otherwise a new holder took the expired key and already released `hold`.

    async def __aenter__(self) -> Self:
        await self.acquire_wait()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.release()

    async def _claim(self) -> bool:
        # Caller holds the table lock.
        if self._hold is not None:
            if self.is_held:
                return False  # one object, one hold: acquiring twice means "already held"
            self._hold = None  # our hold expired; compete like anyone else
        entry = self._locks.get(self.key)
        if entry is not None:
            expires_at, stale = entry
            if expires_at > time.monotonic():
                return False
            # Auto-release: the previous hold outlived its timeout. Releasing its hold
            # lock wakes anyone waiting on it.
            if stale.locked():
                stale.release()
        hold = asyncio.Lock()
        await hold.acquire()  # a brand-new lock: taken at once, without suspending
        self._hold = hold
        self._locks[self.key] = (time.monotonic() + self.timeout, hold)
        return True


async def _wait_for_release(hold: asyncio.Lock, wake_at: float) -> None:
    """Wait until `hold` is released or the loop time reaches `wake_at`."""
    try:
        async with asyncio.timeout_at(wake_at):
            await hold.acquire()
    except TimeoutError:
        return
    # Pass the wake-up on: every waiter on this hold re-checks the table.
    hold.release()


@runtime_checkable
class DistributedLockProtocol(LockProtocol, Protocol, metaclass=BuildsDefault):
    """A lock on one key: what every lock (in-memory, Redis, PostgreSQL) exposes.

    Calling it builds the standard in-process lock, `InMemoryLock`, with the same
    arguments (``DistributedLockProtocol(key, timeout, locks_dict, locks_lock)``).
    """


BuildsDefault.defaults[DistributedLockProtocol] = InMemoryLock


class LockManager:
    """Creates locks on keys; all locks it creates share one table.

    Without a backend the locks are `InMemoryLock` objects (one process). With a
    backend's `LockManagerProtocol`, `acquire` delegates to it, so the same code locks
    across processes.

    Example:
        lock_manager = LockManager()
        async with lock_manager.acquire("user:123:sync", timeout=60):
            await sync_user_data(user_id=123)

    Args:
        backend: A backend lock manager for cross-process locks, or None for in-memory.
    """

    def __init__(self, *, backend: LockManagerProtocol | None = None) -> None:
        self._backend = backend
        self._locks: LockTable = {}
        self._locks_lock = asyncio.Lock()

    def __repr__(self) -> str:
        kind = "in-memory" if self._backend is None else type(self._backend).__name__
        return f"LockManager({kind}, held={len(self._locks)})"

    @property
    def backend(self) -> LockManagerProtocol | None:
        """The backend lock manager, or None for in-memory locks."""
        return self._backend

    def acquire(self, key: str, timeout: float = 60.0) -> LockProtocol:
        """Return a lock on `key` that auto-releases `timeout` seconds after it is taken.

        The lock is not taken yet: use ``async with manager.acquire(key):`` to wait for
        it, or call `try_acquire()` / `acquire_wait()` on the result.

        Args:
            key: Unique lock key.
            timeout: Longest a hold may last, in seconds.

        Returns:
            An `InMemoryLock`, or the backend's lock.

        Raises:
            ValueError: A non-positive timeout.
        """
        if self._backend is not None:
            _positive_timeout(timeout, f"Lock {key!r}")
            return self._backend.acquire(key, timeout)
        return InMemoryLock(key, timeout, self._locks, self._locks_lock)

    def held_keys(self) -> list[str]:
        """Return the keys currently held in memory (expired holds excluded)."""
        now = time.monotonic()
        return sorted(key for key, (expires_at, _) in self._locks.items() if expires_at > now)


class UniqueTask:
    """Decorator for unique task execution.

    Prevents duplicate execution of the same task: calls whose `key_func` gives the same
    key never run at the same time. With ``skip_if_locked=True`` a call that finds the
    key held returns None at once without running; with False it waits its turn.

    Example:
        lock_manager = LockManager()

        @unique_task(
            lock_manager=lock_manager,
            key_func=lambda user_id: f"sync_user:{user_id}",
            timeout=3600,
        )
        async def sync_user(user_id: str):
            await sync_user_data(user_id)

    Args:
        lock_manager: `LockManager` instance for creating locks.
        key_func: Function to generate the lock key from the task's arguments (called
            with the same positional and keyword arguments as the task).
        timeout: Lock timeout in seconds (a hold is released after it).
        skip_if_locked: If True, skip execution if the lock is held; if False, wait.
    """

    def __init__(
        self,
        lock_manager: LockManager,
        key_func: Callable[..., str],
        timeout: float = 60.0,
        skip_if_locked: bool = True,
    ) -> None:
        self.lock_manager = lock_manager
        self.key_func = key_func
        self.timeout = _positive_timeout(timeout, "UniqueTask")
        self.skip_if_locked = skip_if_locked

    def __repr__(self) -> str:
        return f"UniqueTask(timeout={self.timeout!r}, skip_if_locked={self.skip_if_locked!r})"

    @overload
    def __call__(
        self, func: Callable[_P, Coroutine[Any, Any, _R]]
    ) -> Callable[_P, Coroutine[Any, Any, _R | None]]: ...

    @overload
    def __call__(self, func: Callable[_P, _R]) -> Callable[_P, Coroutine[Any, Any, _R | None]]: ...

    def __call__(self, func: Callable[_P, Any]) -> Callable[_P, Coroutine[Any, Any, Any]]:
        """Wrap `func` (async or sync; a sync one runs in a thread) in the lock.

        Returns:
            An async function taking the same arguments; it returns `func`'s result, or
            None when skipped because the key was held.
        """
        is_async = inspect.iscoroutinefunction(func)

        @functools.wraps(func)
        async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> Any:
            key = self.key_func(*args, **kwargs)
            lock = self.lock_manager.acquire(key, self.timeout)
            if self.skip_if_locked:
                if not await lock.try_acquire() and not await self._reclaim(lock, func, key):
                    logger.info("Skipped %s: lock %r is held.", _name(func), key)
                    return None
            else:
                await lock.acquire_wait(None)
            try:
                if is_async:
                    return await func(*args, **kwargs)
                return await asyncio.to_thread(func, *args, **kwargs)
            finally:
                await lock.release()

        return wrapper

    async def _reclaim(self, lock: LockProtocol, func: Callable[..., Any], key: str) -> bool:
        """Wait out a hold that may be this very job's, left by a worker that died.

        A job handed out again after its lease ran out (``delivery_count`` above 1) may
        find the key held by its own earlier delivery, whose worker stopped before the
        ``finally`` that releases it. Skipping then would store the job as completed
        without its work ever done; the hold ends within `timeout`, so wait for it. A
        key that another job holds makes this job run after it, never beside it.
        """
        entry = current_entry.get()
        if entry is None or entry.job.delivery_count <= 1:
            return False
        logger.info(
            "%s: lock %r is held and job %s was handed out again (its worker may have "
            "died holding the key); waiting up to %g s for the key instead of skipping.",
            _name(func),
            key,
            entry.job.id,
            self.timeout,
        )
        return await lock.acquire_wait(self.timeout)


def _name(func: Callable[..., Any]) -> str:
    return getattr(func, "__qualname__", repr(func))


def unique_task(
    lock_manager: LockManager,
    key_func: Callable[..., str],
    timeout: float = 60.0,
    skip_if_locked: bool = True,
) -> UniqueTask:
    """Decorator spelling of `UniqueTask` (``@unique_task(...)``, the published spelling).

    Args:
        lock_manager: `LockManager` instance for creating locks.
        key_func: Function to generate the lock key from the task's arguments.
        timeout: Lock timeout in seconds.
        skip_if_locked: If True, skip execution if the lock is held; if False, wait.

    Returns:
        The `UniqueTask` decorator.
    """
    return UniqueTask(lock_manager, key_func, timeout, skip_if_locked)


# One default manager per event loop: asyncio locks belong to the loop that uses them.
_default_managers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LockManager] = (
    weakref.WeakKeyDictionary()
)


def _default_manager() -> LockManager:
    loop = asyncio.get_running_loop()
    manager = _default_managers.get(loop)
    if manager is None:
        manager = _default_managers[loop] = LockManager()
    return manager


@asynccontextmanager
async def distributed_lock(
    key: str, timeout: float = 60.0, lock_manager: LockManager | None = None
) -> AsyncIterator[LockProtocol]:
    """Context manager that waits for a lock on `key` and releases it on exit.

    Deprecated spelling kept from the published API: prefer ``async with manager.acquire(key)``,
    which takes the manager from the DI container. Without `lock_manager`, a default
    manager shared by the running event loop is used, so two calls with one key exclude
    each other.

    Example:
        manager = LockManager()
        async with distributed_lock("resource:123", lock_manager=manager):
            await process_resource(123)

    Args:
        key: Unique lock key.
        timeout: Lock timeout in seconds (auto-release).
        lock_manager: Optional `LockManager` instance.

    Yields:
        The held lock (an `InMemoryLock` unless the manager has a backend).
    """
    manager = lock_manager if lock_manager is not None else _default_manager()
    lock = manager.acquire(key, timeout)
    await lock.acquire_wait(None)
    try:
        yield lock
    finally:
        await lock.release()
