from __future__ import annotations

import logging

import pytest

from lexigram.contracts.tasks import TaskConfigurationError
from lexigram.tasks import constants
from lexigram.tasks.config import (
    Environment,
    NamedTaskConfig,
    TaskBackendConfig,
    TaskConfig,
    TaskWorkerConfig,
)

PASSWORD = "s3cr3t-pa55"  # noqa: S105 - a marker the tests search for in output


def test_config_defaults_match_published_api():
    config = TaskConfig()
    assert config.name == "tasks"
    assert config.enabled is True
    assert config.backend.type == constants.DEFAULT_BACKEND
    assert config.backend.redis_url.get_secret_value() == constants.DEFAULT_REDIS_URL
    assert config.backend.amqp_url.get_secret_value() == constants.DEFAULT_AMQP_URL
    assert config.backend.queue_name == constants.DEFAULT_QUEUE_NAME
    assert config.worker.worker_count == constants.DEFAULT_WORKER_COUNT
    assert config.worker.max_concurrent_tasks == constants.DEFAULT_MAX_CONCURRENT_TASKS
    assert config.worker.shutdown_timeout == constants.DEFAULT_SHUTDOWN_TIMEOUT
    assert config.scheduler.enabled is True
    assert config.scheduler.timezone == constants.DEFAULT_SCHEDULER_TIMEZONE
    assert config.rate_limit.enabled is False
    assert config.timeout.default_timeout == constants.DEFAULT_TASK_TIMEOUT
    assert config.backends == []
    assert config.env is None
    assert TaskConfig.config_section == "tasks"
    assert TaskConfig.env_prefix == "LEX_TASKS__"


def test_config_from_dict_builds_nested_sections():
    config = TaskConfig.from_dict(
        {
            "worker": {"worker_count": 4, "shutdown_timeout": 5},
            "scheduler": {"enabled": False},
            "backends": [{"name": "a", "type": "memory"}, {"name": "b", "primary": True}],
        }
    )
    assert config.worker.worker_count == 4
    assert config.worker.shutdown_timeout == 5.0
    assert config.scheduler.enabled is False
    assert config.is_multi_backend
    assert config.primary_backend is not None
    assert config.primary_backend.name == "b"


def test_config_primary_backend_defaults_to_first_entry():
    config = TaskConfig(backends=[NamedTaskConfig(name="x"), NamedTaskConfig(name="y")])
    assert config.primary_backend is not None
    assert config.primary_backend.name == "x"
    assert TaskConfig().primary_backend is None


def test_config_negative_worker_count_names_field_value_and_fix():
    with pytest.raises(TaskConfigurationError) as info:
        TaskConfig.from_dict({"worker": {"worker_count": -1}})
    assert (
        "tasks.worker.worker_count = -1: must be ≥ 0. Set a non-negative number of workers."
        in str(info.value)
    )
    (problem,) = info.value.details["problems"]
    assert problem["field"] == "tasks.worker.worker_count"
    assert problem["value"] == "-1"


def test_config_constructor_and_assignment_raise_configuration_error():
    with pytest.raises(TaskConfigurationError, match=r"tasks\.worker\.worker_count = -3"):
        TaskWorkerConfig(worker_count=-3)
    with pytest.raises(TaskConfigurationError, match=r"tasks\.worker\.max_concurrent_tasks = 0"):
        # A mapping on purpose: the outer model validates it and names the nested field.
        TaskConfig(worker={"max_concurrent_tasks": 0})  # type: ignore[arg-type]
    config = TaskConfig()
    with pytest.raises(TaskConfigurationError, match=r"tasks\.worker\.worker_count = 'many'"):
        config.worker.worker_count = "many"  # type: ignore[assignment]
    assert config.worker.worker_count == 1


def test_config_model_validate_raises_configuration_error():
    with pytest.raises(TaskConfigurationError, match="must be > 0"):
        TaskConfig.model_validate({"scheduler": {"check_interval": 0}})


