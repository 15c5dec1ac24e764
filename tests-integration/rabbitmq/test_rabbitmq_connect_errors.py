"""Connection failures each fail fast, with one line that names the cause and the fix.

Wrong password, unknown virtual host, a refused port, TLS failures, a host that
never completes TCP, and a server that accepts TCP but never speaks AMQP: `enqueue`
(the API, as ``.delay()`` uses it), `dequeue_batch` (the worker's wait), `count` and
`check_connection` (what the CLI probes) each raise `BackendConnectionError` within the
connect timeout (at once when the cause is known), never a hang, with the password
masked. The CLI turns the same errors into one line and exit status 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import pytest_asyncio

from lexigram.contracts.tasks import BackendConnectionError, Job
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue

TcpProxy = Any  # the `broker_proxy` fixture's type lives in the top conftest.py
RunCli = Callable[..., subprocess.CompletedProcess[str]]  # the top conftest's `run_cli`

pytestmark = pytest.mark.rabbitmq

# Two seconds, not one: on a loaded machine (four test processes beside the broker) a TLS
# handshake with the plain port once took longer than one, and the error became a timeout's.
CONNECT_TIMEOUT = 2.0
WRONG = "s3cret"  # a password the broker does not accept (and must never be printed)
IMMEDIATE = 1.5  # seconds within which an error with a known cause must be raised


def _with(url: str, *, password: str | None = None, path: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if password is not None:
        user = parts.username or "guest"
        netloc = f"{user}:{password}@{parts.hostname}:{parts.port or 5672}"
    return urlunsplit(parts._replace(netloc=netloc, path=path if path is not None else parts.path))


Call = Callable[[RabbitMQTaskQueue], Awaitable[object]]
CALLS: dict[str, Call] = {
    "enqueue": lambda queue: queue.enqueue(Job(name="x")),
    "dequeue_batch": lambda queue: queue.dequeue_batch(1, timeout=5.0),
    "count": lambda queue: queue.count(queue.queue_name),
    "check_connection": lambda queue: queue.check_connection(),
}


async def _fails(url: str, call: str, within: float) -> str:
    """Run one call on a fresh queue; return the error's message, checking its timing."""
    queue = RabbitMQTaskQueue(
        url, f"lexigram-test-{uuid.uuid4().hex[:8]}", connect_timeout=CONNECT_TIMEOUT
    )
    started = time.monotonic()
    try:
        with pytest.raises(BackendConnectionError) as info:
            await asyncio.wait_for(CALLS[call](queue), CONNECT_TIMEOUT + 5.0)
    finally:
        await queue.close()
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert elapsed <= within, f"{call} took {elapsed:.2f}s to fail: {message}"
    assert "\n" not in message
    assert "s3cret" not in message, "the password leaked into the message"
    return message


@pytest.mark.parametrize("call", sorted(CALLS))
async def test_wrong_password(amqp_url: str, call: str) -> None:
    message = await _fails(_with(amqp_url, password=WRONG), call, IMMEDIATE)
    assert "refused the login of user 'guest' (ACCESS_REFUSED)" in message
    assert "fix the user name or password" in message


@pytest.mark.parametrize("call", sorted(CALLS))
async def test_unknown_vhost(amqp_url: str, call: str) -> None:
    vhost = f"lexigram-missing-{uuid.uuid4().hex[:6]}"
    message = await _fails(_with(amqp_url, path=f"/{vhost}"), call, IMMEDIATE)
    assert f"refused virtual host {vhost!r}" in message
    assert f"rabbitmqctl add_vhost {vhost}" in message


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("call", sorted(CALLS))
async def test_refused_port_fails_at_once(closed_port: int, call: str) -> None:
    url = f"amqp://guest:s3cret@127.0.0.1:{closed_port}/"
    message = await _fails(url, call, IMMEDIATE)
    assert f"Nothing accepts connections at 127.0.0.1:{closed_port}" in message
    assert "connection refused" in message


async def test_unknown_host_fails_at_once() -> None:
    message = await _fails("amqp://guest:s3cret@no-such-host.invalid:5672/", "enqueue", 5.0)
    assert "'no-such-host.invalid'" in message
    assert "does not resolve" in message


async def test_tls_to_a_plain_port(amqp_url: str) -> None:
    url = urlunsplit(urlsplit(amqp_url)._replace(scheme="amqps"))
    message = await _fails(url, "enqueue", IMMEDIATE)
    assert "TLS with" in message
    assert "use amqp://" in message


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 that no CA signed (made with openssl)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(  # noqa: S603 - fixed arguments
        [  # noqa: S607 - openssl from PATH
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.fail(f"openssl could not make a test certificate: {made.stderr.decode()}")
    return cert, key


@pytest_asyncio.fixture
async def tls_server(self_signed: tuple[Path, Path]) -> AsyncIterator[int]:
    """A TLS server with an untrusted certificate; returns its port."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed)
    closing = asyncio.Event()

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await closing.wait()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0, ssl=context)
    yield int(server.sockets[0].getsockname()[1])
    closing.set()
    server.close()


async def test_untrusted_tls_certificate(tls_server: int) -> None:
    message = await _fails(f"amqps://guest:s3cret@127.0.0.1:{tls_server}/", "enqueue", IMMEDIATE)
    assert "the broker's certificate is not trusted" in message
    assert "cafile=" in message


@pytest_asyncio.fixture
async def silent_server() -> AsyncIterator[int]:
    """Accepts TCP connections and never says a word (a hung or wrong server)."""
    closing = asyncio.Event()

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await closing.wait()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    closing.set()
    server.close()


@pytest.mark.parametrize("call", sorted(CALLS))
async def test_server_that_never_answers(silent_server: int, call: str) -> None:
    url = f"amqp://guest:s3cret@127.0.0.1:{silent_server}/"
    message = await _fails(url, call, CONNECT_TIMEOUT + 0.6)
    assert "accepted the TCP connection but did not complete the AMQP handshake" in message
    assert f"within {CONNECT_TIMEOUT:g} s" in message


@pytest.fixture
def unreachable_port() -> Iterator[int]:
    """A port whose listen backlog is full: a new TCP connect gets no answer (times out)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = int(server.getsockname()[1])
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)  # noqa: FBT003 - the socket API
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.2)  # let the handshakes of the fillers fill the queue
    yield port
    for sock in (*fillers, server):
        sock.close()


