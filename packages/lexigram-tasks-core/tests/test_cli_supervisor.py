"""The supervisor of ``worker --workers N``: restart policy, crash loops, external kills, burst.

Every test runs the real command in a subprocess on the memory backend (each child has a queue
of its own, which is all these tests need: they watch processes, not jobs).
"""

from __future__ import annotations

import os
import queue as queue_module
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from lexigram.tasks.cli._supervisor import _backoff

# A healthy app, except in the slot named by CRASH_SLOT ("all": every slot), which exits 3
# at import time in the child (the supervisor's own import of the APP succeeds).
APP = """
import os
import sys

from lexigram.tasks import task

slot = os.environ.get("LEXIGRAM_TASKS_SUPERVISED")
if slot is not None and CRASH_SLOT in (slot, "all"):
    print(f"slot {slot}: the app cannot start", file=sys.stderr)
    sys.exit(3)


@task
async def noop() -> None:
    return None
"""

STARTED = r"Started worker process (\d) \(pid (\d+)\)"
READY = r"Worker \S+ consuming \w+ on memory"


class Supervised:
    """``lexigram-tasks worker APP ...`` as a subprocess, with its stderr read on a thread."""

    def __init__(self, cwd: Path, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cwd), *sys.path])}
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [
                *(sys.executable, "-m", "lexigram.tasks.cli", "worker", *args),
                *("--backend", "memory", "--log-level", "info"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
        )
        self.seen: list[str] = []
        self._lines: queue_module.Queue[str] = queue_module.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """The first line from now on that matches; every line read is kept in ``seen``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue_module.Empty:
                msg = f"no line matched {pattern!r} in {timeout} s; saw:\n{''.join(self.seen)}"
                raise AssertionError(msg) from None
            self.seen.append(line)
            if (match := regex.search(line)) is not None:
                return match

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._thread.join(timeout=10)
        assert self.process.stderr is not None
        self.process.stderr.close()


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator[object]:
    started: list[Supervised] = []

    def start(crash_slot: str, *args: str) -> Supervised:
        name = f"cli_supervised_{uuid4().hex[:8]}"
        source = textwrap.dedent(APP).replace("CRASH_SLOT", repr(crash_slot))
        (tmp_path / f"{name}.py").write_text(source)
        process = Supervised(tmp_path, name, *args)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_backoff_restarts_at_once_then_doubles_up_to_ten_seconds() -> None:
    assert [_backoff(n) for n in range(1, 8)] == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0]


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_burst_with_several_processes_exits_0_once_every_queue_is_empty(supervise) -> None:
    pool = supervise("none", "--workers", "2", "--burst")
    assert pool.process.wait(timeout=45) == 0
    pool.wait_for(r"Every worker process found the queues empty \(--burst\); exiting")
    assert not any("restarting" in line for line in pool.seen)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_sigkill_storm_on_the_newest_child_restarts_it_and_keeps_its_sibling(supervise) -> None:
    pool = supervise("none", "--workers", "2")
    pids = dict(pool.wait_for(STARTED).group(1, 2) for _ in range(2))
    newest = int(pids["2"])
    # SIGKILL before the child is ready, six times in a row: more than the crash-loop limit.
    for _ in range(6):
        time.sleep(0.2)
        os.kill(newest, signal.SIGKILL)
        pool.wait_for(rf"\(pid {newest}\) exited with code -9; restarting it.*SIGKILL")
        slot, pid = pool.wait_for(STARTED).group(1, 2)
        assert slot == "2"
        newest = int(pid)
    assert pool.process.poll() is None
    # The last child of slot 2 is left alone: it becomes ready, and slot 1 never stopped.
    pool.wait_for(READY)
    time.sleep(1.0)
    assert _alive(int(pids["1"]))
    assert _alive(newest)
    assert not any(re.search(r"giving up|crash-looping", line) for line in pool.seen)
    pool.process.send_signal(signal.SIGTERM)
    assert pool.process.wait(timeout=30) == 0


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_one_crash_looping_slot_is_retried_while_its_sibling_keeps_running(supervise) -> None:
    pool = supervise("2", "--workers", "2")
    pool.wait_for(READY)
    pool.wait_for(
        r"Worker process 2 exited with code 3 before it was ready, 5 times in a row: it is "
        r"crash-looping .*trying it again every 30 s while the other worker processes keep",
        timeout=60,
    )
    first = [line for line in pool.seen if re.search(r"Started worker process 1 ", line)]
    assert len(first) == 1, "slot 1 was restarted"
    pid = int(re.search(STARTED, first[0]).group(2))  # type: ignore[union-attr]
    assert _alive(pid)
    assert pool.process.poll() is None
    pool.process.send_signal(signal.SIGTERM)
    assert pool.process.wait(timeout=30) == 0


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_every_slot_crash_looping_stops_the_pool_with_exit_2(supervise) -> None:
    pool = supervise("all", "--workers", "2")
    assert pool.process.wait(timeout=75) == 2
    pool.wait_for(
        r"Every worker process exited with an error before it was ready, 5 times in a row "
        r"\(last: process \d, code 3\): the app crashes at start-up; giving up"
    )
    assert any("the app cannot start" in line for line in pool.seen)
