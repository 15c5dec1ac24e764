"""Two terminals, no configuration: a worker and `lexigram-tasks enqueue` share the default file.

With no ``--backend``, no ``--config`` and no ``LEX_TASKS__*`` variable, both commands use
``lexigram-tasks.db`` in the working directory and say so in their first line; the
running worker is woken by the enqueue of the other process and runs the job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]

APP = """\
from pathlib import Path

from lexigram.tasks import task


@task
async def greet(name: str) -> str:
    with Path("greeted.txt").open("a") as out:
        out.write(f"hello {name}\\n")
    return f"hello {name}"
"""


def _cli() -> str:
    return str(Path(sys.executable).with_name("lexigram-tasks"))


def test_worker_and_enqueue_in_two_processes_share_the_default_file(tmp_path: Path) -> None:
    (tmp_path / "tasks_app.py").write_text(APP)
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("LEX_TASKS__") and name != "LEXIGRAM_TASKS_DB"
    }
    env["PYTHONPATH"] = str(tmp_path)
    with subprocess.Popen(  # noqa: S603 - our own command, fixed arguments
        [_cli(), "worker", "tasks_app"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    ) as worker:
        _run(worker, tmp_path, env)
    assert worker.returncode == 0


def _run(worker: subprocess.Popen[str], tmp_path: Path, env: dict[str, str]) -> None:
    try:
        assert worker.stderr is not None
        first = worker.stderr.readline()
        assert "Using the SQLite database" in first
        assert str(tmp_path / "lexigram-tasks.db") in first
        while "consuming" not in worker.stderr.readline():
            pass
        enqueued = subprocess.run(  # noqa: S603 - our own command, fixed arguments
            [_cli(), "enqueue", "greet", "--args", '["ada"]'],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert enqueued.returncode == 0, enqueued.stderr
        assert "Using the SQLite database" in enqueued.stderr.splitlines()[0]
        greeted = tmp_path / "greeted.txt"
        deadline = time.monotonic() + 10.0
        while not greeted.exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # watching another process's output file
        assert greeted.read_text() == "hello ada\n"
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
