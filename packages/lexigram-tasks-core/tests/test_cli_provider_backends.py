"""``worker APP:provider`` builds a backend the provider registered in code, as the provider does.

A third-party backend may be registered on the application's `TaskBackendRegistry`
instead of published as an entry point; the command line adopts the registrations of
an APP's provider, so the worker command runs on the same backend as the application.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from uuid import uuid4

import pytest
from click.testing import CliRunner

from lexigram.contracts.tasks import Job, TaskBackendSpec
from lexigram.tasks import _backends
from lexigram.tasks.cli import cli
from lexigram.tasks.cli._app import load_app

APP = """
from lexigram.tasks import MemoryTaskQueue, TaskConfig, TaskProvider

shared = MemoryTaskQueue(queue_name="tasks")
done = []


def acme_queue(spec):
    # The queue the registered backend builds: one object the test can fill.
    return shared


provider = TaskProvider(config=TaskConfig.from_dict({"backend": {"type": "acme-in-code"}}))
provider.backend_registry.register("acme-in-code", acme_queue)
provider.register_handler("add", lambda a, b: done.append(a + b))
"""


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    name = f"cli_provider_backends_{uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield importlib.import_module(name)
    _backends._cache.pop("acme-in-code", None)  # adopted for this process only


def test_a_worker_runs_on_the_backend_its_provider_registered_in_code(
    app_module: ModuleType,
) -> None:
    asyncio.run(app_module.shared.enqueue(Job(name="add", args=(2, 3))))
    result = CliRunner().invoke(cli, ["worker", f"{app_module.__name__}:provider", "--burst"])
    assert result.exit_code == 0, result.output
    assert app_module.done == [5]


def test_an_installed_backend_is_not_replaced(
    app_module: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    app_module.provider.backend_registry.register("memory", app_module.acme_queue)
    load_app(f"{app_module.__name__}:provider")
    assert "registers the task backend 'memory' in code over the installed one" in caplog.text
    built = _backends.load_backend("memory").create_queue(TaskBackendSpec(type="memory"))
    assert built is not app_module.shared  # the installed memory backend's own queue
