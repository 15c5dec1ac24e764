"""Unknown configuration keys are errors everywhere (file, environment, dict, every command).

Each names the key, its path and the nearest valid key; ``strict: false`` (in the
config) or ``strict=False`` (in ``TaskConfig.from_*``) turns them into warnings, for a
config written for a newer version.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from lexigram.contracts.tasks import TaskConfigurationError
from lexigram.tasks import TaskConfig
from lexigram.tasks.cli import cli

TYPO = "tasks:\n  backend:\n    type: memory\n    ur: redis://localhost:6379/0\n"


@pytest.fixture
def typo_file(tmp_path: Path) -> Path:
    path = tmp_path / "tasks.yaml"
    path.write_text(TYPO)
    return path


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "strict_app.py").write_text(
        "from lexigram.tasks import scheduled, task\n\n"
        "@scheduled('* * * * *')\nasync def tick() -> None:\n    return None\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "strict_app"


def test_from_dict_rejects_an_unknown_key_with_path_and_nearest_key() -> None:
    with pytest.raises(TaskConfigurationError) as info:
        TaskConfig.from_dict({"worker": {"worker_cuont": 2}})
    assert "tasks.worker.worker_cuont = 2: unknown key. Did you mean 'worker_count'?" in str(
        info.value
    )


def test_from_dict_checks_named_backends_too() -> None:
    with pytest.raises(TaskConfigurationError, match=r"tasks\.backends\[0\]\.ur = .*'url'"):
        TaskConfig.from_dict({"backends": [{"name": "a", "ur": "redis://h"}]})


def test_from_yaml_rejects_the_typo(typo_file: Path) -> None:
    with pytest.raises(TaskConfigurationError, match=r"tasks\.backend\.ur = .*Did you mean 'url'"):
        TaskConfig.from_yaml(typo_file)


def test_from_env_rejects_an_unknown_variable() -> None:
    with pytest.raises(TaskConfigurationError) as info:
        TaskConfig.from_env(environ={"LEX_TASKS__BACKEND__UR": "redis://h"})
    message = str(info.value)
    assert "tasks.backend.ur" in message
    assert "LEX_TASKS__BACKEND__UR" in message
    assert "Did you mean 'url'?" in message


def test_opt_out_for_forward_compatibility(
    typo_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    assert TaskConfig.from_dict({"worker": {"new_setting": 1}}, strict=False).strict
    lenient = TaskConfig.from_dict({"strict": False, "worker": {"new_setting": 1}})
    assert lenient.strict is False
    assert "tasks.worker.new_setting" in caplog.text
    assert TaskConfig.from_yaml(typo_file, strict=False).backend.url is None


@pytest.mark.parametrize(
    "args",
    [
        ["inspect"],
        ["enqueue", "tick"],
        ["dlq", "list"],
        ["worker", "strict_app", "--burst"],
        ["scheduler", "strict_app"],
    ],
    ids=lambda args: args[0],
)
def test_every_command_fails_on_the_typo_with_exit_2(
    args: list[str], typo_file: Path, app_module: str
) -> None:
    result = CliRunner().invoke(cli, [*args, "--config", str(typo_file)])
    assert result.exit_code == 2, result.output
    assert "tasks.backend.ur" in result.stderr
    assert "Did you mean 'url'?" in result.stderr


def test_environment_typo_fails_a_command_with_exit_2() -> None:
    result = CliRunner().invoke(cli, ["inspect"], env={"LEX_TASKS__BACKEND__UR": "redis://h"})
    assert result.exit_code == 2, result.output
    assert "LEX_TASKS__BACKEND__UR" in result.stderr
