"""The event loop every CLI command runs on: timers that fire on time on Linux.

asyncio's default loop on Linux waits in `epoll_wait`, whose timeout is in whole
milliseconds; `selectors.EpollSelector` rounds each wait up to the next one so that a timer
never fires early. So every `asyncio.sleep`, poll interval and timeout fires up to a
millisecond late: on average half of one per wait, which a worker running jobs that sleep
pays once per job and a slot (20 jobs of `sleep(0.05)` in a row: about 10 ms). The CLI's
loop waits on the epoll descriptor itself through `select()` instead, whose timeout is in
microseconds, then collects the ready events without waiting: the same wake-ups, on time,
for one more system call per wait that has a timeout.

Elsewhere (macOS' kqueue, Windows) the default selector's timeout is already fine-grained,
and the default loop is kept.
"""

from __future__ import annotations

import asyncio
import select
import selectors
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from lexigram.tasks.cli._errors import release_held

_T = TypeVar("_T")

# `select()` takes descriptors below FD_SETSIZE only; an epoll descriptor above it (a
# process that opened a thousand files before the loop) keeps epoll's own rounding.
_FD_SETSIZE = 1024

if sys.platform == "linux":

    class PreciseEpollSelector(selectors.EpollSelector):
        """An `EpollSelector` whose timed waits end on time, not at the next millisecond."""

        def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            """Wait up to `timeout` seconds (None: no limit) for ready descriptors."""
            if timeout is not None and timeout > 0:
                descriptor = self.fileno()
                if descriptor < _FD_SETSIZE:
                    # The epoll descriptor is readable once one of those it watches is.
                    select.select([descriptor], [], [], timeout)
                    timeout = 0
            return super().select(timeout)

    def new_event_loop() -> asyncio.AbstractEventLoop:
        """A new event loop waiting through `PreciseEpollSelector`."""
        return asyncio.SelectorEventLoop(PreciseEpollSelector())

else:

    def new_event_loop() -> asyncio.AbstractEventLoop:
        """A new event loop: asyncio's default, whose selector waits precisely already."""
        return asyncio.new_event_loop()


def run_async(main: Coroutine[Any, Any, _T]) -> _T:
    """Run `main` to completion on a new loop of `new_event_loop()`, as `asyncio.run` does.

    The command goes on past its configuration here: the findings held back until its
    error would have reported them are logged now (`release_held`).
    """
    release_held()
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)
