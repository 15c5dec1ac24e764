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
