"""Connection failures each get their own one-line message, with the masked DSN and the fix.

Against the real server: a refused port, a role the server does not know, a database
that does not exist, ``sslmode=require`` against a server without TLS. Against local
asyncio servers: a TLS handshake that breaks, and a server that accepts the TCP
connection and never answers (it must fail within the connect timeout). The CLI turns
each into ``error: <message>`` and exit code 2.

A wrong password cannot be produced here: the server trusts every local connection
(``pg_hba.conf``: trust on 127.0.0.1), so it never asks for one. A role it does not
know is refused by the server itself ("role ... does not exist", SQLSTATE 28000), the
same family of login errors, and stands in for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from lexigram.contracts.tasks import BackendConnectionError, TaskBackendSpec
from lexigram.tasks.backends.postgres import (
    PostgresTaskConfig,
    PostgresTaskQueue,
    backend,
    migrate,
)

pytestmark = pytest.mark.postgres

CONNECT_TIMEOUT = 1.0


def _with(dsn: str, *, user: str | None = None, database: str | None = None) -> str:
    """`dsn` (a URL) with another user (password 'hunter2') or database."""
    parts = urlsplit(dsn)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 5432
    login = f"{user}:hunter2@" if user else (f"{parts.username}@" if parts.username else "")
    path = f"/{database}" if database else parts.path
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{login}{host}:{port}{path}{query}"


async def _failure(dsn: str) -> tuple[str, float]:
    """Use a queue on `dsn`; return the error message and how long it took."""
    queue = PostgresTaskQueue(PostgresTaskConfig(dsn, connect_timeout=CONNECT_TIMEOUT))
    started = time.monotonic()
    try:
        with pytest.raises(BackendConnectionError) as caught:
            await queue.count(queue.queue_name)
    finally:
        await queue.close()
    message = str(caught.value)
    assert "\n" not in message
    assert "this is a bug" not in message
    return message, time.monotonic() - started


async def _close_all(server: asyncio.Server, writers: list[asyncio.StreamWriter]) -> None:
    server.close()
    for writer in writers:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    await server.wait_closed()


@pytest_asyncio.fixture
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never sends a byte; yields its port."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    await _close_all(server, held)


@pytest_asyncio.fixture
async def broken_tls_server() -> AsyncIterator[int]:
    """Answers PostgreSQL's SSLRequest with 'S' (go ahead), then sends no TLS at all."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.readexactly(8)  # the SSLRequest
            writer.write(b"S")
            await writer.drain()
            await reader.read(1024)  # the ClientHello
            writer.write(b"this is not a TLS server hello\n" * 4)
            await writer.drain()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    await _close_all(server, held)


async def test_refused_port_fails_at_once(free_port: Callable[[], int]) -> None:
    port = free_port()
    message, took = await _failure(f"postgresql://app:hunter2@127.0.0.1:{port}/test")
    assert message == (
        f"PostgreSQL at postgresql://app:***@127.0.0.1:{port}/test refused the connection: "
        f"nothing accepts connections at 127.0.0.1:{port}. Start the server, or fix the host "
        "and port in the DSN."
    )
    assert took < 0.5, f"a refused connection took {took:.2f} s to report"


async def test_unknown_role_is_a_refused_login(postgres_dsn: str) -> None:
    role = f"lexigram_nobody_{uuid.uuid4().hex[:8]}"
    message, _ = await _failure(_with(postgres_dsn, user=role))
    assert "refused the login" in message
    assert f'role "{role}" does not exist' in message
    assert "Fix the user name in the DSN" in message
    assert "hunter2" not in message
    assert f"{role}:***@" in message


async def test_unknown_database(postgres_dsn: str) -> None:
    database = f"lexigram_nodb_{uuid.uuid4().hex[:8]}"
    message, _ = await _failure(_with(postgres_dsn, database=database))
    assert "has no such database" in message
    assert f'database "{database}" does not exist' in message
    assert f"Create it (createdb {database})" in message


