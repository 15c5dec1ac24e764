"""TLS-only brokers of the tests' own, with a certificate authority the tests create.

The shared servers on the default ports speak plain text and must not be reconfigured,
so each test module here starts its own server on a free loopback port in a temporary
directory (module scope: the start is paid once) and stops it afterwards.

The server certificate is issued by a throwaway CA for the name ``localhost`` only (no
IP address in it), so one server covers both checks a client makes: ``localhost``
verifies, while ``127.0.0.1`` reaches the same server and fails hostname verification.
"""

from __future__ import annotations

import datetime
import gc
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from uuid import uuid4

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lexigram.tasks.cli import cli

START_TIMEOUT_S = 60.0
"""Longest wait for a private server to accept connections (RabbitMQ boots Erlang)."""


@dataclass(frozen=True, slots=True)
class Certs:
    """PEM files of one test CA and the server and client certificates it signed.

    Attributes:
        ca: The CA certificate a client must trust.
        cert: The server certificate (for ``localhost`` only).
        key: The server's private key (unencrypted).
        client_cert: A client certificate, for servers that require one.
        client_key: Its private key (unencrypted).
    """

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


@dataclass(frozen=True, slots=True)
class Server:
    """A private TLS server: where it listens and what a client must trust.

    Attributes:
        port: Its TLS port on 127.0.0.1 (its certificate names ``localhost``).
        ca: The CA file that verifies its certificate.
        password: The password its URLs carry (to check that no message shows it).
    """

    port: int
    ca: Path
    password: str


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )


