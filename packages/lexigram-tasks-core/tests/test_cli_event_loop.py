"""The CLI's event loop: on Linux its timed waits end on time, and it sees the same events.

`PreciseEpollSelector` waits on the epoll descriptor through `select()` (a microsecond
timeout) instead of epoll's whole milliseconds; these tests hold what it must keep of
`EpollSelector`: it never returns before its timeout with nothing ready, it returns at once
with what is ready, and it falls back to epoll's own wait for a descriptor `select()` cannot
take.
"""

from __future__ import annotations

import asyncio
import selectors
import socket
import sys
import time
from collections.abc import Iterator

import pytest

from lexigram.tasks.cli import _event_loop
from lexigram.tasks.cli._event_loop import new_event_loop, run_async

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="epoll is Linux's")


@pytest.fixture
def selector() -> Iterator[selectors.BaseSelector]:
    precise = _event_loop.PreciseEpollSelector()
    yield precise
    precise.close()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair()
    yield left, right
    left.close()
    right.close()


def test_a_wait_with_nothing_ready_lasts_its_whole_timeout(
    selector: selectors.BaseSelector, pair: tuple[socket.socket, socket.socket]
) -> None:
    selector.register(pair[0], selectors.EVENT_READ)
    for timeout in (0.0004, 0.0023, 0.01):
        started = time.monotonic()
        assert selector.select(timeout) == []
        assert time.monotonic() - started >= timeout


def test_a_ready_descriptor_ends_the_wait_and_is_reported(
    selector: selectors.BaseSelector, pair: tuple[socket.socket, socket.socket]
) -> None:
    key = selector.register(pair[0], selectors.EVENT_READ, data="reader")
    pair[1].send(b"x")
    started = time.monotonic()
    ready = selector.select(30.0)
    assert time.monotonic() - started < 5.0
    assert ready == [(key, selectors.EVENT_READ)]
    assert selector.select(0) == [(key, selectors.EVENT_READ)]  # still unread
    assert selector.select(None) == [(key, selectors.EVENT_READ)]


def test_a_descriptor_select_cannot_take_waits_through_epoll(
    selector: selectors.BaseSelector,
    pair: tuple[socket.socket, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_event_loop, "_FD_SETSIZE", 0)  # as if the descriptor were 1024+
    key = selector.register(pair[0], selectors.EVENT_READ)
    started = time.monotonic()
    assert selector.select(0.002) == []
    assert time.monotonic() - started >= 0.002
    pair[1].send(b"x")
    assert selector.select(30.0) == [(key, selectors.EVENT_READ)]


def test_commands_run_on_the_precise_loop() -> None:
    async def selector_of_the_running_loop() -> object:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.001)
        return getattr(loop, "_selector", None)

    assert isinstance(run_async(selector_of_the_running_loop()), _event_loop.PreciseEpollSelector)
    loop = new_event_loop()
    try:
        assert loop.run_until_complete(asyncio.sleep(0, result=7)) == 7
    finally:
        loop.close()
