"""An application whose backend refuses the login fails to boot, with the command line's line.

`TaskProvider.boot` makes the start-up check the commands make (one cheap call to every
backend) before it starts a worker, a registration or the scheduler. With a wrong
password (PostgreSQL: a role the server does not know, since it trusts local
connections and never asks for a password; see ``postgres/test_postgres_connect_errors.py``)
the application used to boot: on RabbitMQ it logged "unreachable ... reconnecting every
1 s" until the first ``.delay()`` failed; on Redis and PostgreSQL the workers started and
logged warnings until the scheduler's store failed the boot. Now the boot fails at once
with the backend's own one-line error, the same line ``lexigram-tasks inspect`` prints
for that URL, nothing is logged before or after it, and nothing is left running. An
application that runs no worker and no scheduler (it only enqueues) is checked too.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from click.testing import CliRunner

from lexigram.app import Application, ApplicationStartError
from lexigram.contracts.tasks import BackendConnectionError
from lexigram.tasks import TaskConfig, TaskProvider, scheduled
from lexigram.tasks.cli import cli

WRONG_PASSWORD = "not-the-password"  # noqa: S105 - a deliberately wrong credential


def _login(url: str, *, user: str | None = None) -> str:
    """`url` with the wrong password (and `user` instead of its own, if given)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    name = user if user is not None else (parts.username or "")
    return urlunsplit(parts._replace(netloc=f"{name}:{WRONG_PASSWORD}@{host}"))


CASES: dict[str, tuple[str, str, Callable[[str], str], str]] = {
    "redis": ("redis", "redis_url", _login, "rejected the credentials"),
    "postgres": (
        "postgres",
        "postgres_dsn",
        lambda url: _login(url, user=f"lexigram_nobody_{uuid.uuid4().hex[:8]}"),
        "refused the login",
    ),
    "rabbitmq": ("rabbitmq", "amqp_url", _login, "ACCESS_REFUSED"),
}

MARKS = {
    "redis": pytest.mark.redis,
    "postgres": pytest.mark.postgres,
    "rabbitmq": pytest.mark.rabbitmq,
}

# Longer than RabbitMQ's reconnect interval (1 s) and a worker's first dequeue: anything
# left running would have logged by then.
QUIET_AFTER = 1.5


async def _boot(config: TaskConfig) -> tuple[ApplicationStartError, list[str], set[Any]]:
    """Boot an application on `config`: its start error, what fired, what was left running."""
    fired: list[str] = []

    @scheduled("* * * * * *")
    async def every_second() -> None:
        fired.append("fired")

    provider = TaskProvider(config=config)
    if provider.scheduler is not None:
        provider.register_scheduled_task(every_second)
    with pytest.raises(ApplicationStartError) as raised:
        async with Application.boot(providers=[provider]):
            pytest.fail("the application booted with a wrong password")
    await asyncio.sleep(QUIET_AFTER)
    left = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    assert provider.scheduler is None or not provider.scheduler.running
    return raised.value, fired, left


# Synchronous: the CLI runs its own event loop.
@pytest.mark.parametrize("case", [pytest.param(name, marks=MARKS[name]) for name in CASES])
@pytest.mark.parametrize("runs", ["workers-and-scheduler", "enqueue-only"])
def test_a_wrong_password_fails_boot_with_the_clis_line_and_starts_nothing(
    case: str, runs: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    backend_type, fixture, breaks, expected = CASES[case]
    url = breaks(request.getfixturevalue(fixture))
    enqueue_only = runs == "enqueue-only"
    config = TaskConfig.from_dict(
        {
            "backend": {"type": backend_type, "url": url},
            "worker": {"worker_count": 0 if enqueue_only else 2},
            "scheduler": {"enabled": not enqueue_only},
        }
    )
    with caplog.at_level(logging.INFO, logger="lexigram"):
        error, fired, left = asyncio.run(_boot(config))

    cause = error.__cause__
    assert isinstance(cause, BackendConnectionError), repr(cause)
    message = cause.message
    assert expected in message
    assert "\n" not in message
    assert WRONG_PASSWORD not in message
    # What the kernel's ApplicationStartError shows: the error's type and message, on one line.
    assert f"Provider 'tasks' failed to boot: BackendConnectionError: {cause} See" in str(error)
    assert "\n" not in str(error)
    assert WRONG_PASSWORD not in str(error)
    # Nothing started, nothing retried: no worker, registration or scheduler line, no
    # warning before the failure or after it (the configuration's own report aside).
    assert fired == []
    assert left == set()
    logged = [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name != "lexigram.tasks.di._stack"
    ]
    assert logged == []
    assert "Tasks started" not in caplog.text

    # One way through: the command line reports the very same line for this URL.
    done = CliRunner().invoke(cli, ["inspect", "--backend", url])
    assert done.exit_code == 2, done.output
    assert done.stderr.strip() == f"error: {message}"
