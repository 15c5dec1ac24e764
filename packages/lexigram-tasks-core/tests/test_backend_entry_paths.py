"""An entry of ``tasks.backends`` is named by its position, whichever door reports on it.

Loading, the environment check, the provider and the commands all read one list; a message
about its second entry says ``tasks.backends[1]`` in each of them, also when the message
comes from the check of a URL against its ``type`` deep in the backend layer.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from lexigram.contracts.tasks import TaskConfigurationError
from lexigram.tasks import TaskProvider, _backends
from lexigram.tasks.cli import cli
from lexigram.tasks.config import NamedTaskConfig, TaskConfig

# The second entry's type and URL name two different backends.
DISAGREEING = """\
tasks:
  backends:
    - name: main
      primary: true
      type: memory
    - name: reports
      type: acme
      url: "memory://"
"""

EXPECTED = (
    "tasks.backends[1].url is a memory:// URL, served by the 'memory' backend, but "
    "tasks.backends[1].type is 'acme'."
)


def _config() -> TaskConfig:
    return TaskConfig.from_dict(
        {
            "backends": [
                {"name": "main", "primary": True, "type": "memory"},
                {"name": "reports", "type": "acme", "url": "memory://"},
            ]
        }
    )


def test_the_environment_check_names_the_entry_by_position() -> None:
    issues = _config().validate_for_environment("development")
    errors = [issue for issue in issues if issue.severity == "error"]
    assert [issue.field for issue in errors] == ["tasks.backends[1].url"]
    assert errors[0].message.startswith(EXPECTED)


def test_the_provider_names_the_entry_by_position() -> None:
    provider = TaskProvider(config=_config())
    with pytest.raises(TaskConfigurationError) as caught:
        _ = provider.queues
    assert str(caught.value).startswith(EXPECTED)


def test_a_command_names_the_entry_by_position(tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    path.write_text(DISAGREEING, encoding="utf-8")
    result = CliRunner().invoke(cli, ["inspect", "--config", str(path), "--backend", "reports"])
    assert result.exit_code == 2, result.output
    assert f"error: {EXPECTED}" in result.output


def test_an_entry_outside_a_configuration_is_named_by_its_name() -> None:
    """No list, no position: the name is all that identifies it."""
    entry = NamedTaskConfig.model_validate({"name": "reports", "type": "acme", "url": "memory://"})
    with pytest.raises(TaskConfigurationError) as caught:
        _backends.spec_from_config(entry)
    assert str(caught.value).startswith("tasks.backends[reports].url is a memory:// URL")
    assert _backends.config_path_of(entry, _config()) == "tasks.backends[reports]"
    config = _config()
    assert _backends.config_path_of(config.backends[1], config) == "tasks.backends[1]"
