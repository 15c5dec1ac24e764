"""A ``def`` handler still running when the drain ends does not keep the worker alive.

Python cannot stop a thread. The worker requeues the job of a handler that outlived
``--shutdown-timeout`` and exits 0 then, as documented, instead of the interpreter
waiting at exit for the thread (which ran the job on beside the next worker's copy).
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from click.testing import CliRunner

from lexigram.tasks.cli import cli

APP = """
import logging
import time

from lexigram.tasks import task


@task
def stuck() -> None:
    logging.getLogger("stuck").warning("handler started")
    time.sleep(60)
"""


def test_a_stuck_def_handler_is_requeued_and_the_worker_exits_at_the_timeout(
    sqlite_config: Path, write_app, cli_process
) -> None:
    app = write_app(APP)
    config = ["--config", str(sqlite_config)]
    enqueued = CliRunner().invoke(cli, ["enqueue", "stuck", *config])
    assert enqueued.exit_code == 0, enqueued.output
    job_id = enqueued.stdout.strip()
    worker = cli_process("worker", app, *config, "--shutdown-timeout", "1", "--log-level", "info")
    worker.wait_for(r"handler started")
    began = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(timeout=30) == 0
    assert time.monotonic() - began < 10  # not the handler's 60 s
    worker.wait_for(r"1 def handler thread\(s\) still running after the shutdown")
    status = CliRunner().invoke(cli, ["job", "status", job_id, "--json", *config])
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["status"] in {"pending", "retrying"}
