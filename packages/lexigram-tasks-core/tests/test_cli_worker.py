"""``worker`` on the memory backend: burst mode, graceful drain, hard stop, supervision, reload."""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import os
import queue as queue_module
import re
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from types import ModuleType
from uuid import uuid4

import click
import pytest
from click.testing import CliRunner

from lexigram.contracts.tasks import Job, JobStatus
from lexigram.tasks import MemoryTaskQueue
from lexigram.tasks._presence import worker_identity
from lexigram.tasks.cli import cli
from lexigram.tasks.cli._worker import WorkerOptions
from lexigram.tasks.cli._worker_run import YOUNG_COLLECTION_THRESHOLD

APP = """
import asyncio
import gc
import os
import signal

from lexigram.tasks import MemoryTaskQueue, TaskProvider

queue = MemoryTaskQueue(queue_name="work")
provider = TaskProvider(queue=queue)
done = []


async def add(a, b):
    done.append(a + b)
    return a + b


async def interrupted(signals):
    # The worker gets SIGTERM (once: drain; twice: hard stop) while this job runs.
    for _ in range(signals):
        os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.sleep(0.3 if signals == 1 else 30)
    done.append("interrupted finished")


async def frozen_objects():
    done.append(gc.get_freeze_count())


async def collector_thresholds():
    done.append(gc.get_threshold())


provider.register_handler("add", add)
provider.register_handler("frozen_objects", frozen_objects)
provider.register_handler("collector_thresholds", collector_thresholds)
provider.register_handler("interrupted", interrupted)
"""


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    name = f"cli_worker_app_{uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module(name)


def enqueue(module: ModuleType, *jobs: Job) -> None:
    async def put() -> None:
        for job in jobs:
            assert (await module.queue.enqueue(job)).is_ok()

    asyncio.run(put())


def count(module: ModuleType, status: JobStatus | None = None) -> int:
    queue: MemoryTaskQueue = module.queue  # APP's
    return asyncio.run(queue.count("work", status))


def worker(module: ModuleType, *args: str):
    return CliRunner().invoke(cli, ["worker", f"{module.__name__}:provider", *args])


def test_worker_burst_runs_every_job_then_exits_0(app_module: ModuleType) -> None:
    enqueue(app_module, *(Job(name="add", args=(n, 1)) for n in range(5)))
    result = worker(app_module, "--burst", "--log-level", "info")
    assert result.exit_code == 0, result.output
    assert sorted(app_module.done) == [1, 2, 3, 4, 5]
    assert count(app_module) == 0
    assert "Queues are empty; stopping (--burst)." in result.stderr
    assert (
        "5 processed: 5 succeeded, 0 retried, 0 dead_lettered, 0 cancelled, 0 released, 0 lost"
        in result.stderr
    )


def test_worker_collects_young_objects_less_often_while_it_runs_and_restores_the_setting(
    app_module: ModuleType,
) -> None:
    before = gc.get_threshold()
    enqueue(app_module, Job(name="collector_thresholds"))
    result = worker(app_module, "--burst")
    assert result.exit_code == 0, result.output
    (during,) = app_module.done
    assert during[0] == max(before[0], YOUNG_COLLECTION_THRESHOLD)
    assert during[1:] == before[1:]
    assert gc.get_threshold() == before


def test_worker_runs_jobs_with_start_up_objects_frozen_and_unfreezes_on_exit(
    app_module: ModuleType,
) -> None:
    before = gc.get_freeze_count()
    enqueue(app_module, Job(name="frozen_objects"))
    result = worker(app_module, "--burst")
    assert result.exit_code == 0, result.output
    # The cyclic collector's full passes skip what start-up built while jobs run...
    assert app_module.done[0] > before
    # ...and a worker run in-process hands it back when the command ends.
    assert gc.get_freeze_count() == before


def test_worker_log_jobs_logs_one_info_line_per_completed_job(app_module: ModuleType) -> None:
    enqueue(app_module, *(Job(name="add", args=(n, 1)) for n in range(3)))
    result = worker(app_module, "--burst", "--log-jobs")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if "(add) completed in" in line]
    assert len(lines) == 3, result.stderr
    assert all("(attempt 1)" in line for line in lines)