def make_certs(directory: Path) -> Certs:
    """Create a CA and a ``localhost`` server certificate it signed, in `directory`."""
    now = datetime.datetime.now(datetime.UTC)
    valid = {"not_valid_before": now - datetime.timedelta(hours=1)}
    valid["not_valid_after"] = now + datetime.timedelta(days=2)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("lexigram-tasks test CA")
    ca_cert = (
        x509.CertificateBuilder(issuer_name=ca_name, subject_name=ca_name, **valid)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    certs = Certs(
        ca=directory / "ca.pem",
        cert=directory / "server.pem",
        key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    certs.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    issue = x509.CertificateBuilder(issuer_name=ca_name, **valid)
    server_san = x509.SubjectAlternativeName([x509.DNSName("localhost")])
    for name, usage, cert, key_file, san in (
        ("localhost", ExtendedKeyUsageOID.SERVER_AUTH, certs.cert, certs.key, server_san),
        (
            "lexigram-worker",
            ExtendedKeyUsageOID.CLIENT_AUTH,
            certs.client_cert,
            certs.client_key,
            None,
        ),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            issue.subject_name(_name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if san is not None:
            builder = builder.add_extension(san, critical=False)
        cert.write_bytes(
            builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        )
        _write_key(key_file, key)
    return certs


@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """The session's CA and server certificate (one set per xdist process)."""
    directory = tmp_path_factory.mktemp("tls-certs")
    return make_certs(directory)


@pytest.fixture(scope="session")
def stranger_certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """Certificates of another CA, which no test server trusts (its client certificate
    has the same subject as the trusted one, so only the signature tells them apart)."""
    directory = tmp_path_factory.mktemp("tls-stranger-certs")
    return make_certs(directory)


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None, log: Path) -> str | None:
    """Wait until 127.0.0.1:`port` accepts connections; return why not, or None."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return f"exited with {process.returncode}: {_tail(log)}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return None
        except OSError:
            time.sleep(0.1)
    return f"did not listen on port {port} within {START_TIMEOUT_S:g} s: {_tail(log)}"


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace").strip()[-600:]
    except OSError:
        return "(no log)"


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server started with `start_new_session` (its whole process group)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
        except ProcessLookupError:
            pass
    if process.poll() is None:  # pragma: no cover - the group went away under us
        process.wait(timeout=15)


def service_user(name: str, fail: Callable[[str], NoReturn]) -> pwd.struct_passwd:
    """The account a server must run as: `name` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(name)
    except KeyError:
        fail(f"running the server as root is refused and there is no {name!r} system user")


def as_user(user: pwd.struct_passwd) -> list[str]:
    """Command prefix running as `user` (nothing when that is already us)."""
    return ["runuser", "-u", user.pw_name, "--"] if os.geteuid() != user.pw_uid else []


def server_dir(prefix: str, certs: Certs, user: pwd.struct_passwd) -> Path:
    """A fresh directory owned by `user`, holding a copy of the certificates it may read.

    Servers refuse a private key that others can read or that belongs to someone else.
    """
    root = Path(tempfile.mkdtemp(prefix=f"lexigram-{prefix}-tls-"))
    for source in (certs.ca, certs.cert, certs.key):
        shutil.copy(source, root / source.name)
    (root / certs.key.name).chmod(0o600)
    for path in (root, *root.iterdir()):
        os.chown(path, user.pw_uid, user.pw_gid)
    return root


def require(binary: str, fail: Callable[[str], NoReturn], *extra: Path) -> str:
    """Path of `binary` (on PATH or among `extra` candidates), or skip/fail."""
    found = shutil.which(binary)
    if found:
        return found
    for candidate in extra:
        if candidate.is_file():
            return str(candidate)
    return fail(f"the TLS tests need the {binary!r} server binary, which is not installed")


REDIS_PASSWORD = "tls-test-secret"  # noqa: S105 - a throwaway password of a private test server


@contextmanager
def _redis(
    certs: Certs, fail: Callable[[str], NoReturn], ports: Callable[[], int], *, auth_clients: bool
) -> Iterator[Server]:
    binary = require("redis-server", fail)
    root = server_dir("redis", certs, pwd.getpwuid(os.geteuid()))
    port, log = ports(), root / "redis.log"
    command = [
        binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
        "--tls-cert-file", str(root / "server.pem"), "--tls-key-file", str(root / "server.key"),
        "--tls-ca-cert-file", str(root / "ca.pem"),
        "--tls-auth-clients", "yes" if auth_clients else "no",
        "--requirepass", REDIS_PASSWORD, "--save", "", "--appendonly", "no",
        "--dir", str(root), "--logfile", str(log),
    ]  # fmt: skip
    process = subprocess.Popen(command, start_new_session=True)  # noqa: S603 - redis-server
    try:
        problem = wait_for_port(port, process, log)
        if problem is not None:
            fail(f"the private TLS Redis {problem}")
        yield Server(port, certs.ca, REDIS_PASSWORD)
    finally:
        stop(process)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def redis_tls(
    tls_certs: Certs, service_unavailable: Callable[[str], NoReturn], free_port: Callable[[], int]
) -> Iterator[Server]:
    """A TLS-only Redis with a password on a free loopback port."""
    with _redis(tls_certs, service_unavailable, free_port, auth_clients=False) as server:
        yield server


@pytest.fixture(scope="module")
def redis_mtls(
    tls_certs: Certs, service_unavailable: Callable[[str], NoReturn], free_port: Callable[[], int]
) -> Iterator[Server]:
    """A TLS-only Redis that also requires a client certificate signed by the test CA."""
    with _redis(tls_certs, service_unavailable, free_port, auth_clients=True) as server:
        yield server


# Trust authentication ignores it; it is in the URLs to show that no message prints it.
POSTGRES_PASSWORD = "pg-tls-test-secret"  # noqa: S105 - never checked by the server
POSTGRES_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


CLIENT_USER = "lexigram-worker"
"""The client certificate's common name: the role PostgreSQL's ``cert`` method logs in."""
CLIENT_DATABASE = "tasks"
"""The database that role owns in the cluster requiring client certificates."""


@contextmanager
def _postgres(
    certs: Certs, fail: Callable[[str], NoReturn], ports: Callable[[], int], *, client_cert: bool
) -> Iterator[Server]:
    initdb = require("initdb", fail, *(d / "initdb" for d in POSTGRES_BIN[::-1]))
    bin_dir = Path(initdb).resolve().parent  # pg_ctl sits beside the real initdb
    user = service_user("postgres", fail)
    root = server_dir("pg", certs, user)
    data, log, port = root / "data", root / "postgres.log", ports()

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - the distribution's PostgreSQL programs
            [*as_user(user), *command], capture_output=True, text=True, timeout=120, check=False
        )

    # `cert` checks the client certificate against ssl_ca_file and logs in the role its
    # common name names; `trust` asks for nothing beyond TLS.
    method = "cert" if client_cert else "trust"
    try:
        init = run(initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync")
        if init.returncode != 0:
            fail(f"initdb failed: {init.stderr.strip()[-300:]}")
        (data / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"hostssl all all 127.0.0.1/32 {method}\n"
            f"hostssl all all ::1/128 {method}\n"
        )
        options = (
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c ssl=on "
            f"-c ssl_cert_file={root / 'server.pem'} -c ssl_key_file={root / 'server.key'} "
            f"-c ssl_ca_file={root / 'ca.pem'} -c fsync=off -c max_connections=30"
        )
        start = run(
            str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"
        )
        if start.returncode != 0:
            fail(f"the private TLS PostgreSQL did not start: {_tail(log)}")
        if client_cert:
            for sql in (
                f'CREATE ROLE "{CLIENT_USER}" LOGIN',
                f'CREATE DATABASE {CLIENT_DATABASE} OWNER "{CLIENT_USER}"',
            ):
                created = run(
                    str(bin_dir / "psql"), "-h", str(root), "-p", str(port), "-U", "postgres",
                    "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql,
                )  # fmt: skip
                if created.returncode != 0:
                    fail(f"{sql} failed: {created.stderr.strip()[-300:]}")
        yield Server(port, certs.ca, POSTGRES_PASSWORD)
    finally:
        if (data / "postmaster.pid").exists():
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_tls(
    tls_certs: Certs, service_unavailable: Callable[[str], NoReturn], free_port: Callable[[], int]
) -> Iterator[Server]:
    """A PostgreSQL cluster accepting TLS connections only.

    pg_hba.conf has ``hostssl`` lines and no ``host`` line, so a plain-text login is
    refused by the server itself; logins are trusted (the tests are about TLS).
    """
    with _postgres(tls_certs, service_unavailable, free_port, client_cert=False) as server:
        yield server


@pytest.fixture(scope="module")
def postgres_mtls(
    tls_certs: Certs, service_unavailable: Callable[[str], NoReturn], free_port: Callable[[], int]
) -> Iterator[Server]:
    """A TLS-only PostgreSQL cluster whose only login method is ``hostssl ... cert``.

    A client must show a certificate signed by the test CA; its common name is the role
    logged in (`CLIENT_USER`, owner of the database `CLIENT_DATABASE`).
    """
    with _postgres(tls_certs, service_unavailable, free_port, client_cert=True) as server:
        yield server


# guest's password on the private nodes (the broker's default, guest, would hide in "guest:"
# and so prove nothing about masking).
RABBITMQ_PASSWORD = "rmq-tls-test-secret"  # noqa: S105 - a throwaway password of a private node
RABBITMQ_SCRIPTS = (Path("/usr/lib/rabbitmq/bin/rabbitmq-server"),)


@contextmanager
def _rabbitmq(
    certs: Certs,
    service_unavailable: Callable[[str], NoReturn],
    ports: Callable[[], int],
    *,
    client_cert: bool,
) -> Iterator[Server]:
    # The distribution's real start script, not the Debian wrapper in /usr/sbin, which
    # switches user with su and sends the output to the shared node's log files.
    script = next((str(p) for p in RABBITMQ_SCRIPTS if p.is_file()), None)
    script = script or require("rabbitmq-server", service_unavailable)
    user = service_user("rabbitmq", service_unavailable)
    root = server_dir("rabbitmq", certs, user)
    port, dist_port, log = ports(), ports(), root / "startup.log"
    (root / "rabbitmq.conf").write_text(
        "listeners.tcp = none\n"
        f"listeners.ssl.default = 127.0.0.1:{port}\n"
        f"ssl_options.cacertfile = {root / 'ca.pem'}\n"
        f"ssl_options.certfile = {root / 'server.pem'}\n"
        f"ssl_options.keyfile = {root / 'server.key'}\n"
        f"ssl_options.verify = {'verify_peer' if client_cert else 'verify_none'}\n"
        f"ssl_options.fail_if_no_peer_cert = {'true' if client_cert else 'false'}\n"
        # guest may log in from localhost only by default; the tests connect over loopback
        # but by name, which RabbitMQ cannot always tell apart.
        "loopback_users = none\n"
        f"default_pass = {RABBITMQ_PASSWORD}\n"
    )
    (root / "enabled_plugins").write_text("[].\n")
    (root / "rabbitmq-env.conf").write_text("")
    for name in ("mnesia", "log"):
        (root / name).mkdir()
    for path in root.iterdir():
        os.chown(path, user.pw_uid, user.pw_gid)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": user.pw_dir,  # where the Erlang cookie is
        "RABBITMQ_CONF_ENV_FILE": str(root / "rabbitmq-env.conf"),
        "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
        "RABBITMQ_NODENAME": f"lexigram-tls-{port}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
        "RABBITMQ_LOG_BASE": str(root / "log"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - the distribution's start script
            [*as_user(user), "env", *(f"{k}={v}" for k, v in env.items()), script],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    try:
        problem = wait_for_port(port, process, log)
        if problem is not None:
            service_unavailable(f"the private TLS RabbitMQ node {problem}")
        yield Server(port, certs.ca, RABBITMQ_PASSWORD)
    finally:
        stop(process)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def rabbitmq_tls(
    tls_certs: Certs, service_unavailable: Callable[[str], NoReturn], free_port: Callable[[], int]
) -> Iterator[Server]:
    """A second RabbitMQ node with only a TLS listener.

    It has a node name, distribution port, data and log directories, config, env file
    and plugin list of its own, so the shared node (and its config) is never touched.
    """
    with _rabbitmq(tls_certs, service_unavailable, free_port, client_cert=False) as server:
        yield server


@pytest.fixture(scope="module")
def rabbitmq_mtls(
    tls_certs: Certs, service_unavailable: Callable[[str], NoReturn], free_port: Callable[[], int]
) -> Iterator[Server]:
    """Such a node that also requires a client certificate signed by the test CA
    (``ssl_options.verify = verify_peer``, ``fail_if_no_peer_cert = true``); the login
    is still guest's password."""
    with _rabbitmq(tls_certs, service_unavailable, free_port, client_cert=True) as server:
        yield server


APP = """
from pathlib import Path

from lexigram.tasks import task


@task
async def add(a: int, b: int, out: str) -> int:
    Path(out).write_text(str(a + b))
    return a + b
"""


@pytest.fixture
def round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str, str], dict[str, object]]:
    """Run ``add(2, 3)`` through the command line over a URL; return what came back.

    The job is enqueued with ``--backend URL`` and run by ``worker --burst`` configured
    by a YAML file that takes the same URL from the environment, as a deployment's
    secret would come in. The handler writes its sum to a file (``ran``); with a
    backend that stores results, ``job result`` reads it back over TLS too (``result``).
    """
    app = f"tls_app_{uuid4().hex[:8]}"
    (tmp_path / f"{app}.py").write_text(APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    config, out = tmp_path / "tasks.yaml", tmp_path / "sum.txt"

    def run(url: str, backend_type: str) -> dict[str, object]:
        monkeypatch.setenv("LEXIGRAM_TLS_TEST_URL", url)
        config.write_text(
            "tasks:\n"
            "  backend:\n"
            f"    type: {backend_type}\n"
            '    url: "${LEXIGRAM_TLS_TEST_URL}"\n'
            "  worker:\n"
            "    poll_interval: 0.05\n"
        )
        runner = CliRunner()
        args = json.dumps([2, 3, str(out)])
        enqueued = runner.invoke(cli, ["enqueue", "add", "--args", args, "-b", url])
        assert enqueued.exit_code == 0, enqueued.output
        job_id = enqueued.stdout.strip()
        worked = runner.invoke(cli, ["worker", app, "--burst", "--config", str(config)])
        assert worked.exit_code == 0, worked.output
        seen: dict[str, object] = {"ran": int(out.read_text())}
        if backend_type != "rabbitmq":  # it keeps results inside the worker process
            read = runner.invoke(cli, ["job", "result", job_id, "--json", "--config", str(config)])
            assert read.exit_code == 0, read.output
            seen["result"] = json.loads(read.stdout)["result"]
        return seen

    return run


def tls_failure(url: str) -> str:
    """The error line ``lexigram-tasks inspect -b URL`` ends with when TLS fails.

    The command must exit with 2, the CLI's code for a backend it cannot connect to.
    """
    result = CliRunner().invoke(cli, ["inspect", "-b", url, "--connect-timeout", "5"])
    # A handshake the server cuts off can leave the client's socket transport to the
    # garbage collector: closing a TLS transport waits for the peer's goodbye, and the
    # command's loop is closed by then. Collect it here, where it was made, so its
    # ResourceWarning cannot fail whichever test runs next (it did once, on a loaded CI).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output  # one line naming the problem, no traceback
    return lines[0]


@pytest.fixture
def failure() -> Callable[[str], str]:
    """`tls_failure`, for the test modules (conftest helpers are not importable)."""
    return tls_failure


def assert_shows_no_secret(message: str, password: str, *keys: Path) -> None:
    """`message` holds neither `password` nor any line of the private keys' PEM text."""
    assert password not in message
    for key in keys:
        for line in filter(None, key.read_text().splitlines()):
            assert line not in message


@pytest.fixture
def no_secret() -> Callable[..., None]:
    """`assert_shows_no_secret`, for the test modules."""
    return assert_shows_no_secret
