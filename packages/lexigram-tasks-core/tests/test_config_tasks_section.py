"""A YAML file without a ``tasks:`` section says so, instead of "tasks.<key>: unknown key"."""

from __future__ import annotations

from pathlib import Path

import pytest

from lexigram.contracts.tasks import TaskConfigurationError
from lexigram.tasks.config import TaskConfig


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "application.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_file_with_no_tasks_section_and_no_tasks_setting_says_the_section_is_missing(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "other: 1\n")
    with pytest.raises(TaskConfigurationError) as caught:
        TaskConfig.from_yaml(path, environ={})
    message = caught.value.message
    assert "has no 'tasks:' section (top-level keys: 'other')" in message
    assert "unknown key" not in message


def test_a_nested_section_read_without_section_says_where_to_look(tmp_path: Path) -> None:
    path = write(tmp_path, "app:\n  tasks:\n    worker:\n      worker_count: 5\n")
    with pytest.raises(TaskConfigurationError, match=r"section='app\.tasks'"):
        TaskConfig.from_yaml(path, environ={})
    assert TaskConfig.from_yaml(path, section="app.tasks", environ={}).worker.worker_count == 5


def test_a_whole_file_of_tasks_settings_is_still_the_section(tmp_path: Path) -> None:
    path = write(tmp_path, "worker:\n  worker_count: 2\n")
    assert TaskConfig.from_yaml(path, environ={}).worker.worker_count == 2


def test_a_whole_file_with_one_setting_and_a_typo_names_the_unknown_key(tmp_path: Path) -> None:
    # One key belongs to the section: the file is the section, and the typo is the problem.
    path = write(tmp_path, "worker:\n  worker_count: 2\nwokrer: {}\n")
    with pytest.raises(TaskConfigurationError, match=r"tasks\.wokrer"):
        TaskConfig.from_yaml(path, environ={})


def test_an_empty_tasks_section_gives_the_defaults(tmp_path: Path) -> None:
    assert TaskConfig.from_yaml(write(tmp_path, "tasks:\n"), environ={}) == TaskConfig()


def test_a_tasks_section_that_is_not_a_mapping_is_named(tmp_path: Path) -> None:
    with pytest.raises(TaskConfigurationError, match=r"Section 'tasks' .* is a list"):
        TaskConfig.from_yaml(write(tmp_path, "tasks: [1, 2]\n"), environ={})