def test_worker_log_format_json_writes_one_object_per_line_with_the_job_fields(
    app_module: ModuleType,
) -> None:
    enqueue(app_module, Job(name="add", args=(2, 3)), Job(name="nope"))
    result = worker(app_module, "--burst", "--log-jobs", "--log-format", "json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert records, result.stderr
    assert all({"time", "level", "logger", "message"} <= set(record) for record in records)
    # The process as `inspect` names it: worker ids repeat in every process.
    assert {record["process"] for record in records} == {worker_identity()}
    done = [record for record in records if record.get("outcome") == "completed"]
    assert len(done) == 1, records
    assert done[0]["task"] == "add"
    assert done[0]["attempt"] == 1
    assert done[0]["duration_ms"] >= 0
    assert done[0]["level"] == "info"
    failed = [record for record in records if record.get("outcome") == "failed"]
    assert len(failed) == 1, records
    assert (failed[0]["task"], failed[0]["reason"]) == ("nope", "unknown_task")
    # The option lasts for the command only.
    assert os.environ.get("LEXIGRAM_TASKS_LOG_FORMAT") is None


def test_worker_logs_no_job_lines_by_default(app_module: ModuleType) -> None:
    enqueue(app_module, Job(name="add", args=(1, 1)))
    result = worker(app_module, "--burst", "--log-level", "info")
    assert result.exit_code == 0, result.output
    assert "completed in" not in result.stderr


CONFIGURED_APP = """
from lexigram.tasks import MemoryTaskQueue, TaskConfig, TaskProvider

queue = MemoryTaskQueue(queue_name="work")
config = TaskConfig.from_dict({"worker": {"log_jobs": True, "loop_lag_threshold": 0}})
provider = TaskProvider(queue=queue, config=config)
provider.register_handler("add", lambda a, b: a + b)
"""


def test_worker_log_jobs_comes_from_the_worker_config_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"cli_worker_configured_{uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(CONFIGURED_APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    enqueue(module, Job(name="add", args=(2, 2)))
    result = worker(module, "--burst")
    assert result.exit_code == 0, result.output
    assert "(add) completed in" in result.stderr


def test_worker_sigterm_drains_running_job_and_exits_0(app_module: ModuleType) -> None:
    enqueue(
        app_module,
        Job(name="interrupted", args=(1,), priority=10),
        *(Job(name="add", args=(n, 0)) for n in range(3)),
    )
    result = worker(app_module, "--concurrency", "1", "--shutdown-timeout", "10")
    assert result.exit_code == 0, result.output
    assert app_module.done == ["interrupted finished"]
    assert count(app_module, JobStatus.PENDING) == 3  # nothing new was taken
    assert "Received SIGTERM: draining" in result.stderr


def test_worker_drain_timeout_requeues_the_unfinished_job(app_module: ModuleType) -> None:
    enqueue(app_module, Job(name="interrupted", args=(1,)))
    result = worker(app_module, "--shutdown-timeout", "0.05")
    assert result.exit_code == 0, result.output
    assert app_module.done == []
    assert count(app_module, JobStatus.PENDING) == 1  # nacked back, not lost


def test_worker_second_signal_stops_hard_and_requeues(app_module: ModuleType) -> None:
    enqueue(app_module, Job(name="interrupted", args=(2,)))
    result = worker(app_module, "--shutdown-timeout", "60")
    assert result.exit_code == 1, result.output
    assert "Received SIGTERM again: stopping now." in result.stderr
    assert app_module.done == []
    assert count(app_module, JobStatus.PENDING) == 1


def test_worker_without_handlers_fails_before_starting(tmp_path: Path, monkeypatch) -> None:
    name = f"cli_empty_{uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = CliRunner().invoke(cli, ["worker", name])
    assert result.exit_code == 2
    assert "defines no @task function" in result.stderr


def test_worker_options_round_trip_to_child_arguments() -> None:
    options = WorkerOptions(
        app="m:p",
        backend="redis://h/0",
        config_path="c.yaml",
        queues=("a", "b"),
        concurrency=7,
        workers=3,
        shutdown_timeout=9.0,
        log_level="warning",
        reload=True,
        burst=False,
        connect_timeout=2.0,
        debug=True,
        log_jobs=True,
    )
    args = options.child_args()
    assert args[:4] == ["worker", "m:p", "--workers", "1"]
    assert "--reload" not in args
    context = cli.make_context("lexigram-tasks", list(args))
    assert isinstance(context.command, click.Group)
    sub = context.command.get_command(context, "worker")
    assert sub is not None
    parsed = sub.make_context("worker", args[1:], parent=context).params
    assert parsed["queues"] == ("a", "b")
    assert parsed["concurrency"] == 7
    assert parsed["backend"] == "redis://h/0"
    assert parsed["debug"] is True
    assert parsed["log_jobs"] is True


# -- real processes: supervision and reload -------------------------------------------------


class Lines:
    """Reads a process's stderr on a thread so tests can wait for a line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.seen: list[str] = []
        self._lines: queue_module.Queue[str] = queue_module.Queue()
        assert process.stderr is not None
        self._thread = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self._lines.put(line)

    def close(self) -> None:
        """Kill the process if it still runs, then release its pipe."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._thread.join(timeout=10)
        assert self.process.stderr is not None
        self.process.stderr.close()

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        regex = re.compile(pattern)
        for line in self.seen:
            if (match := regex.search(line)) is not None:
                self.seen.remove(line)
                return match
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue_module.Empty:
                msg = f"no line matched {pattern!r}; saw:\n{''.join(self.seen)}"
                raise AssertionError(msg) from None
            match = regex.search(line)
            if match is not None:
                return match
            self.seen.append(line)


@pytest.fixture
def spawn(tmp_path: Path):
    started: list[Lines] = []

    def start(*args: str) -> tuple[subprocess.Popen[str], Lines]:
        process, lines = _spawn(tmp_path, *args)
        started.append(lines)
        return process, lines

    yield start
    for lines in started:
        lines.close()


def _spawn(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], Lines]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "lexigram.tasks.cli", "worker", *args, "--log-level", "info"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    return process, Lines(process)


