"""Core behaviour checked with the first-party backends installed: their URL schemes, config
fields and type names. Core's own unit session installs core alone, without them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from lexigram.app import Application, ApplicationStartError
from lexigram.contracts.tasks import BackendNotFoundError, TaskBackendSpec, TaskQueueError
from lexigram.tasks import TaskProvider, _backends
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.backends.postgres import PostgresTaskQueue
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue
from lexigram.tasks.backends.redis import RedisTaskQueue
from lexigram.tasks.backends.sqlite import SQLiteTaskQueue
from lexigram.tasks.cli import cli
from lexigram.tasks.cli._context import parse_backend
from lexigram.tasks.config import ConfigIssue, NamedTaskConfig, TaskBackendConfig, TaskConfig
from lexigram.tasks.decorators import task
from lexigram.tasks.di._stack import build_stack
from lexigram.tasks.workflows import JobChain

PASSWORD = "s3cr3t-pa55"  # noqa: S105 - a marker the tests search for in output


def _issues(config: TaskConfig, env: str) -> dict[str, ConfigIssue]:
    return {issue.field: issue for issue in config.validate_for_environment(env)}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("redis://localhost:6379/0", ("redis", "redis://localhost:6379/0")),
        ("rediss://h:6380", ("redis", "rediss://h:6380")),
        ("amqp://guest:guest@h/", ("rabbitmq", "amqp://guest:guest@h/")),
        ("amqps://h/", ("rabbitmq", "amqps://h/")),
        ("postgresql://h/db", ("postgres", "postgresql://h/db")),
        ("postgres://h/db", ("postgres", "postgres://h/db")),
        ("sqlite:///tasks.db", ("sqlite", "sqlite:///tasks.db")),
        ("memory", ("memory", None)),
        ("Redis", ("redis", None)),
        ("memory://", ("memory", "memory://")),
    ],
)
def test_parse_backend_maps_schemes_and_names(value: str, expected: tuple[str, str | None]) -> None:
    assert parse_backend(value) == expected


def test_cli_unknown_url_scheme_is_one_line_with_exit_2() -> None:
    result = CliRunner().invoke(
        cli,
        ["inspect", "--backend", "mysql://root:hunter2@db/app"],
        env={"LEX_TASKS__BACKEND__TYPE": "memory"},
    )
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert "scheme 'mysql'" in line
    assert "redis://" in line
    assert "hunter2" not in result.output


def test_spec_from_config_unwraps_secret_and_prefers_generic_url() -> None:
    named = NamedTaskConfig(
        name="n", type="redis", redis_url=SecretStr("redis://u:pw@h:1/0"), queue_name="q"
    )
    spec = _backends.spec_from_config(named)
    assert spec.url == "redis://u:pw@h:1/0"
    assert "pw" not in repr(spec)
    assert spec.name == "n"
    generic = TaskBackendConfig(type="acme", url=SecretStr("acme://x"))
    assert _backends.spec_from_config(generic).url == "acme://x"


def test_validate_flags_placeholder_password() -> None:
    config = TaskConfig.from_dict(
        {"backend": {"type": "redis", "redis_url": "redis://:changeme@cache:6379"}}
    )
    issue = _issues(config, "production")["tasks.backend.redis_url"]
    assert "placeholder" in issue.message
    assert "changeme" not in str(issue)


def test_validate_flags_default_url_and_localhost_and_no_password_in_production() -> None:
    default = TaskConfig.from_dict({"backend": {"type": "redis"}})
    messages = [i.message for i in default.validate_for_environment("production")]
    assert any("built-in default placeholder" in m for m in messages)
    assert any("no password" in m for m in messages)
    local = TaskConfig.from_dict(
        {"backend": {"type": "redis", "redis_url": f"redis://:{PASSWORD}@127.0.0.1:6380/0"}}
    )
    (issue,) = [i for i in local.validate_for_environment("production") if "points at" in i.message]
    assert issue.severity == "warning"
    assert "points at 127.0.0.1" in issue.message
    assert PASSWORD not in str(issue)


def test_validate_postgres_without_dsn_is_an_error() -> None:
    config = TaskConfig.from_dict({"backends": [{"name": "pg", "type": "postgres"}]})
    issue = _issues(config, "development")["tasks.backends[0].postgres_dsn"]
    assert issue.severity == "error"


def test_validate_unknown_backend_type_names_installed_types() -> None:
    config = TaskConfig.from_dict({"backend": {"type": "rediss"}})
    issue = _issues(config, "development")["tasks.backend.type"]
    assert issue.severity == "error"
    assert "'memory'" in issue.message
    assert "Did you mean 'redis'?" in issue.fix
    assert "pip install" not in issue.fix  # redis is installed here


async def test_provider_unknown_backend_type_fails_at_start_naming_field_value_and_fix() -> None:
    provider = TaskProvider(config=TaskConfig.from_dict({"backend": {"type": "rediss"}}))
    app = Application().use(provider)
    with pytest.raises(ApplicationStartError) as info:
        await app.start()
    cause = info.value.__cause__
    assert isinstance(cause, BackendNotFoundError)
    assert cause.message.startswith(
        "tasks.backend.type = 'rediss': No task backend named 'rediss' is installed (installed: "
    )
    assert cause.message.endswith("Did you mean 'redis'?")
    assert {t for t in asyncio.all_tasks() if t is not asyncio.current_task()} == set()


def test_every_queue_class_defaults_to_the_configured_default_queue_name(tmp_path: Path) -> None:
    # A queue built by hand (a script filling a queue, a test) must meet the CLI's and the
    # provider's default queue; on SQLite it once was "default" and met nothing.
    expected = TaskBackendConfig().queue_name
    queues = [
        MemoryTaskQueue(),
        RedisTaskQueue(),
        RabbitMQTaskQueue(),
        PostgresTaskQueue(),
        SQLiteTaskQueue(str(tmp_path / "q.db")),
    ]
    assert {type(queue).__name__: queue.queue_name for queue in queues} == {
        type(queue).__name__: expected for queue in queues
    }


async def test_a_backend_without_a_shared_run_store_refuses_queue_driven_workflows() -> None:
    """RabbitMQ without `stores` has no workflow store: no silent process-local fallback."""

    @task(name="first_party.step")
    async def step(x: int) -> int:
        return x

    spec = TaskBackendSpec(type="rabbitmq", url="amqp://guest:guest@127.0.0.1:5672/")
    stack = build_stack(
        "rabbit", spec, field="tasks.backend", registry=_backends.TaskBackendRegistry()
    )
    try:
        assert stack.workflow_store is None
        with pytest.raises(TaskQueueError, match="No workflow run store is registered"):
            await JobChain(step.s(1)).apply_async(stack.queue)
    finally:
        await stack.close()
    memory = build_stack(
        "mem",
        TaskBackendSpec(type="memory"),
        field="tasks.backend",
        registry=_backends.TaskBackendRegistry(),
    )
    assert memory.workflow_store is not None  # one process is the memory backend's whole world