def test_config_lists_every_problem_on_its_own_line():
    with pytest.raises(TaskConfigurationError) as info:
        TaskConfig.from_dict(
            {
                "worker": {"worker_count": "four", "poll_interval": -1},
                "rate_limit": {"enabled": "maybe"},
                "backends": [{"type": "redis"}],
            }
        )
    lines = str(info.value).splitlines()
    assert lines[0].startswith("Invalid task configuration (4 problems)")
    assert any("tasks.worker.worker_count = 'four': must be a whole number." in x for x in lines)
    assert any("tasks.worker.poll_interval = -1: must be > 0." in x for x in lines)
    assert any("tasks.rate_limit.enabled = 'maybe': must be true or false." in x for x in lines)
    assert any("tasks.backends[0].name = (missing): is required." in x for x in lines)
    assert all(line.endswith(".") for line in lines)


def test_config_strict_rejects_unknown_keys_with_suggestion():
    with pytest.raises(TaskConfigurationError) as info:
        TaskConfig.from_dict(
            {"worker": {"worker_cuont": 4}, "backends": [{"name": "a", "tpye": "redis"}]},
            strict=True,
        )
    text = str(info.value)
    assert (
        "tasks.worker.worker_cuont = 4: unknown key. Did you mean 'worker_count'? "
        "Fix the spelling or remove the key." in text
    )
    assert "tasks.backends[0].tpye = 'redis': unknown key. Did you mean 'type'?" in text


def test_a_process_wide_key_in_a_named_backend_says_where_it_goes():
    with pytest.raises(TaskConfigurationError) as info:
        TaskConfig.from_dict({"backends": [{"name": "a", "enqueue_timeout": 2}]})
    assert (
        "tasks.backends[0].enqueue_timeout = 2: unknown key. Set it as "
        "tasks.backend.enqueue_timeout (one deadline for every queue), or remove the key."
    ) in str(info.value)
    config = TaskConfig.from_dict(
        {"backend": {"enqueue_timeout": 2}, "backends": [{"name": "a", "type": "memory"}]}
    )
    assert config.backend.enqueue_timeout == 2


def test_config_strict_allows_free_form_options_and_extra():
    config = TaskConfig.from_dict(
        {"backend": {"options": {"anything": 1}}, "extra": {"custom": {"x": 1}}}, strict=True
    )
    assert config.backend.options == {"anything": 1}


def test_config_lenient_ignores_unknown_keys_and_logs_them(caplog):
    with caplog.at_level(logging.WARNING, logger="lexigram.tasks.config"):
        config = TaskConfig.from_dict({"worker": {"workers": 3}}, strict=False)
    assert config.worker.worker_count == 1
    assert "tasks.worker.workers = 3: unknown key" in caplog.text


