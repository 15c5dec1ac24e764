"""Each way a Redis connection fails gives its own one-line message, with the fix.

Every failure is produced for real: a closed port, an ACL user created for the test
(and deleted after), a database number the server does not have, servers started by
the test (one with ``requirepass``, one speaking TLS with a certificate the client does
not trust), a local server that accepts and never answers, one that answers in
another protocol, and a listener whose backlog is full. Both client paths are checked:
the queue (its multiplexed connection) and a store (redis-py).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from lexigram.contracts.tasks import BackendConnectionError, Job
from lexigram.tasks.backends.redis import (
    RedisConnector,
    RedisProgressTracker,
    RedisResultStore,
    RedisTaskQueue,
)

pytestmark = pytest.mark.redis

REDIS_SERVER = shutil.which("redis-server")
OPENSSL = shutil.which("openssl")

Call = Callable[[str], Awaitable[object]]


async def _enqueue(url: str, **options: float) -> object:
    queue = RedisTaskQueue(url, "errors", key_prefix="lexigram-errors", **options)  # type: ignore[arg-type]
    try:
        return await queue.enqueue(Job(name="x"))
    finally:
        await queue.close()


async def _store_get(url: str, **options: float) -> object:
    connector = RedisConnector(url, **options)  # type: ignore[arg-type]
    store = RedisResultStore(key_prefix="lexigram-errors", connector=connector)
    try:
        return await store.get("nothing")
    finally:
        await connector.close()


async def _subscribe(url: str, **options: float) -> object:
    connector = RedisConnector(url, **options)  # type: ignore[arg-type]
    tracker = RedisProgressTracker(key_prefix="lexigram-errors", connector=connector)
    try:
        async for snapshot in tracker.subscribe("nothing"):
            return snapshot
        return None
    finally:
        await connector.close()


async def _failure(call: Awaitable[object], *, within: float) -> BackendConnectionError:
    """Await `call`, which must raise `BackendConnectionError` within `within` seconds."""
    started = time.monotonic()
    with pytest.raises(BackendConnectionError) as info:
        await asyncio.wait_for(call, within + 5)
    elapsed = time.monotonic() - started
    assert elapsed < within, f"the failure took {elapsed:.2f} s, more than {within} s"
    message = str(info.value)
    assert "\n" not in message, "a connection error must be one line"
    print(f"\n{type(info.value).__name__}: {message}")  # noqa: T201 - the messages, with -s
    return info.value


def _redis_server(directory: Path, *args: str) -> subprocess.Popen[bytes]:
    assert REDIS_SERVER is not None
    proc = subprocess.Popen(  # noqa: S603 - a fixed binary with our own arguments
        [REDIS_SERVER, "--bind", "127.0.0.1", "--dir", str(directory), "--save", "", *args],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, "redis-server exited during start-up"
        if b"Ready to accept connections" in line:
            proc.stdout.close()
            return proc
    proc.kill()
    pytest.fail("redis-server did not start within 20 s")


@pytest.fixture(scope="module")
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("redis-errors")


@pytest.fixture(scope="module")
def password_server(
    server_dir: Path, service_unavailable: Callable[[str], NoReturn], free_port: Callable[[], int]
) -> Iterator[int]:
    """A redis-server of our own with ``requirepass``; yields its port."""
    if REDIS_SERVER is None:
        service_unavailable("redis-server is not on PATH; this test starts its own server.")
    port = free_port()
    proc = _redis_server(server_dir, "--port", str(port), "--requirepass", "s3cret")
    yield port
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def tls_server(
    server_dir: Path, service_unavailable: Callable[[str], NoReturn], free_port: Callable[[], int]
) -> Iterator[int]:
    """A redis-server of our own speaking TLS with a self-signed certificate; its port."""
    if REDIS_SERVER is None or OPENSSL is None:
        service_unavailable("redis-server and openssl must be on PATH for the TLS test.")
    cert, key = server_dir / "server.crt", server_dir / "server.key"
    made = subprocess.run(  # noqa: S603 - a fixed binary with our own arguments
        [
            OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert),
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr.decode()
    port = free_port()
    proc = _redis_server(
        server_dir,
        "--port", "0",
        "--tls-port", str(port),
        "--tls-cert-file", str(cert),
        "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(cert),
        "--tls-auth-clients", "no",
    )  # fmt: skip
    yield port
    proc.kill()
    proc.wait()


@pytest_asyncio.fixture
async def acl_user(redis_url: str) -> AsyncIterator[str]:
    """An ACL user with password ``right`` allowed only PING; deleted afterwards."""
    name = f"lexigram-test-{uuid.uuid4().hex[:8]}"
    admin = aioredis.Redis.from_url(redis_url)
    try:
        await admin.execute_command("ACL", "SETUSER", name, "on", ">right", "+ping")
        yield name
    finally:
        await admin.execute_command("ACL", "DELUSER", name)
        await admin.aclose()


@pytest_asyncio.fixture
async def silent_port() -> AsyncIterator[int]:
    """A local server that accepts connections and never sends a byte."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


