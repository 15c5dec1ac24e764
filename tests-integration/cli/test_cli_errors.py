"""Unreachable servers: one line saying what is wrong and what to do, exit code 2.

Nothing listens on port 1, so these need no server; they need the backend packages. A
refused connection fails at once (no waiting for --connect-timeout) and says so. A
server that accepts connections and never answers is a socket of this test's own: the
backend's own deadline, set from --connect-timeout, reports it, naming the option.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from lexigram.tasks.cli import cli

UNREACHABLE = {
    "redis": "redis://:s3cret@127.0.0.1:1/0",
    "postgres": "postgresql://app:s3cret@127.0.0.1:1/app",
    "rabbitmq": "amqp://guest:s3cret@127.0.0.1:1/",
}


def assert_one_line(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0].lower()
    assert "s3cret" not in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("backend", sorted(UNREACHABLE))
def test_enqueue_to_an_unreachable_server_is_one_line(backend: str) -> None:
    url = UNREACHABLE[backend]
    began = time.monotonic()
    result = CliRunner().invoke(cli, ["enqueue", "x", "--backend", url, "--connect-timeout", "3"])
    assert_one_line(result, "127.0.0.1:1", "refused", ":***@")
    assert time.monotonic() - began < 2.5  # refused: at once, not after --connect-timeout


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(50)
    server.settimeout(0.05)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    server.close()
    for connection in accepted:
        connection.close()


SILENT = {
    # backend: (URL template, what the line must name: the cause and the option to raise)
    "redis": ("redis://:s3cret@127.0.0.1:{port}/0", ("did not answer", "command_timeout")),
    "postgres": (
        "postgresql://app:s3cret@127.0.0.1:{port}/app",
        ("did not answer within 0.5 s", "connect_timeout"),
    ),
    "rabbitmq": (
        "amqp://guest:s3cret@127.0.0.1:{port}/",
        ("did not complete the amqp handshake within 0.5 s", "5672"),
    ),
}


@pytest.mark.parametrize("command", [["enqueue", "x"], ["inspect"]])
@pytest.mark.parametrize("backend", sorted(SILENT))
def test_a_silent_server_is_reported_by_the_backend_within_the_timeout(
    backend: str, command: list[str], silent_port: int
) -> None:
    template, fragments = SILENT[backend]
    url = template.format(port=silent_port)
    began = time.monotonic()
    result = CliRunner().invoke(cli, [*command, "-b", url, "--connect-timeout", "0.5"])
    elapsed = time.monotonic() - began
    assert_one_line(result, f"127.0.0.1:{silent_port}", *fragments)
    # The backend's own message, not the command's last-resort "did not answer within".
    assert "--connect-timeout" not in result.stderr
    assert elapsed < 3.0, elapsed


def test_inspect_unreachable_redis_is_one_line() -> None:
    url = UNREACHABLE["redis"]
    result = CliRunner().invoke(cli, ["inspect", "-b", url, "--connect-timeout", "0.5"])
    assert_one_line(result, "redis://:***@127.0.0.1:1/0", "refused")


def test_worker_unreachable_redis_is_one_line() -> None:
    args = ["worker", "lexigram.tasks.cli._demo_app:build_registry", "-b", UNREACHABLE["redis"]]
    result = CliRunner().invoke(cli, [*args, "--connect-timeout", "0.5"])
    assert_one_line(result, "redis://:***@127.0.0.1:1/0", "refused")


def test_dlq_unreachable_postgres_is_one_line() -> None:
    args = ["dlq", "list", "-b", UNREACHABLE["postgres"], "--connect-timeout", "0.5"]
    assert_one_line(CliRunner().invoke(cli, args), "postgresql://app:***@127.0.0.1:1/app")


def test_demo_unreachable_rabbitmq_is_one_line() -> None:
    args = ["demo", "-b", UNREACHABLE["rabbitmq"], "--connect-timeout", "0.5"]
    assert_one_line(CliRunner().invoke(cli, args), "amqp://guest:***@127.0.0.1:1/", "refused")


def test_a_typo_in_a_backend_type_suggests_the_installed_one() -> None:
    result = CliRunner().invoke(cli, ["enqueue", "x", "--backend", "sqlit"])
    assert_one_line(result, "no task backend named 'sqlit'", "did you mean 'sqlite'?")
    assert "pip install" not in result.stderr  # it is installed; and not ours to suggest


def test_a_typo_of_a_server_backend_is_suggested_too() -> None:
    result = CliRunner().invoke(cli, ["enqueue", "x", "--backend", "postgress"])
    assert_one_line(result, "did you mean 'postgres'?")