@pytest.fixture
def app_file(tmp_path: Path) -> str:
    name = f"cli_worker_proc_{uuid4().hex[:8]}"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text(APP)
    return name


@pytest.mark.slow
def test_worker_processes_are_supervised_reloaded_and_drained(
    spawn, tmp_path: Path, app_file: str
) -> None:
    process, lines = spawn(f"{app_file}:provider", "--workers", "2", "--reload")
    pids = dict(
        lines.wait_for(r"Started worker process (\d) \(pid (\d+)\)").group(1, 2) for _ in range(2)
    )
    for _ in range(2):
        lines.wait_for(r"Worker \S+ consuming work on memory")
    # A dead worker process is restarted.
    os.kill(int(pids["1"]), signal.SIGKILL)
    lines.wait_for(rf"Worker process 1 \(pid {pids['1']}\) exited with code -9; restarting")
    restarted = lines.wait_for(r"Started worker process 1 \(pid (\d+)\)").group(1)
    assert restarted != pids["1"]
    lines.wait_for(r"Worker \S+ consuming work on memory")
    # A source change restarts every worker process gracefully.
    source = tmp_path / app_file / "__init__.py"
    source.write_text(APP + "\n# edited\n")
    stat = source.stat()
    os.utime(source, (stat.st_atime, stat.st_mtime + 5))
    lines.wait_for(r"Detected a change in .*__init__\.py; restarting the workers")
    new = {lines.wait_for(r"Started worker process \d \(pid (\d+)\)").group(1) for _ in range(2)}
    assert not new & {restarted, pids["2"]}
    for _ in range(2):
        lines.wait_for(r"Worker \S+ consuming work on memory")
    # SIGTERM drains every worker process; the supervisor exits 0.
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    lines.wait_for(r"Received SIGTERM: draining 2 worker process")


@pytest.mark.slow
def test_worker_child_that_fails_at_startup_stops_the_supervisor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"cli_bad_child_{uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            import os
            from lexigram.tasks import task

            if os.environ.get("LEXIGRAM_TASKS_SUPERVISED"):
                raise RuntimeError("boom in the child")

            @task
            async def noop() -> None:
                return None
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), *sys.path]))
    # The default backend is SQLite in the working directory, which the supervisor's
    # start-up check opens (the file stays in tmp_path, not in the checkout).
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["worker", name, "--workers", "2"])
    assert result.exit_code == 2
    assert "before it was ready; giving up" in result.stderr
