"""A pluggy plugin installed as an entry point sees every hook of ``lexigram-tasks worker``.

The plugin is a real installed distribution (``tests-integration/plugins/hook_recorder``,
a ``dist-info`` with an entry point in ``lexigram.tasks.plugins``) on the worker
process's ``PYTHONPATH``; the worker runs as its own process on Redis.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from lexigram.tasks.cli import cli

pytestmark = pytest.mark.redis

PLUGIN_DIST = Path(__file__).parents[1] / "plugins" / "hook_recorder"

APP = """
from lexigram.tasks import task


@task
async def ok() -> str:
    return "ok"


@task(max_retries=0)
async def boom() -> None:
    raise RuntimeError("boom")


@task
async def spawn() -> str:
    await ok.delay()
    return "spawned"
"""


def test_entry_point_plugin_sees_every_hook_of_a_worker_process(
    redis_config: Path,
    write_app,
    cli_process,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = write_app(APP)
    log = tmp_path / "hooks.log"
    monkeypatch.setenv("LEXI_HOOK_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(PLUGIN_DIST), os.environ["PYTHONPATH"]]))
    for name in ("boom", "spawn"):
        result = CliRunner().invoke(cli, ["enqueue", name, "--config", str(redis_config)])
        assert result.exit_code == 0, result.output

    worker = cli_process(
        "worker", app, "--config", str(redis_config), "--burst", "--log-level", "info"
    )
    worker.wait_for(r"plugins hook-recorder")
    assert worker.process.wait(timeout=60) == 0

    calls = [line.split() for line in log.read_text().splitlines()]
    seen = {(hook, task) for hook, task, _ in calls}
    assert ("after_enqueue", "ok") in seen  # spawn's ok.delay() inside the worker
    assert ("before_execute", "spawn") in seen
    assert ("after_execute", "spawn") in seen
    assert ("before_execute", "ok") in seen
    assert ("after_execute", "ok") in seen
    assert ("before_execute", "boom") in seen
    assert ("after_failure", "boom") in seen
    assert {hook for hook, _ in seen} == {
        "after_enqueue",
        "before_execute",
        "after_execute",
        "after_failure",
    }
