"""Core behaviour checked with the first-party backends installed (their URL schemes, config
fields and type names); core's own unit session installs core alone."""

from __future__ import annotations

from lexigram.tasks.config import ConfigIssue, TaskConfig

PASSWORD = "s3cr3t-pa55"  # noqa: S105 - a marker the tests search for in output


def _issues(config: TaskConfig, env: str) -> dict[str, ConfigIssue]:
    return {issue.field: issue for issue in config.validate_for_environment(env)}


def test_validate_flags_placeholder_password():
    config = TaskConfig.from_dict(
        {"backend": {"type": "redis", "redis_url": "redis://:changeme@cache:6379"}}
    )
    issue = _issues(config, "production")["tasks.backend.redis_url"]
    assert "placeholder" in issue.message
    assert "changeme" not in str(issue)


def test_validate_flags_default_url_and_localhost_and_no_password_in_production():
    default = TaskConfig.from_dict({"backend": {"type": "redis"}})
    messages = [i.message for i in default.validate_for_environment("production")]
    assert any("built-in default placeholder" in m for m in messages)
    assert any("no password" in m for m in messages)
    local = TaskConfig.from_dict(
        {"backend": {"type": "redis", "redis_url": f"redis://:{PASSWORD}@127.0.0.1:6380/0"}}
    )
    # Other issues (e.g. "backend 'redis' is not installed" in a core-only env) may be listed too.
    (issue,) = [i for i in local.validate_for_environment("production") if "points at" in i.message]
    assert issue.severity == "warning"
    assert "points at 127.0.0.1" in issue.message
    assert PASSWORD not in str(issue)


def test_validate_postgres_without_dsn_is_an_error():
    config = TaskConfig.from_dict({"backends": [{"name": "pg", "type": "postgres"}]})
    issue = _issues(config, "development")["tasks.backends[0].postgres_dsn"]
    assert issue.severity == "error"


def test_validate_unknown_backend_type_names_installed_types():
    config = TaskConfig.from_dict({"backend": {"type": "rediss"}})
    issue = _issues(config, "development")["tasks.backend.type"]
    assert issue.severity == "error"
    assert "'memory'" in issue.message
    assert "Did you mean 'redis'?" in issue.fix
    assert "pip install" not in issue.fix  # redis is installed here
