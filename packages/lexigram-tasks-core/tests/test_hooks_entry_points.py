"""The entry-point group ``lexigram.tasks.plugins`` for real: a distribution made on the fly.

Each test writes a tiny installed distribution (a ``*.dist-info`` with METADATA and
entry_points.txt, plus the plugin module) into a temp dir and puts it on ``sys.path``,
so `importlib.metadata.entry_points` finds it exactly as it would a pip-installed one.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from types import ModuleType

import pytest

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.decorators import enqueue_job
from lexigram.tasks.events import TaskFailedEvent, producer_events
from lexigram.tasks.execution import WorkerPool
from lexigram.tasks.hooks import HookRegistry

PLUGIN_SOURCE = textwrap.dedent(
    """
    from lexigram.tasks.hookspecs import hookimpl

    CALLS = []

    @hookimpl
    def lexigram_tasks_after_enqueue(payload):
        CALLS.append(("after_enqueue", payload.task_name, payload.task_id))

    @hookimpl
    def lexigram_tasks_before_execute(payload):
        CALLS.append(("before_execute", payload.task_name, payload.task_id))

    @hookimpl
    def lexigram_tasks_after_execute(payload):
        CALLS.append(("after_execute", payload.task_name, payload.task_id))

    @hookimpl
    def lexigram_tasks_after_failure(payload):
        CALLS.append(("after_failure", payload.task_name, payload.task_id))
    """
)


def _install_distribution(
    root: Path, dist: str, entries: dict[str, str], modules: dict[str, str]
) -> None:
    info = root / f"{dist.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entries.items())
    (info / "entry_points.txt").write_text(f"[lexigram.tasks.plugins]\n{lines}")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(source)


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Install a plugin distribution whose module records every hook call."""
    module = f"lexi_recorder_{uuid.uuid4().hex[:8]}"
    _install_distribution(
        tmp_path,
        f"lexi-recorder-{module[-8:]}",
        {"recorder": module},
        {module: PLUGIN_SOURCE},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield module
    sys.modules.pop(module, None)


async def test_entry_point_plugin_receives_all_four_hooks_for_success_and_failure(
    plugin_module: str,
):
    hooks = HookRegistry()
    assert hooks.load_entry_point_plugins() == ["recorder"]
    assert hooks.load_entry_point_plugins() == []  # idempotent
    plugin: ModuleType = importlib.import_module(plugin_module)

    queue = MemoryTaskQueue(queue_name="plugins")
    remove = producer_events().add(hooks)  # "task.queued" comes from the core's enqueue
    failed = asyncio.Event()
    hooks.event_bus.subscribe(TaskFailedEvent, lambda e: failed.set())
    succeeded = asyncio.Event()

    async def works() -> str:
        return "ok"

    async def breaks() -> None:
        msg = "handler bug"
        raise ValueError(msg)

    hooks.add_observer("task.completed", lambda p: succeeded.set())
    try:
        good = (await enqueue_job(queue, Job(name="works"))).id
        bad = (await enqueue_job(queue, Job(name="breaks", max_retries=0))).id
    finally:
        remove()
    pool = WorkerPool(queue, {"works": works, "breaks": breaks}, hooks=hooks)
    await pool.start()
    try:
        await succeeded.wait()
        await failed.wait()
    finally:
        await pool.stop()

    calls = plugin.CALLS
    assert set(calls) == {
        ("after_enqueue", "works", good),
        ("after_enqueue", "breaks", bad),
        ("before_execute", "works", good),
        ("before_execute", "breaks", bad),
        ("after_execute", "works", good),
        ("after_failure", "breaks", bad),
    }
    assert len(calls) == 6
    assert calls.index(("before_execute", "works", good)) < calls.index(
        ("after_execute", "works", good)
    )
    assert calls.index(("before_execute", "breaks", bad)) < calls.index(
        ("after_failure", "breaks", bad)
    )


async def test_a_plugin_that_fails_to_load_is_logged_and_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    tag = uuid.uuid4().hex[:8]
    good, broken, typo = f"lexi_good_{tag}", f"lexi_broken_{tag}", f"lexi_typo_{tag}"
    _install_distribution(
        tmp_path,
        f"lexi-mixed-{tag}",
        {"good": good, "broken": broken, "typo": typo},
        {
            good: PLUGIN_SOURCE,
            broken: "raise ImportError('missing dependency of the plugin')\n",
            typo: (
                "from lexigram.tasks.hookspecs import hookimpl\n"
                "@hookimpl\n"
                "def lexigram_tasks_after_exec(payload):\n"
                "    pass\n"
            ),
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        hooks = HookRegistry()
        with caplog.at_level(logging.ERROR, logger="lexigram.tasks.hooks._registry"):
            loaded = hooks.load_entry_point_plugins()
        assert loaded == ["good"]
        assert hooks.plugin_names() == ["good"]
        assert "'broken'" in caplog.text
        assert "missing dependency of the plugin" in caplog.text
        assert "'typo'" in caplog.text
        assert f"lexi-mixed-{tag}" in caplog.text
    finally:
        for name in (good, broken, typo):
            sys.modules.pop(name, None)


def test_no_plugins_installed_loads_nothing():
    assert HookRegistry().load_entry_point_plugins(group="lexigram.tasks.no-such-group") == []


def test_a_registry_without_plugins_makes_no_plugin_manager_until_one_comes():
    code = textwrap.dedent(
        """
        import sys
        from lexigram.tasks.hooks import HookRegistry

        hooks = HookRegistry()
        hooks.load_entry_point_plugins(group="lexigram.tasks.no-such-group")
        print(hooks.plugin_names(), "pluggy" in sys.modules, hooks.event_kinds == frozenset())

        class Plugin:
            from lexigram.tasks.hookspecs import hookimpl

            @hookimpl
            def lexigram_tasks_after_failure(self, payload):
                return None

        hooks.register_plugin(Plugin(), name="late")
        print(hooks.plugin_names(), "pluggy" in sys.modules, sorted(hooks.event_kinds))
        """
    )
    out = subprocess.run(  # noqa: S603 - this interpreter on a fixed snippet
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["[] False True", "['late'] True ['completed', 'failed', 'queued', 'started']"]
