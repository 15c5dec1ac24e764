"""The records `Database` keeps of the calls it runs, and how their outcomes are given back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

logger = logging.getLogger("lexigram.tasks.backends.sqlite._database")

Fn = Callable[[sqlite3.Connection], Any]
Outcome = tuple["Call", bool, Any]


class Call:
    """One function handed to the database, and where its outcome goes (None: nowhere)."""

    __slots__ = ("fn", "future", "loop", "topics", "what", "write")

    def __init__(  # noqa: PLR0917 - a private record built in one place
        self,
        fn: Fn,
        write: bool,
        topics: Sequence[str],
        loop: asyncio.AbstractEventLoop | None,
        future: asyncio.Future[Any] | None,
        what: str,
    ) -> None:
        self.fn = fn
        self.write = write
        self.topics = topics
        self.loop = loop
        self.future = future
        self.what = what


class Missed:
    """The type of `MISSED`."""


MISSED = Missed()
"""What `Database.run_now` returns when the call could not run at once."""


def noop(conn: sqlite3.Connection) -> None:
    """Stands for a call that must not be replayed."""


class BusyError(Exception):
    """Another connection holds the lock this batch needs."""


def settle(outcomes: list[Outcome]) -> None:
    for call, ok, value in outcomes:
        future = call.future
        if future is None:
            if not ok:
                logger.error("SQLite write-behind call to %s failed: %s", call.what, value)
            continue
        if future.done():
            continue  # the caller was cancelled; the work is done anyway
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def early_call(fn: Fn, topics: Sequence[str], what: str) -> Call:
    """The record of a call `Database.run_now` ran: replayed like a write-behind."""
    return Call(fn, True, topics, None, None, what)  # noqa: FBT003 - positional record


def deliver(outcomes: list[Outcome]) -> None:
    """Hand outcomes settled on the database thread back to the loops their callers wait on."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    for outcome in outcomes:
        loop = outcome[0].loop
        if loop is None:
            settle([outcome])  # write-behind: only a failure to log
        else:
            by_loop.setdefault(loop, []).append(outcome)
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
            loop.call_soon_threadsafe(settle, settled)
