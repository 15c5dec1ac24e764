"""`TaskProvider` names the option and the variable of a value a backend refuses.

A backend checks its options only when it is built, long after the configuration was
read; its error names the option (``details["option"]``), and the provider turns it into
the same line as any configuration problem: the option's path, the value, the
``LEX_TASKS__*`` variable that set it. Building does not connect (the URLs name a port
nothing listens on), so no server is needed.
"""

from __future__ import annotations

import pytest

from lexigram.contracts.tasks import TaskConfigurationError
from lexigram.tasks import TaskProvider

CASES = [
    ("postgres", "postgresql://127.0.0.1:1/test", "schema", "pg_own"),
    ("postgres", "postgresql://127.0.0.1:1/test", "visibility_timeout", "-5"),
    ("postgres", "postgresql://127.0.0.1:1/test", "max_attempts", "0"),
    ("redis", "redis://127.0.0.1:1/0", "visibility_timeout", "-5"),
    ("redis", "redis://127.0.0.1:1/0", "idempotency_ttl", "-1"),
    ("redis", "redis://127.0.0.1:1/0", "max_size", "0"),
    ("redis", "redis://127.0.0.1:1/0", "key_prefix", "a{b"),
    ("redis", "redis://127.0.0.1:1/0", "command_timeout", "0"),
    ("redis", "redis://127.0.0.1:1/0", "wait_for_replicas", "-1"),
    ("rabbitmq", "amqp://guest:guest@127.0.0.1:1/", "stores", "nosuch://x"),
]


@pytest.mark.parametrize(("backend", "url", "name", "value"), CASES)
def test_provider_names_the_option_and_its_variable(
    backend: str, url: str, name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    variable = f"LEX_TASKS__BACKEND__OPTIONS__{name.upper()}"
    monkeypatch.setenv("LEX_TASKS__BACKEND__TYPE", backend)
    monkeypatch.setenv("LEX_TASKS__BACKEND__URL", url)
    monkeypatch.setenv(variable, value)
    with pytest.raises(TaskConfigurationError) as caught:
        _ = TaskProvider().queues
    assert str(caught.value).startswith(
        f"tasks.backend.options.{name} = {value!r} (from environment variable {variable}): "
    )


# A URL each backend's own check refuses (not the core's: its syntax and scheme are fine).
# (backend, the field holding its URL, the URL, what the line says is wrong)
BAD_URLS = [
    ("redis", "url", "redis://:hunter2@127.0.0.1:1/x", "names the database 'x', which is not"),
    ("redis", "redis_url", "redis://:hunter2@127.0.0.1:1/x", "names the database 'x'"),
    ("redis", "url", "redis://:hunter2@127.0.0.1:1/0?sockettimeout=1", "has the query option"),
    ("rabbitmq", "url", "amqp://guest:hunter2@127.0.0.1:1,,other:5672/", "lists an empty host"),
    ("rabbitmq", "amqp_url", "amqp://guest:hunter2@127.0.0.1:1,,h:5672/", "lists an empty host"),
    ("sqlite", "url", "sqlite:///jobs/", "names a directory, not a file"),
]


@pytest.mark.parametrize(("backend", "field", "url", "problem"), BAD_URLS)
def test_provider_names_the_url_and_its_variable(
    backend: str, field: str, url: str, problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The line names the URL's own path and variable, not the whole section."""
    variable = f"LEX_TASKS__BACKEND__{field.upper()}"
    monkeypatch.setenv("LEX_TASKS__BACKEND__TYPE", backend)
    monkeypatch.setenv("LEX_TASKS__BACKEND__QUEUE_NAME", "jobs")  # a second variable
    monkeypatch.setenv(variable, url)
    with pytest.raises(TaskConfigurationError) as caught:
        _ = TaskProvider().queues
    text = str(caught.value)
    assert text.startswith(f"tasks.backend.{field} = '{url.partition(':')[0]}:"), text
    assert f"(from environment variable {variable}): " in text
    assert problem in text
    assert "hunter2" not in text