@pytest_asyncio.fixture
async def http_port() -> AsyncIterator[int]:
    """A local server that answers everything like a web server would."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()


@pytest.fixture
def full_backlog_port() -> Iterator[int]:
    """A listener that never accepts, its backlog filled: a new connect hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers: list[socket.socket] = []
    for _ in range(4):
        filler = socket.socket()
        filler.settimeout(0)  # non-blocking: the connect stays pending in the backlog
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for sock in (*fillers, listener):
        sock.close()


@pytest.mark.parametrize(
    "call", [_enqueue, _store_get, _subscribe], ids=["queue", "store", "subscribe"]
)
async def test_refused_connection_fails_at_once(call: Call, free_port: Callable[[], int]) -> None:
    port = free_port()  # nothing listens there
    error = await _failure(call(f"redis://user:pw@127.0.0.1:{port}/0"), within=1.0)
    assert str(error) == (
        f"Redis at redis://user:***@127.0.0.1:{port}/0 refused the connection: nothing "
        f"listens on 127.0.0.1:{port}. Start Redis there, or fix the host and port in the URL."
    )
    assert error.details["reason"] == "refused"


@pytest.mark.parametrize("call", [_enqueue, _store_get], ids=["queue", "store"])
async def test_wrong_password_of_an_acl_user(call: Call, redis_url: str, acl_user: str) -> None:
    url = redis_url.replace("redis://", f"redis://{acl_user}:wrong@", 1)
    error = await _failure(call(url), within=1.0)
    assert str(error).startswith(f"Redis at redis://{acl_user}:***@")
    assert "rejected the credentials (WRONGPASS" in str(error) or (
        "rejected the credentials (invalid username-password pair" in str(error)
    )
    assert str(error).endswith(
        "Fix the user and password in the URL (its 'user:password@' part), or enable that ACL user."
    )
    assert "wrong" not in str(error)
    assert error.details["transient"] is False


async def test_acl_user_without_permission(redis_url: str, acl_user: str) -> None:
    url = redis_url.replace("redis://", f"redis://{acl_user}:right@", 1)
    error = await _failure(_enqueue(url), within=1.0)
    assert "refused enqueue: the ACL user lacks a permission (NOPERM" in str(error)
    assert str(error).endswith(
        "Grant that user the commands and keys it needs (ACL SETUSER), or use another "
        "user in the URL."
    )
    assert error.details["reason"] == "noperm"


async def test_password_for_a_server_without_one(redis_url: str) -> None:
    url = redis_url.replace("redis://", "redis://:unneeded@", 1)
    error = await _failure(_enqueue(url), within=1.0)
    assert "rejected the credentials (" in str(error)
    assert "without any password configured" in str(error)
    assert error.details["reason"] == "auth"


@pytest.mark.parametrize(
    "call", [_enqueue, _store_get, _subscribe], ids=["queue", "store", "subscribe"]
)
async def test_missing_password(call: Call, password_server: int) -> None:
    url = f"redis://127.0.0.1:{password_server}/0"
    error = await _failure(call(url), within=1.0)
    assert str(error) == (
        f"Redis at {url} requires a password (NOAUTH). Add it to the URL as ':password@' "
        "after the scheme, or 'user:password@' for an ACL user."
    )
    if call is not _subscribe:  # a subscription would wait for progress
        ok = await call(f"redis://:s3cret@127.0.0.1:{password_server}/0")
        assert ok is None or getattr(ok, "is_ok", lambda: False)()


