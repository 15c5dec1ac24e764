"""Checks across sections hold at every door, whatever unrelated variables are set.

A ``backends`` list replaces the ``backend`` section's per-backend keys (only
``enqueue_timeout`` stays): setting one beside the list is refused by every loader, in
code and by a ``LEX_TASKS__BACKEND__*`` variable, rather than silently ignored. A
contradiction between ``timeout``/``retry`` and the worker's own values made by
assignment is refused whether or not a ``LEX_TASKS__*`` variable is set.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from lexigram.app import Application, ApplicationStartError
from lexigram.contracts.tasks import TaskConfigurationError
from lexigram.tasks import TaskConfig, TaskProvider, TasksModule
from lexigram.tasks.cli import cli
from lexigram.tasks.config import NamedTaskConfig, TaskBackendConfig

IGNORED = (
    ": is ignored when tasks.backends is set (each entry configures its own backend; of "
    "tasks.backend, only enqueue_timeout applies). Move it into an entry of "
    "tasks.backends, or remove it."
)

MULTI_YAML = """\
tasks:
  backend:
    enqueue_timeout: 2
  backends:
    - name: main
      type: memory
"""


def _error(call: object) -> str:
    assert callable(call)
    with pytest.raises(TaskConfigurationError) as caught:
        call()
    return str(caught.value)


# ---------------------------------------------------------------- backend beside backends


def test_per_backend_keys_are_the_backend_sections_fields_a_named_entry_has() -> None:
    """Every key of the backend section is either per backend (refused) or process-wide."""
    per_backend = set(TaskBackendConfig.keys_set_per_backend)
    assert per_backend <= set(NamedTaskConfig.model_fields)
    assert per_backend | set(NamedTaskConfig.keys_set_elsewhere) == set(
        TaskBackendConfig.model_fields
    )
    assert not per_backend & set(NamedTaskConfig.keys_set_elsewhere)


def test_from_yaml_refuses_a_backend_url_beside_backends(tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    path.write_text(
        MULTI_YAML.replace("    enqueue_timeout: 2\n", "    url: redis://:pw@cache:6379/0\n"),
        encoding="utf-8",
    )
    text = _error(lambda: TaskConfig.from_yaml(path, environ={}))
    assert text == (
        f"Invalid task configuration in file '{path}' (1 problem); fix each line below.\n"
        f"  tasks.backend.url = 'redis://:***@cache:6379/0'{IGNORED}"
    )


def test_from_dict_names_every_per_backend_key_on_its_own_line() -> None:
    backend = {
        "type": "redis",
        "url": "redis://cache:6379/0",
        "redis_url": "redis://cache:6379/1",
        "amqp_url": "amqp://mq/",
        "postgres_dsn": "postgresql://db/jobs",
        "queue_name": "jobs",
        "options": {"key_prefix": "app"},
        "enqueue_timeout": 3,  # process-wide: allowed beside backends
    }
    text = _error(
        lambda: TaskConfig.from_dict({"backend": backend, "backends": [{"name": "main"}]})
    )
    lines = text.splitlines()
    assert lines[0] == "Invalid task configuration (7 problems); fix each line below."
    assert lines[1:] == [
        f"  tasks.backend.type = 'redis'{IGNORED}",
        f"  tasks.backend.url = 'redis://cache:6379/0'{IGNORED}",
        f"  tasks.backend.redis_url = 'redis://cache:6379/1'{IGNORED}",
        f"  tasks.backend.amqp_url = 'amqp://mq/'{IGNORED}",
        f"  tasks.backend.postgres_dsn = 'postgresql://db/jobs'{IGNORED}",
        f"  tasks.backend.queue_name = 'jobs'{IGNORED}",
        f"  tasks.backend.options = {{...}}{IGNORED}",
    ]
    # The process-wide key alone is what the section is for beside backends.
    config = TaskConfig.from_dict(
        {"backend": {"enqueue_timeout": 3}, "backends": [{"name": "main"}]}
    )
    assert config.backend.enqueue_timeout == 3


def test_from_env_names_the_variable_that_set_each_key() -> None:
    environ = {
        "LEX_TASKS__BACKENDS__MAIN__TYPE": "memory",
        "LEX_TASKS__BACKEND__TYPE": "redis",
        "LEX_TASKS__BACKEND__OPTIONS__KEY_PREFIX": "app",
        "LEX_TASKS__BACKEND__ENQUEUE_TIMEOUT": "2",
    }
    text = _error(lambda: TaskConfig.from_env(environ=environ))
    assert text.splitlines()[1:] == [
        "  tasks.backend.type = 'redis' (from environment variable LEX_TASKS__BACKEND__TYPE)"
        + IGNORED,
        "  tasks.backend.options = {...} (from environment variable "
        "LEX_TASKS__BACKEND__OPTIONS__KEY_PREFIX)" + IGNORED,
    ]


def test_a_variable_over_a_file_with_backends_is_refused_by_the_commands(
    tmp_path: Path,
) -> None:
    path = tmp_path / "app.yaml"
    path.write_text(MULTI_YAML, encoding="utf-8")
    environ = {"LEX_TASKS__BACKEND__URL": "redis://localhost:6379/0"}
    line = (
        "tasks.backend.url = 'redis://localhost:6379/0' (from environment variable "
        "LEX_TASKS__BACKEND__URL)" + IGNORED
    )
    assert line in _error(lambda: TaskConfig.from_yaml(path, environ=environ))
    result = CliRunner().invoke(cli, ["inspect", "--config", str(path)], env=environ)
    assert result.exit_code != 0
    assert line in result.output


def test_with_environment_refuses_a_variable_setting_a_key_beside_backends() -> None:
    config = TaskConfig(backends=[NamedTaskConfig(name="main")])
    text = _error(
        lambda: config.with_environment(environ={"LEX_TASKS__BACKEND__QUEUE_NAME": "jobs"})
    )
    assert text == (
        "Invalid task configuration in the environment (1 problem); fix each line below.\n"
        "  tasks.backend.queue_name = 'jobs' (from environment variable "
        f"LEX_TASKS__BACKEND__QUEUE_NAME){IGNORED}"
    )
    # The process-wide key may come from a variable, and the in-memory copy
    # TasksModule.stub makes of such a config keeps its backend section to that key, so
    # it is not refused when a variable applies.
    timed = config.with_environment(environ={"LEX_TASKS__BACKEND__ENQUEUE_TIMEOUT": "2"})
    assert timed.backend.enqueue_timeout == 2
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEX_TASKS__WORKER__LOG_JOBS", "true")
        TasksModule.stub(config=config)


def test_code_and_assignment_are_refused_too() -> None:
    entries = [NamedTaskConfig(name="main")]
    backend = TaskBackendConfig(type="redis")
    text = _error(lambda: TaskConfig(backend=backend, backends=entries))
    assert text.splitlines()[1:] == [f"  tasks.backend.type = 'redis'{IGNORED}"]
    single = TaskConfig(backend=backend)
    text = _error(lambda: setattr(single, "backends", entries))
    assert text.splitlines()[1:] == [f"  tasks.backend.type = 'redis'{IGNORED}"]
    assert single.backends == []


# ---------------------------------------------------------------- worker sections by assignment

CONTRADICTION = (
    "Invalid task configuration (1 problem); fix each line below.\n"
    "  tasks = {...}: tasks.timeout.default_timeout = 5.0 and tasks.worker.default_timeout = "
    "7.0 contradict each other. Set each value in one place (the retry and timeout sections "
    "apply to the worker)."
)


def _contradicting() -> TaskConfig:
    config = TaskConfig.from_dict({"timeout": {"default_timeout": 5}})
    config.worker.default_timeout = 7  # assignment validates the one field only
    return config


def test_effective_worker_refuses_a_contradiction_made_by_assignment() -> None:
    # The line loading gives for the same values.
    loaded = _error(
        lambda: TaskConfig.from_dict(
            {"timeout": {"default_timeout": 5}, "worker": {"default_timeout": 7}}
        )
    )
    assert loaded == CONTRADICTION
    assert _error(_contradicting().effective_worker) == CONTRADICTION
    retry = TaskConfig.from_dict({"retry": {"max_delay": 10}})
    retry.worker.retry.max_delay = 20
    assert "tasks.retry.max_delay = 10.0 and tasks.worker.retry.max_delay = 20.0" in _error(
        retry.effective_worker
    )
    assert "contradict each other" in _error(retry.validate_for_environment)


async def _run(config: TaskConfig) -> None:
    provider = TaskProvider(config=config)
    async with Application.boot(providers=[provider]):
        pass


async def _boot(config: TaskConfig) -> str:
    with pytest.raises((TaskConfigurationError, ApplicationStartError)) as caught:
        await _run(config)
    error: BaseException = caught.value
    if isinstance(error, ApplicationStartError) and error.__cause__ is not None:
        error = error.__cause__
    return str(error).replace(" in the environment", "")


async def test_provider_refuses_it_whether_or_not_an_unrelated_variable_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LEX_TASKS__WORKER__LOG_JOBS", raising=False)
    without = await _boot(_contradicting())
    monkeypatch.setenv("LEX_TASKS__WORKER__LOG_JOBS", "true")
    with_variable = await _boot(_contradicting())
    assert without == with_variable == CONTRADICTION
