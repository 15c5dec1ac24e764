"""Cross-process wake-ups for one database file: a directory of UNIX datagram sockets.

SQLite has no LISTEN/NOTIFY. Every process that waits on the database (an idle
consumer, a result waiter, a progress subscriber, a lock waiter) binds one datagram
socket in a directory that belongs to the database file. After a commit that may
interest a waiter (a new job, a stored result, a progress change, a released lock),
the writer sends one datagram naming the changed topics to every socket in that
directory. A datagram is a hint, never data: a waiter re-reads the database when it
wakes, and a waiter that missed one (full socket buffer, a platform without UNIX
sockets) still wakes at its bounded poll, which checks ``PRAGMA data_version`` first.

Topics are short strings: ``q:<queue>`` (the queue changed), ``r:<job id>`` (a result
was stored), ``p:<task id>`` (progress changed), ``l:<key>`` (a lock was released).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import secrets
import socket
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import cast

logger = logging.getLogger(__name__)

Callback = Callable[[], None]

_SOCKET_NAME_LENGTH = 18  # "/" + 12 hex digits + ".sock"
_MAX_SOCKET_PATH = 100  # sockaddr_un.sun_path holds 104-108 bytes depending on the OS
_STOP = b"\x00stop"
_MAX_DATAGRAM = 8192
_LISTING_TRUST_AFTER_NS = 50_000_000  # a directory mtime older than 50 ms is settled


def notify_dir(db_path: str) -> Path:
    """The directory whose sockets the waiters of `db_path` bind (created on demand).

    Beside the file (``.<name>-notify``) when the socket paths fit in a socket
    address, else under the temporary directory, named after the file's real path.
    """
    real = Path(db_path).resolve()
    beside = real.parent / f".{real.name}-notify"
    if len(str(beside)) + _SOCKET_NAME_LENGTH <= _MAX_SOCKET_PATH:
        return beside
    digest = hashlib.sha256(str(real).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"lexigram-sqlite-{digest}"


class Notifier:
    """Sends and receives the wake-up datagrams of one database file in one process.

    `publish` runs on the database thread after a commit; subscribers' callbacks run on
    the receiver thread (or the publishing thread for local subscribers), so they must
    be thread-safe (they hand over to their event loop with ``call_soon_threadsafe``).
    """

    def __init__(self, db_path: str) -> None:
        self.directory = notify_dir(db_path)
        self.supported = hasattr(socket, "AF_UNIX")
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[Callback]] = {}
        self._receiver: socket.socket | None = None
        self._receiver_path: str | None = None
        self._thread: threading.Thread | None = None
        self._sender: socket.socket | None = None
        self._listing: tuple[int, list[str]] | None = None
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"Notifier(directory={self.directory!r}, listening={self._receiver is not None})"

    # -- subscribing ------------------------------------------------------------------

    def subscribe(self, topic: str, callback: Callback) -> None:
        """Call `callback` (from any thread) whenever `topic` is published in any process."""
        self._reset_after_fork()
        with self._lock:
            self._subscribers.setdefault(topic, set()).add(callback)
        self._ensure_receiver()

    def unsubscribe(self, topic: str, callback: Callback) -> None:
        """Stop calling `callback` for `topic`."""
        with self._lock:
            found = self._subscribers.get(topic)
            if found is not None:
                found.discard(callback)
                if not found:
                    del self._subscribers[topic]

    def _ensure_receiver(self) -> None:
        if self._receiver is not None or not self.supported:
            return
        with self._lock:
            if self._receiver is not None:  # set by another thread meanwhile
                return  # type: ignore[unreachable]
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                path = str(self.directory / f"{secrets.token_hex(6)}.sock")
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.bind(path)
            except OSError as exc:
                self.supported = False
                logger.warning(
                    "Cannot bind a wake-up socket in %s (%s); idle waiters on this SQLite "
                    "database poll every poll_interval instead.",
                    self.directory,
                    exc,
                )
                return
            self._receiver, self._receiver_path = sock, path
            self._thread = threading.Thread(
                target=self._receive, args=(sock,), name="lexigram-sqlite-notify", daemon=True
            )
            self._thread.start()

    def _receive(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(_MAX_DATAGRAM)
            except OSError:
                return
            if data == _STOP:
                return
            self._dispatch(data.decode(errors="replace").split("\n"))

    def _dispatch(self, topics: Iterable[str]) -> None:
        callbacks: list[Callback] = []
        with self._lock:
            for topic in topics:
                found = self._subscribers.get(topic)
                if found:
                    callbacks.extend(found)
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a subscriber's loop may be closed; the others still wake
                logger.debug("A wake-up callback failed; ignored.", exc_info=True)

    # -- publishing -------------------------------------------------------------------

    def publish(self, topics: Iterable[str]) -> None:
        """Wake the subscribers of `topics` in this process and in every other one."""
        unique = sorted(set(topics))
        if not unique:
            return
        self._dispatch(unique)
        if not self.supported:
            return
        targets = self._targets()
        if not targets:
            return
        sender = self._sender
        if sender is None:
            sender = self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sender.setblocking(False)  # noqa: FBT003 - the socket API's own signature
        for chunk in _chunks(unique):
            for path in targets:
                self._send(sender, chunk, path)

    def _send(self, sender: socket.socket, chunk: bytes, path: str) -> None:
        try:
            sender.sendto(chunk, path)
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOTSOCK):
                # Nobody is bound to it: the process that made it died. Remove it.
                with contextlib.suppress(OSError):
                    Path(path).unlink()
                self._listing = None
            elif exc.errno == errno.ENOENT:
                self._listing = None
            # EAGAIN/ENOBUFS: the receiver's queue is full of wake-ups already.

    def _targets(self) -> list[str]:
        """The other processes' sockets (the listing is cached while the directory is settled)."""
        try:
            stat = self.directory.stat()
        except OSError:
            return []
        cached = self._listing
        if cached is not None and cached[0] == stat.st_mtime_ns:
            return cached[1]
        try:
            entries = list(self.directory.iterdir())
        except OSError:
            return []
        own = self._receiver_path
        paths = [str(entry) for entry in entries if entry.suffix == ".sock" and str(entry) != own]
        # File times have a coarse clock: a socket bound in the same tick as the last
        # change would share the cached mtime, so only a settled directory is cached.
        if time.time_ns() - stat.st_mtime_ns > _LISTING_TRUST_AFTER_NS:
            self._listing = (stat.st_mtime_ns, paths)
        else:
            self._listing = None
        return paths

    # -- lifecycle --------------------------------------------------------------------

    def _reset_after_fork(self) -> None:
        if self._pid == os.getpid():
            return
        # A forked child inherits the parent's socket but not its receiver thread.
        self._pid = os.getpid()
        self._receiver = self._receiver_path = self._thread = self._sender = None
        self._listing = None
        self._lock = threading.Lock()
        self._subscribers = {}

    def close(self) -> None:
        """Stop the receiver thread and remove this process's socket; safe to call twice."""
        sock, path, thread = self._receiver, self._receiver_path, self._thread
        self._receiver = self._receiver_path = self._thread = None
        if sock is not None and path is not None:
            with contextlib.suppress(OSError):
                stopper = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                try:
                    stopper.sendto(_STOP, path)
                finally:
                    stopper.close()
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=1.0)
            sock.close()
            with contextlib.suppress(OSError):
                Path(path).unlink()
        if self._sender is not None:
            self._sender.close()
            self._sender = None


