"""TLS and password logins against a PostgreSQL server of this test's own.

The shared server trusts every local connection and has no TLS, so a wrong password or
a certificate problem cannot happen there. This module starts a private server on a
loopback port (``initdb`` + ``pg_ctl`` in a temporary directory, nothing shared is
touched) with ``scram-sha-256`` password logins and TLS from a CA the test creates with
``openssl``, and checks:

- the right password over ``sslmode=verify-full`` with ``sslrootcert`` works end to end;
- a wrong password is reported as such (not "did not answer", not "unexpected");
- a server certificate signed by another CA fails the TLS handshake, named as such.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import asyncpg
import pytest

from lexigram.contracts.tasks import BackendConnectionError, Job
from lexigram.tasks.backends.postgres import PostgresTaskConfig, PostgresTaskQueue

pytestmark = pytest.mark.postgres

PASSWORD = "right-horse-battery"  # noqa: S105 - a throwaway password of a private test server


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)  # noqa: S603, S607


def _make_ca(directory: Path, name: str) -> None:
    """`name`.key / `name`.pem: a self-signed CA."""
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", f"/CN=lexigram test {name}", "-keyout", f"{name}.key", "-out", f"{name}.pem",
        cwd=directory,
    )  # fmt: skip


def _make_server_cert(directory: Path) -> None:
    """server.key / server.pem for 127.0.0.1 and localhost, signed by ca.pem."""
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr", cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem",
        cwd=directory,
    )  # fmt: skip


@pytest.fixture(scope="module")
def private_server(
    service_unavailable: Callable[[str], NoReturn], free_port: Callable[[], int]
) -> Iterator[tuple[int, Path]]:
    """Start a private PostgreSQL with TLS and password logins; yield (port, certs dir)."""
    bin_dir = _pg_bin()
    if bin_dir is None or shutil.which("openssl") is None:
        service_unavailable("the TLS/password tests need PostgreSQL's initdb and openssl")
    try:
        owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    except KeyError:
        service_unavailable("running initdb as root needs a 'postgres' system user")
    root = Path(tempfile.mkdtemp(prefix="lexigram-pg-tls-"))
    data, certs = root / "data", root / "certs"
    certs.mkdir()
    _make_ca(certs, "ca")
    _make_ca(certs, "other_ca")
    _make_server_cert(certs)
    for path in (root, certs, *certs.iterdir()):
        os.chown(path, owner.pw_uid, owner.pw_gid)
    (certs / "server.key").chmod(0o600)
    port = free_port()

    def as_owner(*command: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", owner.pw_name, "--"] if os.geteuid() == 0 else []
        return subprocess.run(  # noqa: S603 - fixed commands of the PostgreSQL distribution
            [*prefix, *command], capture_output=True, text=True, timeout=120, check=False
        )

    init = as_owner(
        str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
        "--auth-host=scram-sha-256", "--no-sync",
    )  # fmt: skip
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        service_unavailable(f"initdb failed: {init.stderr.strip()[-300:]}")
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c ssl=on "
        f"-c ssl_cert_file={certs / 'server.pem'} -c ssl_key_file={certs / 'server.key'} "
        "-c fsync=off -c max_connections=20"
    )
    start = as_owner(
        str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w",
        "start",
    )  # fmt: skip
    if start.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        service_unavailable(f"the private PostgreSQL did not start: {start.stderr.strip()[-300:]}")
    try:
        asyncio.run(_create_app_role(root, port))
        yield port, certs
    finally:
        as_owner(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


async def _create_app_role(socket_dir: Path, port: int) -> None:
    """Role ``app`` with a password, and its database (over the trusted local socket)."""
    conn = await asyncpg.connect(host=str(socket_dir), port=port, user="postgres")
    try:
        await conn.execute(f"CREATE ROLE app LOGIN PASSWORD '{PASSWORD}'")
        await conn.execute("CREATE DATABASE app OWNER app")
    finally:
        await conn.close()


def _queue(dsn: str) -> PostgresTaskQueue:
    return PostgresTaskQueue(PostgresTaskConfig(dsn, connect_timeout=5.0, queue_name="tls"))


async def _failure(dsn: str) -> str:
    queue = _queue(dsn)
    try:
        with pytest.raises(BackendConnectionError) as caught:
            await queue.count(queue.queue_name)
    finally:
        await queue.close()
    message = str(caught.value)
    assert "\n" not in message
    assert "did not answer" not in message
    return message


async def test_right_password_over_verified_tls_runs_jobs(private_server: tuple[int, Path]):
    port, certs = private_server
    dsn = (
        f"postgresql://app:{PASSWORD}@127.0.0.1:{port}/app"
        f"?sslmode=verify-full&sslrootcert={certs / 'ca.pem'}"
    )
    queue = _queue(dsn)
    try:
        job = Job(name="over_tls")
        await queue.enqueue(job)
        leased = await queue.dequeue()
        assert leased is not None
        assert leased.id == job.id
        assert await queue.ack(leased.id, lease_token=leased.lease_token) is True
    finally:
        await queue.close()


async def test_wrong_password_is_named(private_server: tuple[int, Path]):
    port, _ = private_server
    message = await _failure(f"postgresql://app:wrong-guess@127.0.0.1:{port}/app?sslmode=disable")
    assert message == (
        f"PostgreSQL at postgresql://app:***@127.0.0.1:{port}/app?sslmode=disable rejected the "
        "login of user 'app' (wrong password): password authentication failed for user "
        '"app". Fix the user name or password in the DSN.'
    )


async def test_certificate_of_another_ca_fails_the_handshake(private_server: tuple[int, Path]):
    port, certs = private_server
    message = await _failure(
        f"postgresql://app:{PASSWORD}@127.0.0.1:{port}/app"
        f"?sslmode=verify-full&sslrootcert={certs / 'other_ca.pem'}"
    )
    assert "failed the TLS handshake" in message
    assert "certificate verify failed" in message
    assert "Check sslrootcert" in message
    assert PASSWORD not in message


async def test_tls_is_really_used(private_server: tuple[int, Path]):
    """The server sees the session as TLS (pg_stat_ssl), not a silent plain-text fallback."""
    port, certs = private_server
    dsn = (
        f"postgresql://app:{PASSWORD}@127.0.0.1:{port}/app"
        f"?sslmode=verify-full&sslrootcert={certs / 'ca.pem'}"
    )
    queue = _queue(dsn)
    try:
        await queue.count(queue.queue_name)
        uses_ssl = await queue._db.run(
            lambda conn: conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"),
            "check TLS",
        )
        assert uses_ssl is True
    finally:
        await queue.close()
