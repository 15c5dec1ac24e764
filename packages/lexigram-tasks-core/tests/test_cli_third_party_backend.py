"""A backend the core has never heard of works in config, ``--backend`` and the CLI.

``fixture_dists/faketype`` is an installed distribution (a ``dist-info`` with an entry
point) that registers the type ``faketype`` serving the URL scheme ``fake://``. Nothing
in the core names it: the core reads its ``url_schemes``/``url_field``/``options_type``.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner

from lexigram.app import Application
from lexigram.contracts.tasks import Job, TaskConfigurationError
from lexigram.tasks import TaskConfig, TaskProvider
from lexigram.tasks._backends import clear_backend_cache
from lexigram.tasks.cli import cli
from lexigram.tasks.cli._app import LoadedApp
from lexigram.tasks.cli._context import resolve_spec
from lexigram.tasks.cli._runtime import WorkerRuntime

DIST = Path(__file__).parent / "fixture_dists" / "faketype"


@pytest.fixture
def faketype(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """Install the faketype distribution for this test (sys.path and PYTHONPATH)."""
    monkeypatch.syspath_prepend(str(DIST))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(DIST), *sys.path]))
    clear_backend_cache()
    module = importlib.import_module("lexi_faketype")
    module.BUCKETS.clear()
    module.SPECS.clear()
    yield module
    clear_backend_cache()
    sys.modules.pop("lexi_faketype", None)


def test_without_the_distribution_the_type_is_unknown() -> None:
    clear_backend_cache()
    result = CliRunner().invoke(cli, ["inspect", "--backend", "fake://box/1"])
    assert result.exit_code == 2
    assert "scheme 'fake', which no installed backend serves" in result.stderr


async def test_config_selects_it_by_type_and_url(faketype: ModuleType) -> None:
    config = TaskConfig.from_dict(
        {
            "backend": {
                "type": "faketype",
                "url": "fake://box/1",
                "queue_name": "third",
                "options": {"visibility_timeout": "7"},
            },
            "scheduler": {"enabled": False},
        }
    )
    provider = TaskProvider(config=config)
    done: list[int] = []

    async def add(a: int, b: int) -> int:
        done.append(a + b)
        return a + b

    provider.register_handler("add", add)
    app = Application().use(provider)
    await app.start()
    try:
        await provider.enqueue_job(Job(name="add", args=(2, 3)))
        for _ in range(500):
            if done:
                break
            await asyncio.sleep(0.01)
    finally:
        await app.stop()
    assert done == [5]
    [spec] = faketype.SPECS
    assert (spec.type, spec.url, spec.queue_name) == ("faketype", "fake://box/1", "third")


def test_a_broken_entry_point_blames_its_distribution_with_exit_2(faketype: ModuleType) -> None:
    result = CliRunner().invoke(cli, ["inspect", "--backend", "brokentype"])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert "'brokentype = lexi_faketype:no_such_backend'" in line  # the entry point
    assert "lexi-faketype 0.1.0" in line  # the distribution
    assert "AttributeError" in line  # the cause
    assert "fault of lexi-faketype, not of lexigram-tasks" in line
    assert "report it with the command you ran" not in line  # not blamed on us


def test_its_options_are_checked_by_its_options_type(faketype: ModuleType) -> None:
    config = TaskConfig.from_dict({"backend": {"type": "faketype", "options": {"visiblity": 1}}})
    with pytest.raises(TaskConfigurationError, match="visibility_timeout"):
        TaskProvider(config=config).queues  # noqa: B018 - building the queues is the test


def test_backend_option_selects_it_by_scheme(faketype: ModuleType) -> None:
    spec = resolve_spec(TaskConfig(), "fake://box/2")
    assert (spec.type, spec.url) == ("faketype", "fake://box/2")
    enqueued = CliRunner().invoke(cli, ["enqueue", "add", "--backend", "fake://box/2"])
    assert enqueued.exit_code == 0, enqueued.output
    inspected = CliRunner().invoke(cli, ["inspect", "--backend", "fake://box/2", "--json"])
    assert inspected.exit_code == 0, inspected.output
    assert faketype.SPECS[-1].url == "fake://box/2"


async def test_both_roots_ask_for_the_same_rate_limit_bucket(faketype: ModuleType) -> None:
    config = TaskConfig.from_dict(
        {
            "backend": {"type": "faketype", "url": "fake://box/3"},
            "rate_limit": {"enabled": True, "rate": 50},
            "scheduler": {"enabled": False},
        }
    )
    provider = TaskProvider(config=config)
    provider.queues  # noqa: B018 - builds the stacks and the rate limiter
    spec = resolve_spec(config)
    runtime = WorkerRuntime(
        LoadedApp(source="test"), config, spec, ["tasks"], worker_config=config.effective_worker()
    )
    await runtime.start(connect_timeout=2)
    try:
        assert faketype.BUCKETS == ["tasks:global", "tasks:global"]
        assert runtime.rate_limiter is not None
    finally:
        await runtime.close()


def test_cli_worker_process_runs_on_it_from_a_config_file(
    faketype: ModuleType, tmp_path: Path
) -> None:
    (tmp_path / "third_app.py").write_text(
        textwrap.dedent(
            """
            from lexigram.tasks import task

            @task
            async def hello() -> str:
                return "hello"
            """
        )
    )
    config = tmp_path / "tasks.yaml"
    config.write_text(
        textwrap.dedent(
            """
            tasks:
              backend:
                type: faketype
                url: fake://box/4
                options: {visibility_timeout: 9}
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(DIST), str(tmp_path), *sys.path])}
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [
            *(sys.executable, "-m", "lexigram.tasks.cli", "worker", "third_app"),
            *("--config", str(config), "--burst", "--log-level", "info"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "on faketype (fake://box/4)" in done.stderr
    assert "Queues are empty; stopping (--burst)." in done.stderr