async def test_tcp_connect_timeout(unreachable_port: int) -> None:
    url = f"amqp://guest:s3cret@127.0.0.1:{unreachable_port}/"
    message = await _fails(url, "enqueue", CONNECT_TIMEOUT + 0.6)
    assert f"No TCP connection to 127.0.0.1:{unreachable_port} within" in message
    assert "raise connect_timeout" in message


@pytest.mark.parametrize(
    "command",
    [
        ["enqueue", "some.task"],
        ["worker", "lexigram.tasks.cli._demo_app:build_registry", "--burst"],
    ],
    ids=["enqueue", "worker"],
)
def test_cli_says_it_in_one_line_with_exit_2(
    amqp_url: str, command: list[str], run_cli: RunCli
) -> None:
    done = run_cli(*command, "--backend", _with(amqp_url, password=WRONG))
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if "ACCESS_REFUSED" in line]
    assert len(lines) == 1, done.stderr
    assert "s3cret" not in done.stderr + done.stdout


@pytest_asyncio.fixture
async def paused_broker(
    amqp_url: str, broker_proxy: TcpProxy
) -> AsyncIterator[tuple[RabbitMQTaskQueue, TcpProxy]]:
    """A connected queue whose broker then stops answering (every frame held back)."""
    name = f"lexigram-test-{uuid.uuid4().hex[:8]}"
    queue = RabbitMQTaskQueue(
        broker_proxy.url(amqp_url), name, connect_timeout=CONNECT_TIMEOUT, publish_timeout=1.0
    )
    await queue.connect()
    assert (await queue.enqueue(Job(name="before-the-pause"))).is_ok()
    broker_proxy.pause()
    yield queue, broker_proxy
    broker_proxy.resume()
    await queue.close()
    cleanup = RabbitMQTaskQueue(amqp_url, name)
    await cleanup.delete_queues(if_empty=False)
    await cleanup.close()


PAUSED_CALLS: dict[str, tuple[Call, str]] = {
    "enqueue": (lambda queue: queue.enqueue(Job(name="x")), "publish a job"),
    "keyed-enqueue": (
        lambda queue: queue.enqueue(Job(name="x", idempotency_key="k")),
        "claim an idempotency key",
    ),
    "count": (lambda queue: queue.count(queue.queue_name), "count jobs"),
    "check_connection": (lambda queue: queue.check_connection(), "answer a connection check"),
    "dequeue": (lambda queue: queue.dequeue(), "fetch a job"),
}


@pytest.mark.parametrize("call", sorted(PAUSED_CALLS))
async def test_a_broker_that_stops_answering_fails_calls_at_their_deadline(
    paused_broker: tuple[RabbitMQTaskQueue, TcpProxy], call: str
) -> None:
    queue, _ = paused_broker
    run, action = PAUSED_CALLS[call]
    started = time.monotonic()
    with pytest.raises(BackendConnectionError) as info:
        await asyncio.wait_for(run(queue), 10.0)
    assert time.monotonic() - started < 2.5
    message = str(info.value)
    assert f"did not answer within 1 s when asked to {action}" in message, message
    assert "\n" not in message


async def test_a_waiting_worker_is_not_stuck_on_a_paused_broker(
    paused_broker: tuple[RabbitMQTaskQueue, TcpProxy],
) -> None:
    queue, _ = paused_broker
    started = time.monotonic()
    assert await asyncio.wait_for(queue.dequeue_batch(1, timeout=0.5), 10.0) == []
    assert time.monotonic() - started < CONNECT_TIMEOUT + 1.0


@pytest.mark.parametrize(
    "command",
    [
        ["enqueue", "some.task"],
        ["worker", "lexigram.tasks.cli._demo_app:build_registry", "--burst"],
    ],
    ids=["enqueue", "worker"],
)
async def test_cli_gives_up_on_a_silent_server_with_the_cause(
    silent_server: int, command: list[str]
) -> None:
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lexigram.tasks.cli",
        *command,
        "--backend",
        f"amqp://guest:{WRONG}@127.0.0.1:{silent_server}/",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60.0)
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, err.decode()
    text = err.decode()
    assert "accepted the TCP connection but did not complete the AMQP handshake" in text
    assert WRONG not in text + out.decode()
    assert elapsed < 20.0, f"the CLI took {elapsed:.1f}s to give up"
