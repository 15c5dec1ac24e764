from __future__ import annotations

import pytest

from lexigram.contracts.tasks import TaskConfigurationError
from lexigram.tasks.config import TaskConfig

PASSWORD = "s3cr3t-pa55"  # noqa: S105 - a marker the tests search for in output


@pytest.fixture
def write(tmp_path):
    def write(text: str, name: str = "application.yaml"):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


def test_config_from_yaml_reads_tasks_section_and_interpolates(write):
    path = write(
        """
        app: {name: demo}
        tasks:
          worker:
            worker_count: ${WORKERS:-3}
          backend:
            type: redis
            redis_url: "redis://:${REDIS_PASSWORD}@${REDIS_HOST:-localhost}:6379/0"
        """.replace("\n        ", "\n")
    )
    config = TaskConfig.from_yaml(path, environ={"REDIS_PASSWORD": PASSWORD, "REDIS_HOST": "r"})
    assert config.worker.worker_count == 3
    assert config.backend.redis_url.get_secret_value() == f"redis://:{PASSWORD}@r:6379/0"


def test_config_from_yaml_default_applies_to_empty_variable(write):
    path = write("backend:\n  queue_name: ${QUEUE:-jobs}\n")
    assert TaskConfig.from_yaml(path, environ={"QUEUE": ""}).backend.queue_name == "jobs"
    assert TaskConfig.from_yaml(path, environ={"QUEUE": "q"}).backend.queue_name == "q"


def test_config_from_yaml_escaped_placeholder_stays_literal(write):
    path = write("backend:\n  queue_name: 'a$${NOT_A_VAR}'\n")
    assert TaskConfig.from_yaml(path, environ={}).backend.queue_name == "a${NOT_A_VAR}"


def test_config_from_yaml_missing_variable_names_variable_and_file(write):
    path = write("backends:\n  - name: p\n    type: redis\n    redis_url: ${REDIS_URL}\n")
    with pytest.raises(TaskConfigurationError) as info:
        TaskConfig.from_yaml(path, environ={})
    text = str(info.value)
    assert str(path) in text
    assert "tasks.backends[0].redis_url: environment variable REDIS_URL is not set." in text
    assert "${REDIS_URL:-value}" in text
    assert info.value.details["missing_variables"] == ["REDIS_URL"]


def test_config_from_yaml_malformed_placeholder_is_an_error(write):
    path = write("backend:\n  queue_name: ${QUEUE\n")
    with pytest.raises(TaskConfigurationError, match="malformed placeholder"):
        TaskConfig.from_yaml(path, environ={})


def test_config_from_yaml_whole_file_and_explicit_sections(write):
    whole = write("worker:\n  worker_count: 2\n", name="whole.yaml")
    assert TaskConfig.from_yaml(whole, environ={}).worker.worker_count == 2
    nested = write("app:\n  tasks:\n    worker:\n      worker_count: 5\n", name="nested.yaml")
    assert TaskConfig.from_yaml(nested, section="app.tasks", environ={}).worker.worker_count == 5
    with pytest.raises(TaskConfigurationError, match="has no section 'tasks'"):
        TaskConfig.from_yaml(nested, section="tasks", environ={})


def test_config_from_yaml_empty_file_gives_defaults(write):
    assert TaskConfig.from_yaml(write(""), environ={}) == TaskConfig()


def test_config_from_yaml_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(TaskConfigurationError, match="does not exist"):
        TaskConfig.from_yaml(tmp_path / "nope.yaml")


def test_config_from_yaml_syntax_error_shows_position_not_content(write):
    path = write(f"tasks:\n  backend:\n    redis_url: redis://:{PASSWORD}@h\n   bad: [\n")
    with pytest.raises(TaskConfigurationError) as info:
        TaskConfig.from_yaml(path, environ={})
    assert "is not valid YAML at line" in str(info.value)
    assert PASSWORD not in str(info.value)


