"""``worker -w 2`` on Redis: a SIGKILL storm, and ``--burst`` across processes.

The OOM killer or an operator killing a worker process is not a broken app: the supervisor
restarts the killed slot (with a pause that grows) however often it happens, and never stops
the healthy sibling. With ``--burst`` every process drains the shared queue, then the
supervisor exits 0.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from lexigram.tasks.cli import cli

pytestmark = [pytest.mark.redis, pytest.mark.slow]

RECORD_APP = """
import os
from pathlib import Path

from lexigram.tasks import task


@task
async def record(n: int) -> int:
    Path(DONE_DIR, f"{n}.done").write_text(str(os.getpid()))
    return n
"""

STARTED = r"Started worker process (\d) \(pid (\d+)\)"
KILLS = 6  # more than the five start-up failures after which the old supervisor gave up


@pytest.mark.timeout(120)
def test_sigkill_storm_on_the_newest_child_keeps_the_pool_running_and_processing(
    redis_config: Path, write_app, cli_process, tmp_path: Path
) -> None:
    done = tmp_path / "done"
    done.mkdir()
    app = write_app(RECORD_APP.replace("DONE_DIR", repr(str(done))))
    pool = cli_process("worker", app, "--config", str(redis_config), "-w", "2")
    pids = dict(pool.wait_for(STARTED).group(1, 2) for _ in range(2))
    newest = int(pids["2"])
    for _ in range(KILLS):
        time.sleep(0.2)  # before the child is ready: what a start-up crash would look like
        os.kill(newest, signal.SIGKILL)
        pool.wait_for(rf"\(pid {newest}\) exited with code -9; restarting it")
        slot, pid = pool.wait_for(STARTED).group(1, 2)
        assert slot == "2"
        newest = int(pid)
    assert pool.process.poll() is None, "the supervisor exited:\n" + "".join(pool.seen)
    pool.wait_for(rf"Worker \S*:{newest} consuming", timeout=60)  # the last one is left alone

    for n in range(20):
        result = CliRunner().invoke(
            cli, ["enqueue", "record", "--args", f"[{n}]", "--config", str(redis_config)]
        )
        assert result.exit_code == 0, result.output
    deadline = time.monotonic() + 60
    while len(list(done.glob("*.done"))) < 20 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sorted(int(p.stem) for p in done.glob("*.done")) == list(range(20))

    assert pool.process.poll() is None
    exited = re.compile(r"Worker process 1 \(pid \d+\) exited")
    restarts_of_slot_1 = [line for line in pool.seen if exited.search(line)]
    assert restarts_of_slot_1 == [], "the healthy sibling was stopped"
    os.kill(int(pids["1"]), 0)  # still the first child of slot 1
    pool.process.send_signal(signal.SIGTERM)
    code = pool.process.wait(timeout=60)
    pool.close()
    assert code == 0, "".join(pool.seen)


@pytest.mark.timeout(120)
def test_burst_with_two_processes_drains_the_shared_queue_and_exits_0(
    redis_config: Path, write_app, cli_process, tmp_path: Path
) -> None:
    done = tmp_path / "done"
    done.mkdir()
    app = write_app(RECORD_APP.replace("DONE_DIR", repr(str(done))))
    for n in range(30):
        result = CliRunner().invoke(
            cli, ["enqueue", "record", "--args", f"[{n}]", "--config", str(redis_config)]
        )
        assert result.exit_code == 0, result.output
    pool = cli_process("worker", app, "--config", str(redis_config), "-w", "2", "--burst")
    code = pool.process.wait(timeout=90)
    pool.wait_for(r"Every worker process found the queues empty \(--burst\); exiting")
    assert code == 0
    assert sorted(int(p.stem) for p in done.glob("*.done")) == list(range(30))
