"""What the command line's start-up imports: help and the worker's path stay light.

Each check runs a fresh interpreter and lists the modules it loaded, so the result does
not depend on what this test process imported before. Timings are not asserted here
(`benchmarks/cli_bench.py` measures them); the module sets are what the start-up time
follows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Loaded only by commands that need them: the configuration models (pydantic), the
# execution engine, the APP loader, PyYAML (a config file), rich (a terminal).
HEAVY_FOR_HELP = (
    "pydantic",
    "yaml",
    "rich",
    "lexigram.tasks.config",
    "lexigram.tasks.execution",
    "lexigram.tasks.cli._app",
    "lexigram.tasks.cli._worker_run",
    "lexigram.contracts.tasks",
    "importlib.metadata",
)


# Loaded only when something is configured (a file, an APP's config, a LEX_TASKS__*
# variable): a worker with every default reads plain records (`lexigram.tasks._worker_settings`).
NOT_UNLESS_CONFIGURED = ("pydantic", "pydantic_core", "lexigram.tasks.config")


# Loaded only when an application uses `TaskProvider`/`TasksModule`, never by the CLI worker.
APPLICATION_ONLY = (
    "lexigram.di",
    "lexigram.tasks.di._provider",
    "lexigram.tasks.di._provider_jobs",
    "lexigram.tasks.di._registration",
    "lexigram.tasks.di._factories",
    "lexigram.tasks.di._module",
)


# Loaded only by what a single worker does not do: supervise children, schedule cron jobs.
NOT_FOR_ONE_WORKER = ("lexigram.tasks.cli._supervisor", "lexigram.tasks.scheduling")


# Loaded only by an application that shows a dashboard, a health report or counters: the
# worker imports the tracing observer alone from the observability package.
OBSERVABILITY_VIEWS = (
    "lexigram.tasks.observability._dashboard",
    "lexigram.tasks.observability._health",
    "lexigram.tasks.observability._metrics",
)


# Loaded only when something uses them: domain events (an `EventBus` subscriber), hook
# payloads (a plugin or hook observer), pluggy (a plugin), the workflow classes (a
# workflow run or built).
UNTIL_SOMETHING_LISTENS = (
    "pluggy",
    "lexigram.tasks._domain_events",
    "lexigram.tasks.hookspecs",
    "lexigram.tasks.hooks._payloads",
    "lexigram.tasks.hooks._plugins",
    "lexigram.tasks.workflows._branch",
    "lexigram.tasks.workflows._chain",
    "lexigram.tasks.workflows._chord",
    "lexigram.tasks.workflows._group",
    "lexigram.tasks.workflows._queued",
    "lexigram.tasks.workflows._steps",
)


def _loaded_after(code: str, cwd: Path | None = None) -> set[str]:
    # Variables that make rich treat a pipe as a terminal would make rich load rightly.
    env = {k: v for k, v in os.environ.items() if k not in {"FORCE_COLOR", "TTY_COMPATIBLE"}}
    snippet = textwrap.dedent(code) + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run(  # noqa: S603 - runs this interpreter on a fixed snippet
        [sys.executable, "-c", snippet],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def _under(modules: set[str], roots: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == r or m.startswith(f"{r}.") for r in roots))


@pytest.mark.parametrize("args", [["--help"], ["worker", "--help"], ["--debug", "worker", "-h"]])
def test_help_imports_no_command_machinery(args: list[str]) -> None:
    loaded = _loaded_after(
        f"""
        from lexigram.tasks.cli import cli
        code = cli.main({args!r}, standalone_mode=False)
        assert code == 0, code
        """
    )
    assert "lexigram.tasks.cli._worker" in loaded or args == ["--help"]
    assert _under(loaded, HEAVY_FOR_HELP) == []


def test_importing_the_worker_command_imports_only_its_options() -> None:
    loaded = _loaded_after("import lexigram.tasks.cli._worker")
    assert _under(loaded, HEAVY_FOR_HELP) == []


def test_a_worker_logging_to_a_pipe_loads_neither_rich_nor_yaml(tmp_path: Path) -> None:
    (tmp_path / "startup_app.py").write_text(
        "from lexigram.tasks import task\n\n@task\nasync def noop() -> None:\n    return None\n",
        encoding="utf-8",
    )
    loaded = _loaded_after(
        """
        import sys
        from lexigram.tasks.cli import cli
        try:
            cli.main(["worker", "startup_app", "--backend", "memory", "--burst"],
                     standalone_mode=False)
        except SystemExit as stop:
            assert stop.code == 0, stop.code
        """,
        cwd=tmp_path,
    )
    assert "lexigram.tasks.cli._worker_run" in loaded  # the worker did run
    assert _under(loaded, ("rich", "yaml")) == []
    # It builds its stack with `lexigram.tasks.di._stack` alone: the application
    # container and the provider are for applications that embed the tasks.
    assert "lexigram.tasks.di._stack" in loaded
    assert _under(loaded, APPLICATION_ONLY) == []
    assert _under(loaded, NOT_FOR_ONE_WORKER) == []
    assert _under(loaded, OBSERVABILITY_VIEWS) == []
    assert _under(loaded, UNTIL_SOMETHING_LISTENS) == []
    # Nothing is configured (no file, no APP config, no LEX_TASKS__* variable): the
    # worker runs with the defaults' plain records, and pydantic is never imported.
    assert _under(loaded, NOT_UNLESS_CONFIGURED) == []
    # Its backend is found from the entry points' files, not through importlib.metadata.
    assert _under(loaded, ("importlib.metadata", "email")) == []
    # With the OpenTelemetry API installed (as here) and no tracer provider set, the
    # tracing observer is there but the API is never imported.
    # (Looking the API up imports its namespace package, which runs no code.)
    assert [m for m in _under(loaded, ("opentelemetry",)) if m != "opentelemetry"] == []


def test_resolving_another_backends_url_imports_not_the_memory_backend() -> None:
    loaded = _loaded_after(
        """
        from lexigram.tasks._backends import backend_for_scheme
        assert backend_for_scheme("no-such-scheme") is None
        """
    )
    # Every installed backend that declares no URL scheme is imported to read its
    # url_schemes, but the memory backend serves none (it is chosen by its type name).
    assert _under(loaded, ("lexigram.tasks.backends.memory", "importlib.metadata")) == []


def test_a_configured_worker_reads_its_configuration_models(tmp_path: Path) -> None:
    (tmp_path / "configured_app.py").write_text(
        "from lexigram.tasks import task\n\n@task\nasync def noop() -> None:\n    return None\n",
        encoding="utf-8",
    )
    loaded = _loaded_after(
        """
        import os
        os.environ["LEX_TASKS__WORKER__MAX_CONCURRENT_TASKS"] = "3"
        from lexigram.tasks.cli import cli
        try:
            cli.main(["worker", "configured_app", "--backend", "memory", "--burst"],
                     standalone_mode=False)
        except SystemExit as stop:
            assert stop.code == 0, stop.code
        """,
        cwd=tmp_path,
    )
    assert "lexigram.tasks.cli._worker_run" in loaded
    assert "lexigram.tasks.config" in loaded
    assert "pydantic" in loaded


@pytest.mark.parametrize("backend", ["memory", "no-such-backend://x"])
def test_the_collector_is_off_during_start_up_and_on_again_after(
    tmp_path: Path, backend: str
) -> None:
    (tmp_path / "gc_app.py").write_text(
        "import gc\nfrom lexigram.tasks import task\n\nAT_IMPORT = gc.isenabled()\n\n"
        "@task\nasync def noop() -> None:\n    return None\n",
        encoding="utf-8",
    )
    out = subprocess.run(  # noqa: S603 - runs this interpreter on a fixed snippet
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import gc, sys
                from lexigram.tasks.cli import cli
                before = gc.get_freeze_count()  # not 0 on every Python (3.12.1: 375)
                try:
                    code = cli.main(["worker", "gc_app", "--backend", {backend!r}, "--burst"],
                                    standalone_mode=False)
                except SystemExit as stop:
                    code = stop.code
                print(sys.modules["gc_app"].AT_IMPORT if "gc_app" in sys.modules else None,
                      gc.isenabled(), gc.get_freeze_count() - before, code)
                """
            ),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    ).stdout
    at_import, after, frozen, code = out.strip().splitlines()[-1].split()
    assert at_import == "False"  # the APP is imported while the collector is off
    assert after == "True"  # on again, whether the worker ran or failed to start
    # Nothing the run froze stays frozen when the command returns. `gc.unfreeze` releases
    # everything frozen, so objects frozen before the run (Python 3.12.1 starts with 375)
    # may leave the permanent generation too: the count may drop below where it started.
    assert int(frozen) <= 0
    assert code == ("0" if backend == "memory" else "2")


def test_the_di_package_still_gives_every_name_it_lists() -> None:
    loaded = _loaded_after(
        """
        import lexigram.tasks.di as di
        from lexigram.tasks.di._provider import TaskProvider
        assert di.TaskProvider is TaskProvider
        for name in di.__all__:
            getattr(di, name)
        """
    )
    assert "lexigram.tasks.di._module" in loaded