def test_config_from_yaml_that_is_not_utf8_names_the_line_not_the_content(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(f"tasks:\n  backend:\n    url: redis://:{PASSWORD}\xff@h\n".encode("latin-1"))
    with pytest.raises(TaskConfigurationError) as info:
        TaskConfig.from_yaml(path, environ={})
    assert str(info.value) == (
        f"Config file '{path}' is not UTF-8 text (byte 0xff on line 3). Save it as UTF-8."
    )


def test_config_from_yaml_rejects_non_mapping_document(write):
    with pytest.raises(TaskConfigurationError, match="holds a list, not a mapping"):
        TaskConfig.from_yaml(write("- a\n- b\n"), environ={})


def test_config_from_yaml_invalid_value_names_file_field_value_fix(write):
    path = write("tasks:\n  worker:\n    worker_count: -1\n")
    with pytest.raises(TaskConfigurationError) as info:
        TaskConfig.from_yaml(path, environ={})
    text = str(info.value)
    assert f"in file '{path}'" in text
    assert "tasks.worker.worker_count = -1: must be ≥ 0. Set a non-negative number of workers." in (
        text
    )


def test_config_from_yaml_strict_rejects_unknown_key(write):
    path = write("tasks:\n  scheduler:\n    enable: false\n")
    with pytest.raises(TaskConfigurationError, match="Did you mean 'enabled'"):
        TaskConfig.from_yaml(path, environ={})
    assert TaskConfig.from_yaml(path, strict=False, environ={}).scheduler.enabled is True


def test_config_environment_overrides_file_unless_disabled(write):
    path = write("tasks:\n  worker:\n    worker_count: 2\n")
    environ = {"LEX_TASKS__WORKER__WORKER_COUNT": "7"}
    assert TaskConfig.from_yaml(path, environ=environ).worker.worker_count == 7
    assert TaskConfig.from_yaml(path, environ=environ, env_override=False).worker.worker_count == 2


def test_config_explicit_overrides_win_over_environment_and_file(write):
    path = write("tasks:\n  worker:\n    worker_count: 2\n    shutdown_timeout: 9\n")
    config = TaskConfig.from_yaml(
        path,
        environ={"LEX_TASKS__WORKER__WORKER_COUNT": "7"},
        overrides={"worker": {"worker_count": 4}},
    )
    assert config.worker.worker_count == 4
    assert config.worker.shutdown_timeout == 9.0


def test_config_profile_file_overlays_base(write):
    base = write("tasks:\n  worker:\n    worker_count: 2\n    shutdown_timeout: 9\n")
    write("tasks:\n  worker:\n    worker_count: 8\n", name="application.prod.yaml")
    config = TaskConfig.from_yaml(base, profile="prod", environ={})
    assert config.worker.worker_count == 8
    assert config.worker.shutdown_timeout == 9.0
    assert TaskConfig.from_yaml(base, profile="absent", environ={}).worker.worker_count == 2


def test_config_from_env_reads_nested_variables():
    config = TaskConfig.from_env(
        environ={
            "LEX_TASKS__WORKER__WORKER_COUNT": "3",
            "LEX_TASKS__SCHEDULER__ENABLED": "false",
            "LEX_TASKS__BACKEND__OPTIONS__KEY_PREFIX": "app",
            "LEX_TASKS__ENV": "staging",
            "UNRELATED": "x",
        }
    )
    assert config.worker.worker_count == 3
    assert config.scheduler.enabled is False
    assert config.backend.options == {"key_prefix": "app"}
    assert config.is_staging


def test_config_from_env_addresses_backends_by_name_and_index(write):
    path = write("tasks:\n  backends:\n    - name: primary\n    - name: mail\n")
    config = TaskConfig.from_yaml(
        path,
        environ={
            "LEX_TASKS__BACKENDS__MAIL__TYPE": "redis",
            "LEX_TASKS__BACKENDS__MAIL__REDIS_URL": f"redis://:{PASSWORD}@r/0",
            "LEX_TASKS__BACKENDS__0__QUEUE_NAME": "main",
            "LEX_TASKS__BACKENDS__AUDIT__TYPE": "memory",
        },
    )
    by_name = {entry.name: entry for entry in config.backends}
    assert by_name["mail"].type == "redis"
    assert by_name["primary"].queue_name == "main"
    assert by_name["audit"].type == "memory"
    assert [entry.name for entry in config.backends] == ["primary", "mail", "audit"]


def test_config_from_env_index_past_end_is_an_error():
    with pytest.raises(TaskConfigurationError, match="refers to entry 3"):
        TaskConfig.from_env(environ={"LEX_TASKS__BACKENDS__3__TYPE": "memory"})


def test_config_from_env_error_names_the_variable():
    with pytest.raises(TaskConfigurationError) as info:
        TaskConfig.from_env(environ={"LEX_TASKS__WORKER__WORKER_COUNT": "-2"})
    assert (
        "tasks.worker.worker_count = '-2' (from environment variable "
        "LEX_TASKS__WORKER__WORKER_COUNT): must be ≥ 0." in str(info.value)
    )


def test_config_from_env_strict_reports_unknown_variable():
    with pytest.raises(TaskConfigurationError) as info:
        TaskConfig.from_env(environ={"LEX_TASKS__WORKER__WORKERS": "2"}, strict=True)
    assert "(from environment variable LEX_TASKS__WORKER__WORKERS): unknown key" in str(info.value)


def test_from_dict_names_what_it_takes_when_given_something_else() -> None:
    with pytest.raises(TaskConfigurationError, match="takes a mapping of the tasks section"):
        TaskConfig.from_dict("backend: redis")  # type: ignore[arg-type]


def test_variables_write_null_and_lists_as_text_can() -> None:
    key = "k" * 40
    config = TaskConfig.from_env(
        environ={
            "LEX_TASKS__BACKEND__ENQUEUE_TIMEOUT": "null",
            "LEX_TASKS__WORKER__METRICS_PORT": "~",
            "LEX_TASKS__SECURITY__SIGNING_KEY": key,
            "LEX_TASKS__SECURITY__VERIFICATION_KEYS": f"{'a' * 40}, {'b' * 40}",
        }
    )
    assert config.backend.enqueue_timeout is None
    assert config.worker.metrics_port is None
    assert [k.get_secret_value() for k in config.security.verification_keys] == [
        "a" * 40,
        "b" * 40,
    ]
    as_json = TaskConfig.from_env(
        environ={
            "LEX_TASKS__SECURITY__SIGNING_KEY": key,
            "LEX_TASKS__SECURITY__VERIFICATION_KEYS": f'["{"c" * 40}"]',
        }
    )
    assert len(as_json.security.verification_keys) == 1
    # A field that cannot be None still refuses the word, naming the variable.
    with pytest.raises(TaskConfigurationError, match="LEX_TASKS__WORKER__MAX_CONCURRENT_TASKS"):
        TaskConfig.from_env(environ={"LEX_TASKS__WORKER__MAX_CONCURRENT_TASKS": "null"})


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"rate_limit": {"per": float("inf")}}, "tasks.rate_limit.per = inf: input should be"),
        ({"worker": {"poll_interval": float("nan")}}, "tasks.worker.poll_interval = nan"),
        ({"retry": {"max_delay": float("inf")}}, "tasks.retry.max_delay = inf"),
    ],
)
def test_no_setting_takes_nan_or_an_infinity(section: dict[str, object], expected: str) -> None:
    # `rate_limit.per: .inf` passed, then broke every backend in its own way.
    with pytest.raises(TaskConfigurationError, match="a finite number") as caught:
        TaskConfig.from_dict(section)
    assert expected in str(caught.value)