@pytest.mark.parametrize("call", [_enqueue, _store_get], ids=["queue", "store"])
async def test_database_index_out_of_range(call: Call, redis_url: str) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/99"
    error = await _failure(call(url), within=1.0)
    assert str(error) == (
        f"Redis at {url} has no database 99 (DB index is out of range). Use a database "
        "number below the server's 'databases' setting (16 by default) in the URL path, "
        "e.g. redis://host:6379/0."
    )
    assert error.details["transient"] is False


@pytest.mark.parametrize("call", [_enqueue, _store_get], ids=["queue", "store"])
async def test_untrusted_tls_certificate(call: Call, tls_server: int) -> None:
    error = await _failure(call(f"rediss://127.0.0.1:{tls_server}/0"), within=2.0)
    message = str(error)
    assert message.startswith(
        f"Redis at rediss://127.0.0.1:{tls_server}/0: the server's certificate is not trusted "
    )
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert message.endswith(
        "Give the CA that signed it in the URL: rediss://host:port/0?ssl_ca_certs=/path/to/ca.pem."
    )
    assert error.details["reason"] == "tls"


async def test_tls_url_against_a_plain_port(redis_url: str) -> None:
    url = redis_url.replace("redis://", "rediss://", 1)
    error = await _failure(_enqueue(url, socket_connect_timeout=0.5), within=2.0)
    assert "did not accept a connection within 0.5 s (socket_connect_timeout)" in str(error)
    assert str(error).endswith(
        "With rediss://, a server that does not speak TLS on that port also looks like this."
    )


@pytest.mark.parametrize("call", [_enqueue, _store_get], ids=["queue", "store"])
async def test_connect_timeout(call: Call, full_backlog_port: int) -> None:
    url = f"redis://127.0.0.1:{full_backlog_port}/0"
    error = await _failure(call(url, socket_connect_timeout=0.5), within=2.0)
    assert str(error) == (
        f"Redis at {url} did not accept a connection within 0.5 s (socket_connect_timeout). "
        "Check the host, port and firewall, or raise socket_connect_timeout."
    )
    assert error.details["reason"] == "connect_timeout"


@pytest.mark.parametrize(
    ("call", "what"), [(_enqueue, "enqueue"), (_store_get, "results get")], ids=["queue", "store"]
)
async def test_server_that_accepts_and_never_answers(
    call: Call, what: str, silent_port: int
) -> None:
    url = f"redis://127.0.0.1:{silent_port}/0"
    error = await _failure(call(url, command_timeout=0.5), within=2.0)
    assert str(error) == (
        f"Redis at {url} did not answer {what} within 0.5 s (command_timeout): the "
        "connection is open but nothing comes back. Check that the URL points at a Redis "
        "server that is not paused or overloaded, or raise command_timeout."
    )
    assert error.details["reason"] == "silent"


async def test_default_command_timeout_bounds_an_enqueue(silent_port: int) -> None:
    """With no option set, an enqueue against a silent server fails within 10 s + slack."""
    error = await _failure(_enqueue(f"redis://127.0.0.1:{silent_port}/0"), within=12.0)
    assert "within 10 s (command_timeout)" in str(error)


@pytest.mark.parametrize("call", [_enqueue, _store_get], ids=["queue", "store"])
async def test_server_that_is_not_redis(call: Call, http_port: int) -> None:
    url = f"redis://127.0.0.1:{http_port}/0"
    error = await _failure(call(url), within=1.0)
    assert str(error).startswith(f"The server at {url} does not speak the Redis protocol (")
    assert str(error).endswith("Check the port in the URL.")
    assert error.details["reason"] == "not_redis"


async def test_unknown_host() -> None:
    url = "redis://no-such-host.invalid:6379/0"
    error = await _failure(_enqueue(url), within=5.0)
    assert str(error).startswith(f"Redis at {url}: the host name does not resolve (")
    assert str(error).endswith("Fix the host in the URL.")
