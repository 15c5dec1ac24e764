"""``.delay()``/``.apply_async()`` raise the same one-line connection errors as the CLI.

Each case breaks one thing of a working URL (the database, the DB index, the password) or
points at a closed port, enqueues through the task API and through ``lexigram-tasks
enqueue``, and expects one `BackendConnectionError` message, the same in both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import pytest
from click.testing import CliRunner

from lexigram.contracts.tasks import BackendConnectionError, TaskBackendSpec
from lexigram.tasks import task
from lexigram.tasks._backends import create_queue
from lexigram.tasks.cli import cli


@task
async def add(a: int, b: int) -> int:
    return a + b


def _with(url: str, *, path: str | None = None, password: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if password is not None:
        host = netloc.rsplit("@", 1)[-1]
        user = parts.username or ""
        netloc = f"{user}:{password}@{host}"
    return urlunsplit(parts._replace(netloc=netloc, path=path if path is not None else parts.path))


WRONG_PASSWORD = "not-the-password"  # noqa: S105 - a deliberately wrong credential
CASES: dict[str, tuple[str, str, Callable[[str], str], str]] = {
    "redis-db-index": ("redis", "redis_url", lambda u: _with(u, path="/99"), "has no database 99"),
    "redis-refused": ("redis", "redis_url", lambda u: "redis://127.0.0.1:1/0", "refused"),
    "postgres-no-database": (
        "postgres",
        "postgres_dsn",
        lambda u: _with(u, path="/lexigram_no_such_db"),
        'database "lexigram_no_such_db" does not exist',
    ),
    "rabbitmq-password": (
        "rabbitmq",
        "amqp_url",
        lambda u: _with(u, password=WRONG_PASSWORD),
        "ACCESS_REFUSED",
    ),
}


async def _enqueue_error(backend_type: str, url: str) -> BackendConnectionError:
    queue = create_queue(TaskBackendSpec(type=backend_type, url=url))
    try:
        with pytest.raises(BackendConnectionError) as raised:
            await add.apply_async(queue, 1, 2)
    finally:
        await queue.close()
    return raised.value


# Synchronous: the CLI runs its own event loop.
@pytest.mark.parametrize("case", list(CASES))
def test_the_task_api_and_the_cli_say_the_same(case: str, request: pytest.FixtureRequest) -> None:
    backend_type, fixture, breaks, expected = CASES[case]
    url = breaks(request.getfixturevalue(fixture))
    message = str(asyncio.run(_enqueue_error(backend_type, url)))
    assert expected in message
    assert "\n" not in message
    assert WRONG_PASSWORD not in message

    done = CliRunner().invoke(cli, ["enqueue", "add", "--backend", url, "--connect-timeout", "3"])
    assert done.exit_code == 2, done.output
    assert done.stderr.strip() == f"error: {message}"
