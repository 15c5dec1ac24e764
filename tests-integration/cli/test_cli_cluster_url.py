"""A RabbitMQ URL listing several hosts, as a cluster's does, works through every door.

The configuration's ``url`` and ``--backend`` both take ``amqp://user:pw@h1:p1,h2:p2/vhost``
(the form the RabbitMQ guide documents for a cluster): here both hosts are the test
broker, reached once as ``127.0.0.1`` and once as ``localhost``, and a job enqueued by the
command line is run by a ``worker --burst`` given the same URL.
"""

from __future__ import annotations

import asyncio
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import pytest_asyncio
from click.testing import CliRunner

from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue
from lexigram.tasks.cli import cli

pytestmark = [pytest.mark.rabbitmq]

APP = """
from lexigram.tasks import task

ran = []


@task
async def note(n: int) -> int:
    ran.append(n)
    return n
"""


def _two_hosts(amqp_url: str) -> str:
    """The broker's URL with two hosts that both reach it."""
    parts = urlsplit(amqp_url)
    port = parts.port or 5672
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{port},localhost:{port}" if userinfo else ""
    netloc = netloc or f"127.0.0.1:{port},localhost:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


@pytest_asyncio.fixture
async def queue_name(amqp_url: str) -> AsyncIterator[str]:
    name = f"lexigram-hosts-{uuid.uuid4().hex[:8]}"
    yield name
    queue = RabbitMQTaskQueue(amqp_url, name)
    try:
        await queue.delete_queues(if_empty=False)
    finally:
        await queue.close()


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


async def test_a_url_listing_two_hosts_enqueues_and_runs(
    amqp_url: str, queue_name: str, tmp_path: Path, write_app
) -> None:
    url = _two_hosts(amqp_url)
    config = tmp_path / "tasks.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            tasks:
              backend:
                url: "{url}"
                queue_name: {queue_name}
            """
        )
    )
    app = write_app(APP)
    code, _, err = await asyncio.to_thread(
        _cli, "enqueue", "note", "--args", "[7]", "--config", str(config)
    )
    assert code == 0, err
    code, _, err = await asyncio.to_thread(
        _cli, "worker", app, "--backend", url, "--queue", queue_name, "--burst"
    )
    assert code == 0, err
    assert __import__(app).ran == [7]
