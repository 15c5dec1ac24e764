"""``worker --workers N`` and ``worker --reload``: a parent that supervises worker processes.

Each child is ``python -m lexigram.tasks.cli worker ... --workers 1``, its own process
with its own event loop, started in a new session so that a Ctrl-C in the terminal
reaches only the supervisor, which forwards exactly one SIGTERM per signal it gets:
the first makes every child drain, a second makes them stop hard. A child tells the
supervisor it is ready (consuming) through a pipe, and notices when its supervisor is
gone (its stdin pipe closes) and drains.

Restart policy, one slot at a time (a slot never stops its siblings):

- A child killed from outside (a negative exit status: the OOM killer's or an operator's
  SIGKILL, a SIGTERM) or that dies after it was ready is always restarted: at once the
  first time, then after a pause that doubles up to 10 s while it keeps dying within 10 s
  of its start.
- A child that exits with an error status before it was ready is a crash of the app at
  start-up. After 5 in a row its slot is *crash-looping* and is retried every 30 s while
  another slot runs. When every slot is crash-looping, or the very first children report a
  user error (exit code 2: bad APP, config, unreachable backend), the app cannot start:
  the supervisor says so, stops every child and exits 2.
- With ``--burst`` a child that exits 0 has drained the queues: it is not restarted, and
  the supervisor exits 0 once every child has.

With ``--reload`` the supervisor also watches the APP's source files (modification
times, checked twice a second: no extra dependency) and restarts the children
gracefully when one changes.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from lexigram.tasks.cli._supervised import READY_FD_ENV, SUPERVISED_ENV

logger = logging.getLogger("lexigram.tasks.cli")

_TICK = 0.2  # seconds between looks at the children and the files
_RELOAD_CHECK = 0.5
_MAX_EARLY_EXITS = 5  # error exits in a row before becoming ready: the slot is crash-looping
_USAGE_EXIT = 2  # a child's exit code for a user error (bad APP, config, unreachable backend)
_STABLE_AFTER = 10.0  # a child that ran this long restarts at once if it dies
_BACKOFF_FIRST = 0.5  # the pause before the second quick restart in a row; it doubles
_BACKOFF_MAX = 10.0
_CRASH_LOOP_RETRY = 30.0  # how often a crash-looping slot is tried again while a sibling runs
_KILL_GRACE = 10.0  # extra seconds after the drain timeout before SIGKILL
_IGNORED_DIRS = {"__pycache__", ".git", ".venv", "venv", "node_modules", ".mypy_cache"}


@dataclass(slots=True)
class _Child:
    slot: int
    process: subprocess.Popen[bytes] | None = None
    ready_fd: int | None = None
    ready: bool = False
    started_at: float = 0.0
    early_errors: int = 0  # error exits in a row before becoming ready
    quick_deaths: int = 0  # deaths in a row, each within _STABLE_AFTER of its start
    crash_looping: bool = False
    done: bool = False  # --burst: it drained the queues and exited 0
    restart_at: float | None = None
    exit_code: int | None = None


def snapshot(paths: Sequence[Path]) -> dict[Path, float]:
    """Modification times of the Python and YAML files under `paths` (files or dirs)."""
    times: dict[Path, float] = {}
    for file in _files(paths):
        try:
            times[file] = file.stat().st_mtime
        except OSError:
            continue  # deleted between listing and stat: the next snapshot sees it
    return times


def _files(paths: Sequence[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_file():
            yield path
            continue
        for root, dirs, names in os.walk(path):
            dirs[:] = [d for d in dirs if d not in _IGNORED_DIRS]
            for name in names:
                if name.endswith((".py", ".yaml", ".yml")):
                    yield Path(root, name)


@dataclass(slots=True)
class Supervisor:
    """Starts `count` worker processes and keeps them running until told to stop.

    Args:
        child_args: Arguments after ``python -m lexigram.tasks.cli`` for one child.
        count: Number of worker processes.
        shutdown_timeout: The children's drain timeout (to know when to SIGKILL).
        watch: Paths to watch for ``--reload`` (None: no reloading).
        burst: The children run with ``--burst``: one that exits 0 is done, not restarted.
    """

    child_args: list[str]
    count: int
    shutdown_timeout: float
    watch: list[Path] | None = None
    burst: bool = False
    _children: list[_Child] = field(default_factory=list)
    _signals: int = 0
    _forwarded: int = 0
    _stop_since: float | None = None
    _ever_ready: bool = False

    def run(self) -> int:
        """Supervise until a signal stops the children; return the exit code.

        Returns:
            0 when every child drained cleanly (after a signal, or with ``burst`` once
            the queues are empty), 2 when the app cannot start (a user error the first
            children reported, or every slot crash-looping), 1 otherwise.
        """
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _signals()}
        try:
            self._children = [_Child(slot) for slot in range(1, self.count + 1)]
            for child in self._children:
                self._spawn(child)
            return self._loop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for child in self._children:
                self._close_pipe(child)
                self._close_ready(child)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        del frame
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            logger.warning("Received %s: draining %d worker process(es).", name, self.count)
        else:
            logger.warning("Received %s again: stopping the worker processes now.", name)

    def _loop(self) -> int:
        files = snapshot(self.watch) if self.watch is not None else {}
        next_check = time.monotonic() + _RELOAD_CHECK
        while True:
            now = time.monotonic()
            if self._signals:
                code = self._stopping(now)
                if code is not None:
                    return code
            else:
                failed = self._reap_and_restart(now)
                if failed is not None:
                    return failed
                if self.watch is not None and now >= next_check:
                    next_check = now + _RELOAD_CHECK
                    current = snapshot(self.watch)
                    if current != files:
                        changed = _changed(files, current)
                        files = current
                        logger.warning("Detected a change in %s; restarting the workers.", changed)
                        self._restart_all()
            time.sleep(_TICK)

    def _spawn(self, child: _Child) -> None:
        self._close_ready(child)
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        env = {**os.environ, SUPERVISED_ENV: str(child.slot), READY_FD_ENV: str(write_end)}
        command = [sys.executable, "-m", "lexigram.tasks.cli", *self.child_args]
        try:
            # A new session: the terminal's Ctrl-C reaches the supervisor only.
            child.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                command,
                stdin=subprocess.PIPE,
                env=env,
                start_new_session=True,
                pass_fds=(write_end,),
            )
        finally:
            os.close(write_end)
        child.ready_fd = read_end
        child.ready = False
        child.restart_at = None
        child.started_at = time.monotonic()
        child.exit_code = None
        logger.info("Started worker process %d (pid %d).", child.slot, child.process.pid)

    def _check_ready(self, child: _Child) -> None:
        if child.ready or child.ready_fd is None:
            return
        try:
            data = os.read(child.ready_fd, 1)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            child.ready = True
            child.early_errors = 0
            if child.crash_looping:
                logger.warning("Worker process %d is ready again.", child.slot)
            child.crash_looping = False
            self._ever_ready = True
        self._close_ready(child)

    def _reap_and_restart(self, now: float) -> int | None:
        for child in self._children:
            process = child.process
            if process is not None:
                self._check_ready(child)
                code = process.poll()
                if code is None:
                    continue
                self._check_ready(child)
                self._close_pipe(child)
                child.process = None
                failed = self._on_exit(child, process.pid, code, now)
                if failed is not None:
                    return failed
            if child.process is None and child.restart_at is not None and now >= child.restart_at:
                self._spawn(child)
        if all(child.done for child in self._children):
            logger.info("Every worker process found the queues empty (--burst); exiting.")
            return 0
        return None

    def _on_exit(self, child: _Child, pid: int, code: int, now: float) -> int | None:
        """Decide what a child's exit means: restart it (when), or stop the pool (exit code)."""
        if self.burst and code == 0:
            child.done = True
            logger.info("Worker process %d found the queues empty (--burst).", child.slot)
            return None
        if now - child.started_at >= _STABLE_AFTER:
            child.quick_deaths = 0
        child.quick_deaths += 1
        delay = _backoff(child.quick_deaths)
        if code < 0 or code == 0 or child.ready:
            # Killed from outside (OOM killer, operator), drained on someone else's SIGTERM,
            # or died after it was consuming: not a start-up crash, so always restarted.
            logger.warning(
                "Worker process %d (pid %d) exited with code %d; restarting it%s%s.",
                child.slot,
                pid,
                code,
                f" in {delay:g} s" if delay else "",
                _cause(code),
            )
            child.restart_at = now + delay
            return None
        child.early_errors += 1
        if code == _USAGE_EXIT and not self._ever_ready:
            logger.error(
                "Worker process %d exited with code %d before it was ready; giving up "
                "(its error is printed above).",
                child.slot,
                code,
            )
            return self._give_up()
        if child.early_errors < _MAX_EARLY_EXITS:
            logger.warning(
                "Worker process %d (pid %d) exited with code %d before it was ready; "
                "restarting it%s.",
                child.slot,
                pid,
                code,
                f" in {delay:g} s" if delay else "",
            )
            child.restart_at = now + delay
            return None
        child.crash_looping = True
        if all(sibling.crash_looping for sibling in self._children):
            logger.error(
                "Every worker process exited with an error before it was ready, %d times in a "
                "row (last: process %d, code %d): the app crashes at start-up; giving up "
                "(its error is printed above).",
                child.early_errors,
                child.slot,
                code,
            )
            return self._give_up()
        logger.error(
            "Worker process %d exited with code %d before it was ready, %d times in a row: it "
            "is crash-looping (its error is printed above); trying it again every %g s while "
            "the other worker processes keep running.",
            child.slot,
            code,
            child.early_errors,
            _CRASH_LOOP_RETRY,
        )
        child.restart_at = now + _CRASH_LOOP_RETRY
        return None

    def _give_up(self) -> int:
        self._terminate_all(signal.SIGTERM)
        self._wait_all(self.shutdown_timeout + _KILL_GRACE)
        return _USAGE_EXIT

    def _stopping(self, now: float) -> int | None:
        if self._stop_since is None:
            self._stop_since = now
        while self._forwarded < min(self._signals, 2):
            self._forwarded += 1
            self._terminate_all(signal.SIGTERM)
        if now - self._stop_since > self.shutdown_timeout + _KILL_GRACE:
            self._terminate_all(signal.SIGKILL)
        alive = False
        for child in self._children:
            if child.process is None:
                continue
            code = child.process.poll()
            if code is None:
                alive = True
            elif child.exit_code is None:
                # A child still starting has no handler for the SIGTERM yet: it stopped as asked.
                stopped = code == -signal.SIGTERM and not child.ready
                child.exit_code = 0 if stopped else code
        if alive:
            return None
        codes = [c.exit_code for c in self._children if c.exit_code is not None]
        return 0 if all(code == 0 for code in codes) else 1

    def _restart_all(self) -> None:
        self._terminate_all(signal.SIGTERM)
        self._wait_all(self.shutdown_timeout + _KILL_GRACE)
        for child in self._children:
            self._close_pipe(child)
            child.early_errors = 0
            child.quick_deaths = 0
            child.crash_looping = False
            child.done = False
            self._spawn(child)

    def _terminate_all(self, sig: signal.Signals) -> None:
        for child in self._children:
            process = child.process
            if process is not None and process.poll() is None:
                try:
                    process.send_signal(sig)
                except ProcessLookupError:
                    continue

    def _wait_all(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for child in self._children:
            process = child.process
            if process is None:
                continue
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    @staticmethod
    def _close_ready(child: _Child) -> None:
        if child.ready_fd is not None:
            os.close(child.ready_fd)
            child.ready_fd = None

    @staticmethod
    def _close_pipe(child: _Child) -> None:
        process = child.process
        if process is not None and process.stdin is not None and not process.stdin.closed:
            try:
                process.stdin.close()
            except OSError:
                return


def _backoff(quick_deaths: int) -> float:
    """The pause before a restart: none the first time, then doubling up to the cap."""
    if quick_deaths <= 1:
        return 0.0
    return float(min(_BACKOFF_FIRST * 2 ** (quick_deaths - 2), _BACKOFF_MAX))


def _cause(code: int) -> str:
    """Why a child that is restarted exited, when its status says more than a number."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f" (killed by {name} from outside the supervisor; not counted as a crash)"
    if code == 0:
        return " (it drained after a signal from outside the supervisor)"
    return ""


def _signals() -> list[signal.Signals]:
    return [signal.SIGINT, signal.SIGTERM]


def _changed(before: dict[Path, float], after: dict[Path, float]) -> str:
    paths = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    names = sorted(str(p) for p in paths)
    shown = ", ".join(names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")  # noqa: PLR2004
