from __future__ import annotations

from typing import ClassVar

import pytest

from lexigram.contracts.tasks import TaskBackendSpec, TaskConfigurationError
from lexigram.tasks._backends import TaskBackendRegistry, backend_type_of
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.config import ConfigIssue, Environment, TaskConfig, TaskSchedulerConfig

PASSWORD = "s3cr3t-pa55"  # noqa: S105 - a marker the tests search for in output


def _issues(config: TaskConfig, env: str) -> dict[str, ConfigIssue]:
    return {issue.field: issue for issue in config.validate_for_environment(env)}


def test_validate_memory_backend_is_an_error_in_production_only():
    config = TaskConfig()
    issue = _issues(config, "production")["tasks.backend.type"]
    assert issue.severity == "error"
    assert "in-memory backend" in issue.message
    assert _issues(config, "staging")["tasks.backend.type"].severity == "warning"
    assert config.validate_for_environment("development") == []
    assert config.validate_for_environment("testing") == []


def test_validate_flags_named_memory_backend_in_production():
    config = TaskConfig.from_dict(
        {
            "backends": [
                {"name": "p", "type": "redis", "redis_url": f"redis://:{PASSWORD}@cache:6379"},
                {"name": "m", "type": "memory"},
            ]
        }
    )
    issues = _issues(config, "production")
    assert issues["tasks.backends[1].type"].severity == "error"
    assert "tasks.backends[0].redis_url" not in issues


def test_validate_flags_guest_guest_and_masks_the_password():
    config = TaskConfig.from_dict(
        {"backend": {"type": "redis", "url": "redis://guest:guest@cache.internal:6379/0"}}
    )
    issue = _issues(config, "production")["tasks.backend.url"]
    assert issue.severity == "error"
    assert "default login 'guest'" in issue.message
    assert issue.value == "'redis://guest:***@cache.internal:6379/0'"
    assert _issues(config, "development")["tasks.backend.url"].severity == "warning"


class _AcmeBackend:
    """A backend registered in code that serves ``acme://`` URLs."""

    url_schemes: ClassVar[tuple[str, ...]] = ("acme",)

    def create_queue(self, spec: TaskBackendSpec, /) -> MemoryTaskQueue:
        return MemoryTaskQueue(queue_name=spec.queue_name)


def _acme_registry() -> TaskBackendRegistry:
    registry = TaskBackendRegistry()
    registry.register("acme", _AcmeBackend())
    return registry


def test_a_url_alone_is_checked_as_the_backend_its_scheme_selects():
    # The runtime builds the backend that serves the URL's scheme; the checks must judge
    # that backend, not the `memory` default of the unset `type` field.
    config = TaskConfig.from_dict({"backend": {"url": "acme://guest:guest@queue.internal/"}})
    registry = _acme_registry()
    assert backend_type_of(config.backend, registry=registry) == "acme"
    issues = {i.field: i for i in config.validate_for_environment("production", registry=registry)}
    assert "tasks.backend.type" not in issues
    assert "default login 'guest'" in issues["tasks.backend.url"].message


def test_a_url_of_another_backend_than_the_type_is_an_error():
    config = TaskConfig.from_dict(
        {"backend": {"type": "memory", "url": f"acme://u:{PASSWORD}@queue.internal/"}}
    )
    issues = config.validate_for_environment("development", registry=_acme_registry())
    assert [(i.field, i.severity) for i in issues] == [("tasks.backend.url", "error")]
    assert "served by the 'acme' backend, but tasks.backend.type is 'memory'" in issues[0].message
    assert PASSWORD not in str(issues[0])


def test_validate_workers_disabled_with_scheduler_warns():
    config = TaskConfig.from_dict({"worker": {"worker_count": 0}})
    issue = _issues(config, "development")["tasks.worker.worker_count"]
    assert issue.severity == "warning"
    no_scheduler = TaskConfig.from_dict(
        {"worker": {"worker_count": 0}, "scheduler": {"enabled": False}}
    )
    assert no_scheduler.validate_for_environment("development") == []


def test_validate_contradicting_timeouts_are_errors():
    config = TaskConfig.from_dict({"worker": {"default_timeout": 100, "max_timeout": 10}})
    issues = _issues(config, "development")
    assert issues["tasks.worker.default_timeout"].severity == "error"


def test_timeouts_are_checked_as_the_workers_run_with_them():
    # The timeout section's value replaces the worker section's default: 5 s within 10.
    combined = TaskConfig.from_dict(
        {"worker": {"max_timeout": 10}, "timeout": {"default_timeout": 5}}
    )
    assert combined.validate_for_environment("development") == []
    # The worker section's default of 300 s exceeds the timeout section's 10.
    issues = _issues(TaskConfig.from_dict({"timeout": {"max_timeout": 10}}), "development")
    issue = issues["tasks.worker.default_timeout"]
    assert "exceeds tasks.timeout.max_timeout (10.0)" in issue.message


def _from_dict() -> object:
    return TaskConfig.from_dict({"scheduler": {"timezone": "Mars/Olympus"}})


def _constructed() -> object:
    return TaskSchedulerConfig(timezone="Mars/Olympus")


@pytest.mark.parametrize("build", [_from_dict, _constructed])
def test_an_unknown_scheduler_timezone_fails_when_the_config_is_read(build) -> None:
    with pytest.raises(TaskConfigurationError) as refused:
        build()
    assert "tasks.scheduler.timezone = 'Mars/Olympus': is not a known IANA timezone" in str(
        refused.value
    )


def test_validate_errors_come_first():
    config = TaskConfig.from_dict({"worker": {"worker_count": 0}})
    severities = [issue.severity for issue in config.validate_for_environment("production")]
    assert severities == sorted(severities, key=["error", "warning", "info"].index)
    assert severities[0] == "error"


def test_validate_uses_lex_env_when_env_is_none(monkeypatch):
    monkeypatch.setenv("LEX_ENV", "production")
    assert TaskConfig().validate_for_environment()
    monkeypatch.setenv("LEX_ENV", "development")
    assert TaskConfig().validate_for_environment() == []
    # The config's own env field wins over LEX_ENV.
    assert TaskConfig(env=Environment.PRODUCTION).validate_for_environment()


def test_validate_rejects_unknown_environment_name():
    with pytest.raises(TaskConfigurationError, match="is not a known environment"):
        TaskConfig().validate_for_environment("moon")


def test_validate_disabled_module_is_reported_as_info():
    (issue,) = TaskConfig(enabled=False).validate_for_environment("development")
    assert issue.severity == "info"
