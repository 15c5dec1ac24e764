"""Loading the APP argument: modules, objects, providers and YAML config files."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from uuid import uuid4

import pytest

from lexigram.tasks.cli._app import load_app
from lexigram.tasks.cli._errors import CLIError


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(source: str, *, package: bool = False) -> str:
        name = f"cli_app_{uuid4().hex[:8]}"
        if package:
            (tmp_path / name).mkdir()
            (tmp_path / name / "__init__.py").write_text(textwrap.dedent(source))
        else:
            (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        return name

    return write


TASKS = """
    from lexigram.tasks import HandlerRegistry, scheduled, task

    @task
    async def send_email(to: str) -> str:
        return to

    @task(name="reports.build", priority=10)
    def build_report(name: str) -> str:
        return name

    @scheduled("*/5 * * * *", name="cleanup")
    async def cleanup() -> None:
        return None

    registry = HandlerRegistry()
    registry.register("from_registry", lambda: 1)
    handlers = {"a": len, "b": str}
    not_handlers = {"a": 1}
"""


def test_load_app_module_collects_task_functions_and_registries(write_module) -> None:
    name = write_module(TASKS)
    app = load_app(name)
    assert set(app.handlers) == {"send_email", "reports.build", "cleanup", "from_registry"}
    [schedule] = app.schedules
    assert schedule.schedule_id == "scheduled:cleanup"
    assert schedule.cron == "*/5 * * * *"
    assert schedule.template.name == "cleanup"


def test_load_app_registry_object(write_module) -> None:
    app = load_app(f"{write_module(TASKS)}:registry")
    assert list(app.handlers) == ["from_registry"]
    assert app.schedules == []


def test_load_app_dict_of_handlers(write_module) -> None:
    app = load_app(f"{write_module(TASKS)}:handlers")
    assert set(app.handlers) == {"a", "b"}


def test_load_app_dict_with_a_non_callable_fails_clearly(write_module) -> None:
    with pytest.raises(CLIError, match=r"entry 'a': 1 is not task name -> handler"):
        load_app(f"{write_module(TASKS)}:not_handlers")


def test_load_app_single_task_function(write_module) -> None:
    app = load_app(f"{write_module(TASKS)}:build_report")
    assert list(app.handlers) == ["reports.build"]


def test_load_app_provider_gives_handlers_config_queue_and_schedules(write_module) -> None:
    name = write_module(
        """
        from lexigram.tasks import JobTemplate, MemoryTaskQueue, TaskConfig, TaskProvider

        queue = MemoryTaskQueue(queue_name="orders")
        provider = TaskProvider(queue=queue, config=TaskConfig.from_dict({"name": "shop"}))
        provider.register_handler("ship", lambda order: order)
        provider.scheduler.schedule_job_sync(JobTemplate(name="ship"), "0 * * * *", "hourly")
        """
    )
    app = load_app(f"{name}:provider")
    assert list(app.handlers) == ["ship"]
    assert app.config is not None
    assert app.config.name == "shop"
    assert app.queue is not None
    assert app.queue.queue_name == "orders"
    assert [(s.schedule_id, s.cron) for s in app.schedules] == [("hourly", "0 * * * *")]


def test_load_app_module_without_tasks_fails_clearly(write_module) -> None:
    with pytest.raises(CLIError, match="defines no @task function and no HandlerRegistry"):
        load_app(write_module("X = 1\n"))


def test_load_app_module_that_raises_fails_with_the_error(write_module) -> None:
    name = write_module("raise RuntimeError('database URL missing')\n")
    with pytest.raises(CLIError, match=r"raised RuntimeError: database URL missing"):
        load_app(name)


def test_load_app_missing_dependency_is_named(write_module) -> None:
    name = write_module("import not_installed_dependency_xyz\n")
    with pytest.raises(CLIError, match=r"needs the module 'not_installed_dependency_xyz'"):
        load_app(name)


def test_load_app_missing_submodule_is_reported_as_unknown_app(write_module) -> None:
    package = write_module("", package=True)
    with pytest.raises(CLIError, match=r"no module named '" + package + r"\.nope'"):
        load_app(f"{package}.nope")


def test_load_app_candidates_are_listed_for_a_wrong_attribute(write_module) -> None:
    with pytest.raises(CLIError, match=r"Candidates there: .*registry"):
        load_app(f"{write_module(TASKS)}:regstry")


def test_load_app_package_watches_its_directory(write_module, tmp_path: Path) -> None:
    name = write_module(TASKS, package=True)
    assert load_app(name).watch_paths == [tmp_path / name]


def test_load_app_yaml_config_names_the_handlers(write_module, tmp_path: Path) -> None:
    name = write_module(TASKS)
    config = tmp_path / "tasks.yaml"
    config.write_text(
        f"tasks:\n  backend:\n    queue_name: mail\n  extra:\n    app: {name}:registry\n"
    )
    app = load_app(str(config))
    assert list(app.handlers) == ["from_registry"]
    assert app.config is not None
    assert app.config.backend.queue_name == "mail"
    assert config.resolve() in app.watch_paths


def test_load_app_yaml_without_app_key_fails_clearly(tmp_path: Path) -> None:
    config = tmp_path / "tasks.yaml"
    config.write_text("tasks:\n  backend:\n    type: memory\n")
    with pytest.raises(CLIError, match=r"names no task handlers\. Add `extra: \{app:"):
        load_app(str(config))


def test_load_app_missing_yaml_file_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(CLIError, match="there is no such file"):
        load_app(str(tmp_path / "nope.yaml"))


def test_load_app_empty_argument_fails_clearly() -> None:
    with pytest.raises(CLIError, match="APP is empty"):
        load_app("  ")


FACTORIES = """
    from lexigram.tasks import HandlerRegistry

    def make_registry():
        registry = HandlerRegistry()
        registry.register("made", lambda: 1)
        return registry

    def needs_arguments(config):
        return HandlerRegistry()

    async def made_async():
        return HandlerRegistry()
"""


def test_load_app_factory_function_is_called(write_module) -> None:
    app = load_app(f"{write_module(FACTORIES)}:make_registry")
    assert list(app.handlers) == ["made"]


def test_load_app_factory_with_parameters_fails_clearly(write_module) -> None:
    with pytest.raises(CLIError, match="is a function that needs arguments"):
        load_app(f"{write_module(FACTORIES)}:needs_arguments")


def test_load_app_async_factory_fails_clearly(write_module) -> None:
    with pytest.raises(CLIError, match="is an async function"):
        load_app(f"{write_module(FACTORIES)}:made_async")


HANDLER_CLASS_APP = """
    from lexigram.tasks import scheduled, task

    @task
    async def plain() -> None:
        return None

    class Reports:
        @scheduled("0 6 * * *", name="reports.daily")
        async def daily(self) -> None:
            return None
"""


def test_a_handler_class_in_the_app_is_named_as_not_run_by_the_command(
    write_module, caplog: pytest.LogCaptureFixture
) -> None:
    # Its instances come from an application's container: a command cannot build them,
    # and said nothing about it, so a schedule of it silently never fired.
    with caplog.at_level(logging.WARNING, logger="lexigram.tasks.cli"):
        app = load_app(write_module(HANDLER_CLASS_APP))
    assert set(app.handlers) == {"plain"}
    assert app.schedules == []
    assert "defines task handler class(es) Reports: this command does not run" in caplog.text
