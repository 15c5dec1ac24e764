"""``lexigram-tasks schedule`` without a server: id lookup, errors, help, namespaces.

The commands against stores that hold schedules run in tests-integration/cli.
"""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from lexigram.tasks import TaskProvider
from lexigram.tasks.admin import OperationError, find_schedule, outcome_text, schedule_row
from lexigram.tasks.cli import cli
from lexigram.tasks.cli._app import LoadedApp
from lexigram.tasks.cli._scheduler import app_namespace
from lexigram.tasks.config import TaskConfig

MEMORY = {"LEX_TASKS__BACKEND__TYPE": "memory"}


def row(namespace: str | None, schedule_id: str) -> dict[str, Any]:
    key = schedule_id if namespace is None else f"{namespace}/{schedule_id}"
    record = {"job_id": schedule_id, "namespace": namespace, "job_template": {"name": "t"}}
    return schedule_row(key, record)


ROWS = [row("billing", "cli:tick"), row("mail", "cli:tick"), row("mail", "cli:digest")]


def test_find_schedule_by_key_id_or_unique_prefix() -> None:
    assert find_schedule(ROWS, "mail/cli:tick")["namespace"] == "mail"
    assert find_schedule(ROWS, "cli:digest")["key"] == "mail/cli:digest"
    assert find_schedule(ROWS, "cli:d")["key"] == "mail/cli:digest"
    assert find_schedule(ROWS, "billing/")["key"] == "billing/cli:tick"


def test_find_schedule_ambiguous_or_unknown_says_what_to_do() -> None:
    with pytest.raises(OperationError, match=r"2 schedules match 'cli:tick' \(billing/cli:tick, "):
        find_schedule(ROWS, "cli:tick")
    with pytest.raises(OperationError, match=r"NAMESPACE/ID, pass --namespace"):
        find_schedule(ROWS, "cli:")
    with pytest.raises(OperationError, match=r"No stored schedule has an id starting with 'xyzw'"):
        find_schedule(ROWS, "xyzw")


@pytest.mark.parametrize("ident", ["", "c", "cli"])
def test_a_name_shorter_than_a_prefix_matches_no_schedule_by_prefix(ident: str) -> None:
    # `schedule remove ""`, from a script whose variable was unset, removed a schedule.
    with pytest.raises(OperationError, match=r"a prefix of an id needs at least 4 characters"):
        find_schedule(ROWS, ident)
    assert find_schedule([row(None, "ab")], "ab")["key"] == "ab"  # a whole short id is fine


def test_outcome_text_names_the_error_of_a_failed_enqueue() -> None:
    assert outcome_text({"last_outcome": None}) == "-"
    assert outcome_text({"last_outcome": "enqueued"}) == "enqueued"
    assert outcome_text({"last_outcome": "failed", "last_error": "full"}) == "failed: full"


def test_schedule_commands_on_a_backend_without_a_store_are_one_line() -> None:
    result = CliRunner().invoke(cli, ["schedule", "list"], env=MEMORY)
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "The memory backend keeps schedules inside the scheduler process" in line
    assert "--backend redis://" in line


def test_schedule_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["schedule", "--help"])
    assert result.exit_code == 0
    for name in ("list", "remove", "pause", "resume", "run-now"):
        assert name in result.stdout
    assert "schedule" in CliRunner().invoke(cli, ["--help"]).stdout
    scheduler_help = CliRunner().invoke(cli, ["scheduler", "--help"]).stdout
    assert "--namespace" in scheduler_help


@pytest.mark.parametrize(
    ("source", "expected"),
    [("myapp.tasks:app", "myapp.tasks"), ("myapp.tasks", "myapp.tasks")],
)
def test_scheduler_namespace_defaults_to_the_app_module(source: str, expected: str) -> None:
    assert app_namespace(LoadedApp(source=source)) == expected


def test_scheduler_namespace_of_a_config_app_is_its_first_module() -> None:
    config = TaskConfig.from_dict({"extra": {"app": ["shop.tasks:registry", "shop.more"]}})
    assert app_namespace(LoadedApp(source="tasks.yaml", config=config)) == "shop.tasks"


def test_provider_scheduler_namespace_is_configured_or_its_primary_queue() -> None:
    backend = {"type": "memory", "queue_name": "jobs"}
    provider = TaskProvider(config=TaskConfig.from_dict({"backend": backend}))
    provider.queues  # noqa: B018 - building the queues names the scheduler's owner
    assert provider.scheduler is not None
    assert (provider.scheduler.namespace, provider.scheduler.queue_name) == ("queue:jobs", "jobs")
    named = {"backend": backend, "scheduler": {"namespace": "shop"}}
    provider = TaskProvider(config=TaskConfig.from_dict(named))
    provider.queues  # noqa: B018
    assert provider.scheduler is not None
    assert provider.scheduler.namespace == "shop"