def _chunks(topics: list[str]) -> list[bytes]:
    chunks: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for topic in topics:
        raw = topic.encode()[: _MAX_DATAGRAM - 1]
        if current and size + len(raw) + 1 > _MAX_DATAGRAM:
            chunks.append(b"\n".join(current))
            current, size = [], 0
        current.append(raw)
        size += len(raw) + 1
    if current:
        chunks.append(b"\n".join(current))
    return chunks


class TopicWaiter:
    """The wake-ups of one topic for the waiters of one object (a queue's idle consumers).

    `generation` counts the wake-ups: a waiter that sees it move while it was querying
    looks again at once instead of waiting.

    Args:
        notifier: The database file's notifier.
        topic: The topic to wake on.
    """

    def __init__(self, notifier: Notifier, topic: str) -> None:
        self._notifier = notifier
        self._topic = topic
        self.generation = 0
        self._wake: asyncio.Event | None = None
        self._sub_loop: asyncio.AbstractEventLoop | None = None

    def subscribe(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake waiters on `loop` from now on (once per loop; a new loop replaces the old)."""
        if self._sub_loop is loop:
            return
        if self._sub_loop is not None:
            self._notifier.unsubscribe(self._topic, self._notified)
        self._sub_loop = loop
        self._wake = asyncio.Event()
        self._notifier.subscribe(self._topic, self._notified)

    def _notified(self) -> None:
        loop = self._sub_loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._on_wake)

    def _on_wake(self) -> None:
        self.generation += 1
        if self._wake is not None:
            self._wake.set()

    async def wait(self, seconds: float) -> bool:
        """Wait up to `seconds` for a wake-up; True if one came (since the last wait)."""
        wake = self._wake
        if wake is None:
            await asyncio.sleep(seconds)
            return False
        if wake.is_set():
            wake.clear()
            return True
        try:
            async with asyncio.timeout(seconds):
                await wake.wait()
        except TimeoutError:
            return False
        wake.clear()
        return True

    def close(self) -> None:
        """Stop listening, and wake a waiter still waiting."""
        if self._sub_loop is not None:
            self._notifier.unsubscribe(self._topic, self._notified)
        if self._wake is not None:
            self._wake.set()


def data_version(conn: sqlite3.Connection) -> int:
    """``PRAGMA data_version``: changes whenever another connection commits."""
    return int(cast(tuple[int], conn.execute("PRAGMA data_version").fetchone())[0])
