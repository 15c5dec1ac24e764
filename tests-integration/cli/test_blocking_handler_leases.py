"""A handler that blocks its worker's event loop past the lease runs once, on every backend.

Two ``lexigram-tasks worker`` processes consume one queue whose lease is 2 s; an
``async`` task calls ``time.sleep(5)``. The blocked worker's lease keeper (a thread with
a connection of its own) keeps renewing the lease, so the idle worker never gets the
job: it runs exactly once, completes, and nothing is dead-lettered. The blocked worker
names the job in its blocked-loop warning while the block lasts.
"""

from __future__ import annotations

import asyncio
import importlib
import queue as queue_module
from pathlib import Path

import pytest
import yaml

from lexigram.app import Application
from lexigram.tasks import TaskConfig, TaskProvider

LEASE = 2.0
BLOCK = 5.0

APP = f"""
import time
from pathlib import Path

from lexigram.tasks import task


@task(max_retries=0)
async def blocks_the_loop(marker: str) -> str:
    with Path(marker).open("a") as out:
        out.write("run\\n")
    time.sleep({BLOCK})  # the mistake under test: blocking code in an async task
    return "done"
"""


def _with_lease(config: Path) -> Path:
    data = yaml.safe_load(config.read_text())
    backend = data["tasks"]["backend"]
    backend.setdefault("options", {})["visibility_timeout"] = LEASE
    config.write_text(yaml.safe_dump(data))
    return config


@pytest.fixture(
    params=[
        pytest.param("redis_config", marks=pytest.mark.redis, id="redis"),
        pytest.param("pg_config", marks=pytest.mark.postgres, id="postgres"),
        pytest.param("sqlite_config", id="sqlite"),
    ]
)
def config_path(request: pytest.FixtureRequest) -> Path:
    """The backend's config file (a sync fixture: pg_config migrates with asyncio.run)."""
    return _with_lease(request.getfixturevalue(request.param))


@pytest.mark.slow
async def test_a_handler_blocking_the_loop_past_its_lease_runs_once_across_workers(
    config_path: Path, write_app, cli_process, tmp_path: Path
) -> None:
    name = write_app(APP)
    config = ["--config", str(config_path)]
    workers = [cli_process("worker", name, *config, "--log-level", "info") for _ in range(2)]
    for worker in workers:
        worker.wait_for(r"consuming")
    marker = tmp_path / "runs.txt"
    module = importlib.import_module(name)
    provider = TaskProvider(
        config=TaskConfig.from_yaml(config_path), worker_count=0, enable_scheduler=False
    )
    async with Application.boot(providers=[provider]):
        handle = await module.blocks_the_loop.delay(str(marker))
        try:
            assert await handle.result(timeout=BLOCK + 8) == "done"
        except TimeoutError:
            pytest.fail("".join(_drain(worker) for worker in workers))
        queue = provider.queue
        assert queue is not None
        assert await queue.count(queue.queue_name) == 0
    await asyncio.sleep(LEASE + 0.5)  # a redelivery would have started by now
    assert marker.read_text().splitlines() == ["run"]
    # The worker that ran it warned while its loop was blocked, naming the job.
    logs = [_drain(worker) for worker in workers]
    warned = [log for log in logs if "has been blocked for" in log and handle.id in log]
    assert len(warned) == 1, logs
    everything = "".join(logs)
    assert "lost its lease" not in everything
    assert "dead-lettered" not in everything


def _drain(worker) -> str:
    """Everything the worker logged so far (what `wait_for` saw and the rest)."""
    while True:
        try:
            worker.seen.append(worker._lines.get(timeout=0.2))
        except queue_module.Empty:
            return "".join(worker.seen)
