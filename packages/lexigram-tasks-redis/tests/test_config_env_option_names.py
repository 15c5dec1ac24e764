"""A refused option's error names the option (``details["option"]``).

The configuration turns it into a line naming ``tasks.backend.options.<name>`` and the
``LEX_TASKS__*`` variable that set it, instead of the whole ``tasks.backend`` section
(tests-integration/app/test_app_config_env_option_names.py checks that line through
`TaskProvider`). Building the queue does not connect: the URL names a port nothing
listens on.
"""

from __future__ import annotations

import pytest

from lexigram.contracts.tasks import TaskBackendSpec, TaskConfigurationError
from lexigram.tasks.backends.redis import backend

# (option, bad value) for each kind of check: a lease, a key TTL, a size limit, the key
# prefix, the connection's limits and deadlines, replication.
CASES = [
    ("visibility_timeout", "-5"),
    ("idempotency_ttl", "-1"),
    ("max_size", "0"),
    ("key_prefix", "a{b"),
    ("max_connections", "0"),
    ("command_timeout", "0"),
    ("retry_timeout", "-1"),
    ("wait_for_replicas", "-1"),
    ("replication_timeout", "0"),
]


@pytest.mark.parametrize(("name", "value"), CASES)
def test_the_backends_error_names_the_option(name: str, value: str) -> None:
    options = {name: value}
    if name == "replication_timeout":
        options["wait_for_replicas"] = "1"  # read only when enqueue waits for replicas
    spec = TaskBackendSpec(type="redis", url="redis://127.0.0.1:1/0", options=options)
    with pytest.raises(TaskConfigurationError) as caught:
        backend.create_queue(spec)
    assert caught.value.details["option"] == name


@pytest.mark.parametrize(
    "url",
    [
        "redis://:secret@127.0.0.1:1/x",
        "redis://:secret@127.0.0.1:1/0?sockettimeout=1",
        "redis+sentinel://:secret@127.0.0.1:1",
    ],
)
def test_an_error_about_the_url_carries_it_masked(url: str) -> None:
    spec = TaskBackendSpec(type="redis", url=url)
    with pytest.raises(TaskConfigurationError) as caught:
        backend.create_queue(spec)
    assert caught.value.details["url"].startswith("redis")
    assert "secret" not in caught.value.details["url"]
