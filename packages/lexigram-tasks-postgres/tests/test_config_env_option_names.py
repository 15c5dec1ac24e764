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
from lexigram.tasks.backends.postgres import backend

# (option, bad value) for each kind of check: an identifier, a number of seconds, a count.
CASES = [("schema", "pg_own"), ("visibility_timeout", "-5"), ("max_attempts", "0")]


@pytest.mark.parametrize(("name", "value"), CASES)
def test_the_backends_error_names_the_option(name: str, value: str) -> None:
    spec = TaskBackendSpec(
        type="postgres", url="postgresql://127.0.0.1:1/test", options={name: value}
    )
    with pytest.raises(TaskConfigurationError) as caught:
        backend.create_queue(spec)
    assert caught.value.details["option"] == name
