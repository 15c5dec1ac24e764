"""``lexigram-tasks job status|result|wait|cancel ID`` take a unique prefix on real backends.

A waiting job is found through its queue and a finished one through the result store,
each by `JobLookupProtocol` of the backend (Redis SCAN, PostgreSQL and SQLite index
ranges). The finished job's result is stored through the backend's own result store, as
a worker would, so no worker process is needed.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from uuid import uuid4

import pytest
from click.testing import CliRunner

from lexigram.contracts.tasks import JobResult
from lexigram.tasks.cli import cli
from lexigram.tasks.cli._context import load_config, open_stores, resolve_spec

BACKENDS = [
    pytest.param("redis_config", marks=pytest.mark.redis, id="redis"),
    pytest.param("pg_config", marks=pytest.mark.postgres, id="postgres"),
    pytest.param("sqlite_config", id="sqlite"),
]


async def _store_result(config: Path, job_id: str, value: int) -> None:
    spec = resolve_spec(load_config(str(config)))
    stores = open_stores(spec, "result_store")
    assert stores.result_store is not None
    try:
        await stores.result_store.store(job_id, JobResult.ok(value))
    finally:
        await stores.close()


def _job(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["job", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.timeout(30)
@pytest.mark.parametrize("config_fixture", BACKENDS)
def test_job_commands_take_a_prefix_of_a_waiting_or_finished_job(
    config_fixture: str, request: pytest.FixtureRequest
) -> None:
    config: Path = request.getfixturevalue(config_fixture)
    options = ["--config", str(config)]
    enqueued = CliRunner().invoke(cli, ["enqueue", "add", "--args", "[2, 3]", *options])
    assert enqueued.exit_code == 0, enqueued.output
    waiting = enqueued.stdout.strip().split()[-1]
    finished = f"f1n1-{uuid4().hex}"
    asyncio.run(_store_result(config, finished, 5))

    code, out, err = _job("status", waiting[:8], *options)
    assert (code, out.split()[:2]) == (0, [waiting, "pending"]), err
    code, out, err = _job("status", finished[:9], "--json", *options)
    assert code == 0, err
    assert json.loads(out)["id"] == finished
    assert json.loads(out)["status"] == "completed"
    code, out, err = _job("result", finished[:9], *options)
    assert (code, out.strip()) == (0, "5"), err
    code, out, err = _job("wait", finished[:9], "--timeout", "5", *options)
    assert (code, out.strip()) == (0, "5"), err
    code, out, err = _job("cancel", waiting[:8], *options)
    assert (code, out.strip()) == (
        0,
        f"Job {waiting} was waiting and is cancelled: it will not run.",
    )

    code, _, err = _job("status", "f1n", *options)
    assert code == 2
    assert "needs at least 4 characters" in err
    code, _, err = _job("status", "zzzz", *options)
    assert code == 2
    assert "has the id 'zzzz' or an id starting with it" in err


@pytest.mark.timeout(30)
@pytest.mark.parametrize("config_fixture", BACKENDS)
def test_job_commands_find_a_job_of_another_queue_with_queue(
    config_fixture: str, request: pytest.FixtureRequest
) -> None:
    # `enqueue -q NAME` puts a job on a queue other than the configured one; the job
    # commands look there when given the same --queue.
    config: Path = request.getfixturevalue(config_fixture)
    options = ["--config", str(config)]
    other = f"reports{uuid4().hex[:6]}"
    enqueued = CliRunner().invoke(
        cli, ["enqueue", "add", "-q", other, "--args", "[1, 1]", *options]
    )
    assert enqueued.exit_code == 0, enqueued.output
    waiting = enqueued.stdout.strip().split()[-1]

    code, _, err = _job("status", waiting, *options)
    assert code == 2
    assert "give --queue NAME for a job of another queue" in err
    code, out, err = _job("status", waiting[:8], "--queue", other, *options)
    assert (code, out.split()[:2]) == (0, [waiting, "pending"]), err
    code, out, err = _job("cancel", waiting, "-q", other, *options)
    assert code == 0, err
    assert "was waiting and is cancelled" in out