def test_config_rejects_duplicate_backend_names_and_two_primaries():
    with pytest.raises(TaskConfigurationError, match=r"backend names \['a'\] are used more"):
        TaskConfig.from_dict({"backends": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(TaskConfigurationError, match="are all marked primary"):
        TaskConfig.from_dict(
            {"backends": [{"name": "a", "primary": True}, {"name": "b", "primary": True}]}
        )


def test_config_env_field_accepts_aliases_and_rejects_unknown():
    assert TaskConfig(env="prod").env is Environment.PRODUCTION  # type: ignore[arg-type]
    with pytest.raises(TaskConfigurationError, match=r"tasks\.env = 'prdo': is not a known"):
        TaskConfig.from_dict({"env": "prdo"})


def _is_development(config: TaskConfig) -> bool:
    """What `config.is_development` says now (it follows LEX_ENV).

    Read through a call: mypy keeps an assert's narrowing of the attribute across the calls
    that change it, and would take the opposite assert that follows for unreachable.
    """
    return config.is_development


def test_config_environment_comes_from_lex_env(monkeypatch):
    monkeypatch.setenv("LEX_ENV", "production")
    config = TaskConfig()
    assert config.environment is Environment.PRODUCTION
    assert config.is_production
    assert not _is_development(config)
    monkeypatch.setenv("LEX_ENV", "test")
    assert config.is_testing
    monkeypatch.delenv("LEX_ENV")
    assert _is_development(config)
    assert TaskConfig(env=Environment.STAGING).is_staging


def test_config_invalid_lex_env_names_the_variable(monkeypatch):
    monkeypatch.setenv("LEX_ENV", "prodution")
    with pytest.raises(TaskConfigurationError, match="LEX_ENV='prodution' is not a known"):
        _ = TaskConfig().environment


def test_config_from_named_builds_single_backend_config():
    entry = NamedTaskConfig(
        name="emails",
        type="redis",
        redis_url=f"redis://:{PASSWORD}@cache:6379/1",  # type: ignore[arg-type]
        queue_name="mail",
        options={"key_prefix": "x"},
    )
    config = TaskConfig.from_named(entry)
    assert config.name == "emails"
    assert config.backend.type == "redis"
    assert config.backend.redis_url.get_secret_value() == f"redis://:{PASSWORD}@cache:6379/1"
    assert config.backend.queue_name == "mail"
    assert config.backend.options == {"key_prefix": "x"}
    assert config.backends == []


def test_config_from_named_keeps_base_sections():
    base = TaskConfig(worker=TaskWorkerConfig(worker_count=3), backends=[NamedTaskConfig(name="a")])
    config = TaskConfig.from_named(base.backends[0], base=base)
    assert config.worker.worker_count == 3
    assert config.name == "a"
    assert config.backends == []
    assert base.backends  # the base is not modified


@pytest.mark.parametrize("seconds", [None, 0.5])
def test_config_from_named_keeps_the_bases_enqueue_timeout(seconds: float | None) -> None:
    # One deadline for every queue: a named entry cannot set it, so the base's stays.
    base = TaskConfig(
        backend=TaskBackendConfig(enqueue_timeout=seconds), backends=[NamedTaskConfig(name="a")]
    )
    assert TaskConfig.from_named(base.backends[0], base=base).backend.enqueue_timeout == seconds


def test_config_get_and_has_section():
    config = TaskConfig(worker=TaskWorkerConfig(worker_count=2), extra={"a": {"b": 1}})
    assert config.get("worker.worker_count") == 2
    assert config.get("extra.a.b") == 1
    assert config.get("worker.nope", "dflt") == "dflt"
    assert config.has_section("worker")
    assert not config.has_section("name")
    assert not config.has_section("nothing")


def test_config_secrets_never_appear_in_repr_dump_or_errors():
    url = f"redis://user:{PASSWORD}@cache:6379/0"
    # A backends list replaces the backend section's URLs: one config of each mode.
    single = TaskConfig(backend=TaskBackendConfig(type="redis", redis_url=url))  # type: ignore[arg-type]
    multi = TaskConfig(
        backends=[NamedTaskConfig(name="n", amqp_url=f"amqp://u:{PASSWORD}@mq/")],  # type: ignore[arg-type]
    )
    for config in (single, multi):
        texts = (repr(config), str(config), config.model_dump_json(), str(config.to_safe_dict()))
        for text in texts:
            assert PASSWORD not in text
    assert single.to_safe_dict()["backend"]["redis_url"] == "redis://user:***@cache:6379/0"
    assert multi.to_safe_dict()["backends"][0]["amqp_url"] == "amqp://u:***@mq/"
    # An invalid value in a secret field, or a URL under a mistyped key, is masked too.
    with pytest.raises(TaskConfigurationError) as info:
        TaskConfig.from_dict(
            {
                "backend": {"redis_url": 12, "redsi_url": url},
                "backends": [{"name": "", "url": url}],
            },
            strict=True,
        )
    assert PASSWORD not in str(info.value)
    assert PASSWORD not in repr(info.value.details)
    assert "redis://user:***@cache:6379/0" in str(info.value)


def test_worker_section_sets_job_logging_and_the_loop_lag_monitor() -> None:
    from lexigram.tasks import HandlerRegistry, MemoryTaskQueue, TaskWorker

    defaults = TaskConfig().effective_worker()
    assert (defaults.log_jobs, defaults.loop_lag_threshold) == (False, 0.5)
    config = TaskConfig.from_dict({"worker": {"log_jobs": "true", "loop_lag_threshold": "0"}})
    section = config.effective_worker()
    assert (section.log_jobs, section.loop_lag_threshold) == (True, 0.0)
    worker = TaskWorker("w", MemoryTaskQueue(), HandlerRegistry(), config=section)
    assert worker.lag_monitor is None  # 0 turns the monitor off
    watched = TaskWorker("w", MemoryTaskQueue(), HandlerRegistry(), config=defaults)
    assert watched.lag_monitor is not None


def test_worker_section_rejects_a_negative_loop_lag_threshold() -> None:
    with pytest.raises(TaskConfigurationError, match=r"loop_lag_threshold = -1: must be ≥ 0"):
        TaskConfig.from_dict({"worker": {"loop_lag_threshold": -1}})