async def test_tls_required_against_a_server_without_tls(postgres_dsn: str) -> None:
    message, _ = await _failure(f"{_with(postgres_dsn)}?sslmode=require")
    assert "does not offer TLS but the DSN requires it (sslmode)" in message
    assert "use sslmode=prefer or disable" in message


async def test_broken_tls_handshake(broken_tls_server: int) -> None:
    message, took = await _failure(
        f"postgresql://127.0.0.1:{broken_tls_server}/test?sslmode=require"
    )
    assert "failed the TLS handshake" in message
    assert "sslrootcert" in message
    assert took < CONNECT_TIMEOUT + 1.5


async def test_silent_server_fails_within_the_connect_timeout(silent_server: int) -> None:
    message, took = await _failure(f"postgresql://127.0.0.1:{silent_server}/test")
    assert message == (
        f"PostgreSQL at postgresql://127.0.0.1:{silent_server}/test did not answer within 1 s "
        f"(connect_timeout). Check that 127.0.0.1:{silent_server} is a PostgreSQL server and "
        "that no firewall drops the traffic, or raise the connect_timeout option."
    )
    assert CONNECT_TIMEOUT * 0.9 < took < CONNECT_TIMEOUT + 1.5


async def test_stores_and_migrate_report_the_same_way(silent_server: int) -> None:
    dsn = f"postgresql://127.0.0.1:{silent_server}/test"
    spec = TaskBackendSpec(type="postgres", url=dsn, options={"connect_timeout": 1})
    store = backend.create_dlq_backend(spec)
    started = time.monotonic()
    try:
        with pytest.raises(BackendConnectionError, match="did not answer within 1 s"):
            await store.size()
    finally:
        await store.close()
    with pytest.raises(BackendConnectionError, match="did not answer within 1 s"):
        await migrate(dsn, timeout=1.0)
    assert time.monotonic() - started < 2 * (CONNECT_TIMEOUT + 1.5)


RunCli = Callable[..., subprocess.CompletedProcess[str]]  # the top conftest's `run_cli`


def _no_color() -> dict[str, str]:
    return {**os.environ, "NO_COLOR": "1"}


@pytest.mark.parametrize(
    ("make_dsn", "expected"),
    [
        (lambda dsn, port: f"postgresql://127.0.0.1:{port}/test", "refused the connection"),
        (lambda dsn, port: _with(dsn, database="lexigram_nodb_cli"), "has no such database"),
        (lambda dsn, port: _with(dsn, user="lexigram_nobody_cli"), "refused the login"),
        (lambda dsn, port: f"{_with(dsn)}?sslmode=require", "does not offer TLS"),
    ],
    ids=["refused", "database", "role", "tls"],
)
def test_cli_prints_one_line_and_exits_2(
    postgres_dsn: str,
    make_dsn: Callable[[str, int], str],
    expected: str,
    free_port: Callable[[], int],
    run_cli: RunCli,
) -> None:
    dsn = make_dsn(postgres_dsn, free_port())
    done = run_cli("dlq", "list", "--backend", dsn, env=_no_color())
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: PostgreSQL at ")
    assert expected in lines[0]
    assert "hunter2" not in done.stderr
    assert "unexpected" not in done.stderr


def test_cli_silent_server_exits_2_within_the_timeout(run_cli: RunCli) -> None:
    """A server that never answers: the CLI gives up after --connect-timeout, exit 2."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # accepts into the backlog, never answers
        port = listener.getsockname()[1]
        started = time.monotonic()
        done = run_cli(
            "dlq",
            "list",
            "--connect-timeout",
            "1",
            "--backend",
            f"postgresql://127.0.0.1:{port}/t",
            env=_no_color(),
        )
        took = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    assert "unexpected" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert took < 15, f"the CLI took {took:.1f} s"
