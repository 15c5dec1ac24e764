"""One scenario's live state: the CLI worker and scheduler processes, the faults, the records.

Workers are the real command, ``lexigram-tasks worker chaos_app --concurrency N``, one process
each (no supervisor: the harness kills and restarts them itself, so it knows every pid it
killed and when). Each writes its JSON log to its own file in the scenario's directory; the
app writes each job run to ``results.log`` there (see ``chaos_app.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
READY = "consuming"  # the worker's log says "Worker host:pid consuming QUEUE on ..."


def cli_command() -> list[str]:
    """The installed ``lexigram-tasks`` next to this interpreter, else ``python -m``."""
    script = Path(sys.executable).with_name("lexigram-tasks")
    if script.exists():
        return [str(script)]
    found = shutil.which("lexigram-tasks")
    return [found] if found else [sys.executable, "-m", "lexigram.tasks.cli"]


def write_config(
    path: Path, kind: str, url: str, queue: str, lease: float, *, extra: dict[str, object]
) -> None:
    """The ``--config`` file of the scenario: backend, queue, lease, backend `extra` options."""
    options: dict[str, object] = {"visibility_timeout": lease, **extra}
    if kind == "redis":
        options["key_prefix"] = queue
    elif kind == "postgres":
        options |= {"schema": queue, "poll_interval": 0.5}
    elif kind == "sqlite":
        url = f"sqlite:///{url}"  # an absolute path: sqlite:////tmp/...
    backend = {"type": kind, "url": url, "queue_name": queue, "options": options}
    # JSON is YAML: no YAML writer needed.
    path.write_text(json.dumps({"tasks": {"backend": backend}}, indent=2))


@dataclass
class Run:
    """The processes and records of one scenario."""

    kind: str
    root: Path
    config: Path
    queue: str
    pause: float
    concurrency: int = 8
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    schedulers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    killed: dict[int, float] = field(default_factory=dict)  # pid -> wall time of its SIGKILL
    logs: dict[int, Path] = field(default_factory=dict)  # worker pid -> its log file
    windows: list[tuple[float, float]] = field(default_factory=list)  # broker faults (wall)

    @property
    def results(self) -> Path:
        """The side channel the app writes each run to."""
        return self.root / "results.log"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env |= {"CHAOS_RESULTS": str(self.results), "CHAOS_PAUSE": str(self.pause)}
        env["PYTHONUNBUFFERED"] = "1"  # a SIGKILLed process's log must hold what it said
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
        return env

    def _start(self, what: str, *extra: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.root / f"{what}-{time.monotonic_ns()}.log"
        command = [
            *cli_command(), what, "chaos_app", "--config", str(self.config),
            "--queue", self.queue, "--log-format", "json", *extra,
        ]  # fmt: skip
        with log.open("wb") as out:
            proc = subprocess.Popen(
                command, cwd=self.root, env=self._env(), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        return proc, log

    def spawn(self) -> tuple[subprocess.Popen[bytes], Path]:
        """Start one worker process (not waiting for it); return it and its log."""
        proc, log = self._start(
            "worker", "--concurrency", str(self.concurrency), "--shutdown-timeout", "5"
        )
        self.logs[proc.pid] = log
        return proc, log

    def ready(self, proc: subprocess.Popen[bytes]) -> bool:
        """True once worker `proc` said it consumes."""
        return READY in self.logs[proc.pid].read_text(errors="replace")

    async def spawn_many(self, count: int) -> list[subprocess.Popen[bytes]]:
        """Start `count` workers at once and wait until every one consumes."""
        started = [self.spawn() for _ in range(count)]
        deadline = time.monotonic() + 60.0
        for proc, log in started:
            while READY not in log.read_text(errors="replace"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-600:]
                    msg = f"a {self.kind} worker did not start (exit {proc.poll()}): {tail}"
                    raise RuntimeError(msg)
                await asyncio.sleep(0.1)
        return [proc for proc, _ in started]

    def start_scheduler(self) -> subprocess.Popen[bytes]:
        """Start one ``lexigram-tasks scheduler chaos_app`` process."""
        proc, log = self._start("scheduler")
        self.logs[proc.pid] = log
        return proc

    def scheduling(self, proc: subprocess.Popen[bytes]) -> bool:
        """True once scheduler `proc` said it runs its schedules."""
        return "Scheduler running" in self.logs[proc.pid].read_text(errors="replace")

    @staticmethod
    def sigkill(proc: subprocess.Popen[bytes]) -> float:
        """SIGKILL `proc`, reap it; return the wall time of the kill."""
        at = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return at

    def kill_one(self, rng: random.Random) -> float | None:
        """SIGKILL a random consuming worker, start a replacement; return the kill's wall time.

        The storm does not wait for the replacement (a supervisor restarts a slot at once too),
        but picks its victim among workers that consume, and only while another one consumes
        (else returns None): on a loaded machine a worker takes seconds to start, and a storm
        that kills workers still importing only measures start-up.
        """
        ready = [i for i, proc in enumerate(self.workers) if self.ready(proc)]
        if len(ready) < 2:  # noqa: PLR2004 - one consuming worker outlives each kill
            return None
        victim = rng.choice(ready)
        proc = self.workers[victim]
        self.killed[proc.pid] = at = self.sigkill(proc)
        with (self.root / "kills.log").open("a") as out:
            out.write(f"kill {proc.pid} {at:.6f}\n")
        self.workers[victim], _ = self.spawn()
        return at

    async def stop_all(self) -> None:
        """SIGTERM (drain) every process; SIGKILL one still running after 20 s."""
        procs = [p for p in [*self.workers, *self.schedulers] if p.poll() is None]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20.0
        # Child processes give no event to await: poll them.
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        for proc in procs:
            if proc.poll() is None:
                self.sigkill(proc)

    def runs(self) -> dict[str, list[tuple[str, int, float]]]:
        """Per job key, its records in order: (``start``/``done``, pid, wall time)."""
        found: dict[str, list[tuple[str, int, float]]] = {}
        if not self.results.exists():
            return found
        for line in self.results.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[0] in {"start", "done"}:  # noqa: PLR2004 - the format
                found.setdefault(parts[1], []).append((parts[0], int(parts[2]), float(parts[3])))
        return found

    def ticks(self) -> dict[str, list[int]]:
        """Per scheduled occurrence (fire time), the pids that ran it."""
        found: dict[str, list[int]] = {}
        if self.results.exists():
            for line in self.results.read_text().splitlines():
                parts = line.split()
                if len(parts) == 4 and parts[0] == "tick":  # noqa: PLR2004 - the format
                    found.setdefault(parts[1], []).append(int(parts[2]))
        return found

    def dead_lettered(self) -> dict[str, str]:
        """Job id -> reason, for every dead-letter line of every worker's JSON log."""
        dead: dict[str, str] = {}
        for log in self.root.glob("worker-*.log"):
            for line in log.read_text(errors="replace").splitlines():
                if "dead-letter" not in line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:  # the last line of a SIGKILLed worker may be cut
                    continue
                job_id = record.get("job_id")
                if job_id and "dead-lettered" in record.get("message", ""):
                    dead[job_id] = str(record.get("reason") or record.get("error", ""))[:80]
        return dead

    def done_after(self, moment: float) -> float | None:
        """Seconds from `moment` (wall) to the first job run that completed after it."""
        first = min(
            (at for recs in self.runs().values() for kind, _, at in recs
             if kind == "done" and at > moment),
            default=None,
        )  # fmt: skip
        return None if first is None else first - moment
