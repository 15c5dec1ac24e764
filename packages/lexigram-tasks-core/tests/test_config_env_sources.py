"""Configuration errors name the LEX_TASKS__* variable that set the bad value, everywhere.

Loading (a value checked against others), `TaskProvider` building a backend, and the
commands building one all name the variable; a value that came from elsewhere is not
blamed on a variable.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from lexigram.contracts.tasks import BackendNotFoundError, TaskConfigurationError
from lexigram.tasks import TaskProvider
from lexigram.tasks.cli import cli
from lexigram.tasks.config import TaskConfig

TWO_BACKENDS = """\
tasks:
  backends:
    - name: main
      primary: true
      type: memory
    - name: other
      type: memory
  timeout:
    default_timeout: 10
"""


@pytest.fixture
def app_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "app.yaml"
    path.write_text(TWO_BACKENDS, encoding="utf-8")
    return path


def _load_error(path: Path, environ: dict[str, str]) -> str:
    with pytest.raises(TaskConfigurationError) as caught:
        TaskConfig.from_yaml(path, environ=environ)
    return str(caught.value)


# ---------------------------------------------------------------- variables that set nothing


@pytest.mark.parametrize("variable", ["LEX_TASKS__BACKENDS__REPORTS", "LEX_TASKS__BACKENDS__0"])
def test_a_variable_naming_an_entry_but_no_setting_is_refused(
    app_yaml: Path, variable: str
) -> None:
    """Ignored, it added an entry with every default: a memory backend nobody asked for."""
    text = _load_error(app_yaml, {variable: "redis://localhost:6379/0"})
    assert text == (
        f"Environment variable {variable} names the entry "
        f"{variable.rsplit('__', 1)[1].lower()!r} of backends but none of its settings. "
        f"Add the setting's name after it, e.g. {variable}__URL."
    )


# ---------------------------------------------------------------- checks across values


def test_second_primary_names_its_variable(app_yaml: Path) -> None:
    text = _load_error(app_yaml, {"LEX_TASKS__BACKENDS__OTHER__PRIMARY": "true"})
    assert (
        "tasks.backends = [2 entries] (from environment variable "
        "LEX_TASKS__BACKENDS__OTHER__PRIMARY): backends ['main', 'other'] are all marked "
        "primary." in text
    )


def test_duplicate_name_names_its_variable(app_yaml: Path) -> None:
    text = _load_error(app_yaml, {"LEX_TASKS__BACKENDS__1__NAME": "main"})
    assert "(from environment variable LEX_TASKS__BACKENDS__1__NAME): backend names" in text


def test_entry_named_default_by_a_variable_names_it(app_yaml: Path) -> None:
    # The variable adds an entry called "default" next to the primary "main".
    text = _load_error(app_yaml, {"LEX_TASKS__BACKENDS__DEFAULT__TYPE": "memory"})
    assert "(from environment variable LEX_TASKS__BACKENDS__DEFAULT__TYPE): a backend" in text


def test_entry_added_by_index_without_a_name_names_the_variable(app_yaml: Path) -> None:
    text = _load_error(app_yaml, {"LEX_TASKS__BACKENDS__2__TYPE": "memory"})
    assert (
        "tasks.backends[2].name = (missing) (from environment variable "
        "LEX_TASKS__BACKENDS__2__TYPE): is required." in text
    )


def test_timeout_contradicting_the_worker_section_names_the_variable(app_yaml: Path) -> None:
    text = _load_error(app_yaml, {"LEX_TASKS__WORKER__DEFAULT_TIMEOUT": "20"})
    assert "tasks = {...} (from environment variable LEX_TASKS__WORKER__DEFAULT_TIMEOUT): " in text
    assert "contradict each other" in text


def test_both_sides_of_a_contradiction_from_variables_are_named(tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    path.write_text("tasks: {}\n", encoding="utf-8")
    text = _load_error(
        path,
        {"LEX_TASKS__TIMEOUT__MAX_TIMEOUT": "50", "LEX_TASKS__WORKER__MAX_TIMEOUT": "60"},
    )
    assert (
        "(from environment variables LEX_TASKS__TIMEOUT__MAX_TIMEOUT and "
        "LEX_TASKS__WORKER__MAX_TIMEOUT)" in text
    )


def test_security_check_names_the_variable() -> None:
    with pytest.raises(TaskConfigurationError) as caught:
        TaskConfig.from_env(environ={"LEX_TASKS__SECURITY__ACCEPT_UNSIGNED": "true"})
    assert (
        "tasks.security = {...} (from environment variable "
        "LEX_TASKS__SECURITY__ACCEPT_UNSIGNED): accept_unsigned is set without signing_key"
    ) in str(caught.value)


def test_check_across_values_from_a_file_names_no_variable(tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    path.write_text(
        "tasks:\n  backends:\n    - {name: a, primary: true}\n    - {name: b, primary: true}\n",
        encoding="utf-8",
    )
    text = _load_error(path, {"LEX_TASKS__BACKENDS__B__QUEUE_NAME": "jobs"})
    assert "are all marked primary" in text
    assert "environment variable" not in text


def test_overridden_variable_is_not_blamed() -> None:
    # An explicit override replaces the variable's value: the error is not the variable's.
    with pytest.raises(TaskConfigurationError) as caught:
        TaskConfig.from_env(
            environ={"LEX_TASKS__WORKER__WORKER_COUNT": "3"},
            overrides={"worker": {"worker_count": -1}},
        )
    assert "environment variable" not in str(caught.value)
    assert "tasks.worker.worker_count = -1: must be ≥ 0." in str(caught.value)


def test_configs_from_variables_and_from_data_stay_equal() -> None:
    from_env = TaskConfig.from_env(environ={"LEX_TASKS__WORKER__WORKER_COUNT": "3"})
    assert from_env == TaskConfig.from_dict({"worker": {"worker_count": 3}})


# ---------------------------------------------------------------- values a backend refuses


def _provider_error(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], config: TaskConfig | None = None
) -> Exception:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    provider = TaskProvider(config=config)
    with pytest.raises((TaskConfigurationError, BackendNotFoundError)) as caught:
        _ = provider.queues
    return caught.value


def test_provider_names_the_variable_of_a_named_backends_option(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = TaskConfig.from_dict(
        {"backends": [{"name": "main", "type": "memory"}, {"name": "other", "type": "memory"}]}
    )
    error = _provider_error(
        monkeypatch, {"LEX_TASKS__BACKENDS__OTHER__OPTIONS__VISIBILITY_TIMEOUT": "abc"}, config
    )
    assert str(error).startswith(
        "tasks.backends[1].options.visibility_timeout = 'abc' (from environment variable "
        "LEX_TASKS__BACKENDS__OTHER__OPTIONS__VISIBILITY_TIMEOUT): memory backend 'other' "
        "option visibility_timeout='abc' is not a number. Set options.visibility_timeout"
    )
    assert isinstance(error, TaskConfigurationError)
    assert error.details["source"] == (
        "environment variable LEX_TASKS__BACKENDS__OTHER__OPTIONS__VISIBILITY_TIMEOUT"
    )


def test_provider_names_the_variable_of_the_backend_sections_option(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    error = _provider_error(monkeypatch, {"LEX_TASKS__BACKEND__OPTIONS__MAX_SIZ": "3"})
    assert str(error).startswith(
        "tasks.backend.options.max_siz = '3' (from environment variable "
        "LEX_TASKS__BACKEND__OPTIONS__MAX_SIZ): memory backend 'tasks' got an unknown "
        "option 'max_siz'. Did you mean 'max_size'?"
    )


def test_provider_names_the_variable_of_a_type(monkeypatch: pytest.MonkeyPatch) -> None:
    error = _provider_error(monkeypatch, {"LEX_TASKS__BACKENDS__MAIN__TYPE": "memroy"})
    assert isinstance(error, BackendNotFoundError)
    assert str(error).startswith(
        "tasks.backends[0].type = 'memroy' (from environment variable "
        "LEX_TASKS__BACKENDS__MAIN__TYPE): No task backend named 'memroy'"
    )


def test_provider_names_the_variable_of_a_url_it_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A URL whose port cannot be read: refused before any backend is looked up.
    error = _provider_error(
        monkeypatch,
        {
            "LEX_TASKS__BACKENDS__MAIN__TYPE": "memory",
            "LEX_TASKS__BACKENDS__MAIN__URL": "redis://:hunter2@cache:notaport/0",
        },
    )
    assert str(error).startswith(
        "tasks.backends[0].url = 'redis://:***@cache:notaport/0' (from environment variable "
        "LEX_TASKS__BACKENDS__MAIN__URL): it is not a valid URL (its host or port cannot be "
        "read). Write it as scheme://host:port/..."
    )


def test_provider_names_the_variable_of_a_memory_option_it_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    error = _provider_error(
        monkeypatch,
        {
            "LEX_TASKS__BACKENDS__MAIN__TYPE": "memory",
            "LEX_TASKS__BACKENDS__MAIN__OPTIONS__MAX_SIZE": "0",
        },
    )
    assert str(error) == (
        "tasks.backends[0].options.max_size = '0' (from environment variable "
        "LEX_TASKS__BACKENDS__MAIN__OPTIONS__MAX_SIZE): MemoryTaskQueue max_size=0 is below "
        "1. Use None for no limit."
    )


def test_provider_leaves_an_option_from_code_unattributed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = TaskConfig.from_dict(
        {"backends": [{"name": "main", "type": "memory", "options": {"max_size": "x"}}]}
    )
    error = _provider_error(monkeypatch, {"LEX_TASKS__BACKENDS__MAIN__QUEUE_NAME": "jobs"}, config)
    assert str(error).startswith("tasks.backends[0]: memory backend 'main' option max_size='x'")


# ---------------------------------------------------------------- the commands


def _run(*args: str, env: dict[str, str]) -> str:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == 2, result.output
    return result.output


def test_command_names_the_variable_of_a_named_backends_option(app_yaml: Path) -> None:
    output = _run(
        "inspect",
        "--config",
        str(app_yaml),
        "--backend",
        "other",
        env={"LEX_TASKS__BACKENDS__OTHER__OPTIONS__VISIBILITY_TIMEOUT": "-1"},
    )
    assert (
        "error: tasks.backends[1].options.visibility_timeout = '-1' (from environment variable "
        "LEX_TASKS__BACKENDS__OTHER__OPTIONS__VISIBILITY_TIMEOUT): MemoryTaskQueue "
        "visibility_timeout=-1.0 is not a positive number" in output
    )


def test_command_names_the_variable_of_the_primary_backends_option() -> None:
    output = _run(
        "inspect",
        env={
            "LEX_TASKS__BACKENDS__MAIN__TYPE": "memory",
            "LEX_TASKS__BACKENDS__MAIN__OPTIONS__MAX_SIZE": "lots",
        },
    )
    assert (
        "error: tasks.backends[0].options.max_size = 'lots' (from environment variable "
        "LEX_TASKS__BACKENDS__MAIN__OPTIONS__MAX_SIZE): memory backend 'main' option "
        "max_size='lots' is not a whole number" in output
    )


def test_command_names_the_variable_of_the_backend_sections_type() -> None:
    output = _run("inspect", env={"LEX_TASKS__BACKEND__TYPE": "memroy"})
    assert (
        "error: tasks.backend.type = 'memroy' (from environment variable "
        "LEX_TASKS__BACKEND__TYPE): No task backend named 'memroy'" in output
    )


def test_command_given_another_backend_blames_no_variable() -> None:
    # --backend replaces the configured type: its refusal is not the variables'.
    output = _run(
        "inspect",
        "--backend",
        "memroy",
        env={"LEX_TASKS__BACKEND__TYPE": "memory", "LEX_TASKS__BACKEND__QUEUE_NAME": "jobs"},
    )
    assert "No task backend named 'memroy'" in output
    assert "environment variable" not in output


def test_worker_names_the_variable_of_its_backends_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker builds its backend through the composition root (build_stack).
    (tmp_path / "envsourcesapp.py").write_text(
        "from lexigram.tasks import task\n\n\n"
        "@task()\nasync def noop() -> None:\n    return None\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    output = _run(
        "worker",
        "envsourcesapp",
        env={
            "LEX_TASKS__BACKENDS__MAIN__TYPE": "memory",
            "LEX_TASKS__BACKENDS__MAIN__OPTIONS__IDEMPOTENCY_TTL": "soon",
        },
    )
    assert (
        "error: tasks.backends[0].options.idempotency_ttl = 'soon' (from environment "
        "variable LEX_TASKS__BACKENDS__MAIN__OPTIONS__IDEMPOTENCY_TTL): " in output
    )


def test_provider_without_a_config_puts_a_bad_variable_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEX_TASKS__WORKER__WORKER_COUNT", "-1")
    with pytest.raises(TaskConfigurationError) as caught:
        _ = TaskProvider().queues
    assert str(caught.value).startswith(
        "Invalid task configuration in the environment (1 problem); fix each line below.\n"
        "  tasks.worker.worker_count = '-1' (from environment variable "
        "LEX_TASKS__WORKER__WORKER_COUNT): "
    )
