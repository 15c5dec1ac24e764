"""A provider given no config finds its `TaskConfig` in any form of the application's config."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from lexigram.app import Application, ApplicationStartError
from lexigram.contracts.tasks import TaskConfigurationError
from lexigram.di import Module, module
from lexigram.tasks import TaskConfig, TaskProvider, TasksModule

SECTION: dict[str, Any] = {
    "worker": {"worker_count": 3, "max_concurrent_tasks": 7},
    "scheduler": {"enabled": False},
}


class AppTaskConfig(TaskConfig):
    """An application's own subclass, e.g. with settings of its own."""


class AppSettings(BaseModel):
    """Application-wide settings with a tasks section."""

    tasks: TaskConfig | None = None


class PlainSettings:
    """Settings that are not a pydantic model: the section is an attribute."""

    def __init__(self, tasks: object) -> None:
        self.tasks = tasks


def _other_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def _provider_config(app_config: object, provider: TaskProvider | None = None) -> TaskConfig:
    """Boot an application with `app_config`; return the config its provider ran with."""
    modules = [] if provider is not None else [TasksModule.configure()]
    providers = [provider] if provider is not None else []
    async with Application.boot(providers=providers, modules=modules, config=app_config) as app:
        running = await app.container.resolve(TaskProvider)
        config = running.config
        assert await app.container.resolve(TaskConfig) is config
        if provider is None:  # explicit arguments, which win over the config, are left None
            assert running.worker_count == config.worker.worker_count
            assert (running.scheduler is not None) == config.scheduler.enabled
    assert _other_tasks() == set()
    return config


def _assert_section_applied(config: TaskConfig) -> None:
    assert config.worker.worker_count == 3
    assert config.worker.max_concurrent_tasks == 7
    assert config.scheduler.enabled is False


@pytest.mark.parametrize(
    "app_config",
    [
        pytest.param(TaskConfig.from_dict(SECTION), id="TaskConfig"),
        pytest.param(AppTaskConfig.model_validate(SECTION), id="subclass"),
        pytest.param(AppSettings(tasks=TaskConfig.from_dict(SECTION)), id="settings-model"),
        pytest.param(AppSettings.model_validate({"tasks": SECTION}), id="settings-from-dict"),
        pytest.param(PlainSettings(TaskConfig.from_dict(SECTION)), id="settings-attribute"),
        pytest.param(PlainSettings(SECTION), id="attribute-mapping"),
        pytest.param({"tasks": SECTION}, id="mapping"),
        pytest.param({"tasks": TaskConfig.from_dict(SECTION)}, id="mapping-of-TaskConfig"),
    ],
)
async def test_every_form_of_the_application_config_reaches_the_provider(app_config: object):
    _assert_section_applied(await _provider_config(app_config))


async def test_a_subclass_instance_is_adopted_as_it_is():
    config = AppTaskConfig.model_validate(SECTION)
    assert await _provider_config(config) is config


async def test_a_mapping_section_is_loaded_as_from_dict_loads_it():
    with pytest.raises(ApplicationStartError) as info:
        await _provider_config({"tasks": {"worker": {"worker_cuont": 2}}})
    cause = info.value.__cause__
    assert isinstance(cause, TaskConfigurationError)
    assert "tasks.worker.worker_cuont = 2: unknown key" in str(cause)
    assert _other_tasks() == set()


@pytest.mark.parametrize(
    "app_config",
    [
        pytest.param({"tasks": SECTION}, id="mapping"),
        pytest.param(AppSettings(tasks=TaskConfig.from_dict(SECTION)), id="settings-model"),
        pytest.param(AppTaskConfig.model_validate(SECTION), id="subclass"),
    ],
)
async def test_environment_variables_win_over_the_application_config(
    monkeypatch: pytest.MonkeyPatch, app_config: object
):
    monkeypatch.setenv("LEX_TASKS__WORKER__WORKER_COUNT", "2")
    config = await _provider_config(app_config)
    assert config.worker.worker_count == 2
    assert config.worker.max_concurrent_tasks == 7


@pytest.mark.parametrize(
    ("app_config", "where", "found"),
    [
        pytest.param(AppSettings.model_construct(tasks="redis://x"), "AppSettings.tasks", "str"),
        pytest.param({"tasks": ["redis"]}, "dict['tasks']", "list"),
        pytest.param(PlainSettings(object()), "PlainSettings.tasks", "object"),
    ],
)
async def test_a_tasks_section_of_the_wrong_type_fails_with_one_line(
    app_config: object, where: str, found: str
):
    with pytest.raises(ApplicationStartError) as info:
        await _provider_config(app_config)
    cause = info.value.__cause__
    assert isinstance(cause, TaskConfigurationError)
    message = str(cause)
    assert "\n" not in message
    assert f"The application config's {where} is of type {found}, " in message
    assert "provider 'tasks' expects a TaskConfig or a mapping of its settings" in message
    assert _other_tasks() == set()


@pytest.mark.parametrize(
    "app_config",
    [
        pytest.param(None, id="none"),
        pytest.param({"other": {}}, id="mapping-without-tasks"),
        pytest.param(AppSettings(), id="section-left-none"),
        pytest.param(object(), id="unrelated-object"),
    ],
)
async def test_without_a_tasks_config_the_provider_keeps_its_defaults(app_config: object):
    config = await _provider_config(app_config)
    assert config.worker.worker_count == TaskConfig().worker.worker_count
    assert config.scheduler.enabled is True


@pytest.mark.parametrize(
    "app_config",
    [
        pytest.param(TaskConfig.from_dict(SECTION), id="TaskConfig"),
        pytest.param(AppTaskConfig.model_validate(SECTION), id="subclass"),
        pytest.param(AppSettings(tasks=TaskConfig.from_dict(SECTION)), id="settings-model"),
        pytest.param({"tasks": SECTION}, id="mapping"),
        # Not even read: the provider's own config wins before the section is looked at.
        pytest.param({"tasks": "wrong"}, id="wrong-type"),
    ],
)
async def test_an_explicit_config_wins_over_the_application_config(app_config: object):
    own = TaskConfig.from_dict({"worker": {"worker_count": 1}})
    provider = TaskProvider(config=own)
    assert await _provider_config(app_config, provider) is own


async def test_explicit_arguments_win_over_the_adopted_section():
    provider = TaskProvider(worker_count=5, enable_scheduler=True)
    _assert_section_applied(await _provider_config({"tasks": SECTION}, provider))
    assert provider.worker_count == 5
    assert provider.enable_scheduler is True


async def test_a_provider_started_again_without_an_application_config_has_its_defaults():
    provider = TaskProvider()
    _assert_section_applied(await _provider_config({"tasks": SECTION}, provider))
    config = await _provider_config(None, provider)
    assert config.worker.worker_count == TaskConfig().worker.worker_count
    assert config.scheduler.enabled is True


async def test_the_section_reaches_a_provider_configured_in_a_module():
    @module(imports=[TasksModule.configure()])
    class AppModule(Module): ...

    settings = AppSettings(tasks=TaskConfig.from_dict(SECTION))
    async with Application.boot(modules=[AppModule], config=settings) as app:
        provider = await app.container.resolve(TaskProvider)
        assert provider.config is settings.tasks
        assert provider.worker_pool is not None
        assert len(provider.worker_pool.workers) == 3
        assert provider.scheduler is None
