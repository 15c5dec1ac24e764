"""Private broker instances for the fault-injection runs: each on its own loopback port.

`RedisBroker` runs ``redis-server`` with append-only persistence (``appendfsync always``, so
an acknowledged enqueue survives a kill -9); `PostgresBroker` runs ``initdb`` + ``pg_ctl`` in a
temporary directory (as the ``postgres`` system user when run as root). Both can be killed
with SIGKILL, restarted on the same port and data, paused (SIGSTOP) and resumed (SIGCONT).
Nothing shared is touched: the services other tests use are never contacted.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    msg = f"nothing answered on 127.0.0.1:{port} within {timeout:.0f} s"
    raise RuntimeError(msg)


class RedisBroker:
    """One private ``redis-server`` with its data in a temporary directory."""

    kind = "redis"

    def __init__(self, base: Path | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            msg = "redis-server is not on PATH: install Redis to run the Redis scenarios"
            raise RuntimeError(msg)
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="redis-", dir=base))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL workers and the producer connect to."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart, on the same data) the server and wait until it answers."""
        command = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.root),
        ]  # fmt: skip
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port, 20.0)

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.proc is not None  # noqa: S101 - started first
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL the server (no shutdown, no final write)."""
        assert self.proc is not None  # noqa: S101 - started first
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def pause(self) -> None:
        """Freeze the server: connections stay open, nothing answers."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Unfreeze the server."""
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server and remove its data."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def _pg_bin() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not versions:
        msg = "PostgreSQL's initdb was not found: install the server to run its scenarios"
        raise RuntimeError(msg)
    return versions[-1].parent


class PostgresBroker:
    """One private PostgreSQL cluster (``initdb`` + ``pg_ctl``) on a loopback port."""

    kind = "postgres"

    def __init__(self, base: Path | None = None) -> None:
        self.bin = _pg_bin()
        if os.geteuid() == 0:
            try:
                self.owner = pwd.getpwnam("postgres")
            except KeyError as exc:
                msg = "running initdb as root needs a 'postgres' system user"
                raise RuntimeError(msg) from exc
        else:
            self.owner = pwd.getpwuid(os.geteuid())
        self.root = Path(tempfile.mkdtemp(prefix="pg-", dir=base))
        os.chown(self.root, self.owner.pw_uid, self.owner.pw_gid)
        self.data = self.root / "data"
        self.port = free_port()
        init = self._as_owner(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth-local=trust", "--auth-host=trust", "--no-sync",
        )  # fmt: skip
        if init.returncode != 0:
            msg = f"initdb failed: {init.stderr.strip()[-300:]}"
            raise RuntimeError(msg)

    @property
    def url(self) -> str:
        """The DSN workers and the producer connect to."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_owner(self, *command: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", self.owner.pw_name, "--"] if os.geteuid() == 0 else []
        return subprocess.run(
            [*prefix, *command], capture_output=True, text=True, timeout=120, check=False
        )

    def start(self) -> None:
        """Start (or restart after a crash, with recovery) the cluster and wait for it."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=60"
        )
        start = self._as_owner(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.root / "log"), "-w", "-t", "60", "start",
        )  # fmt: skip
        if start.returncode != 0:
            msg = f"the private PostgreSQL did not start: {start.stderr.strip()[-300:]}"
            raise RuntimeError(msg)

    @property
    def pid(self) -> int:
        """The postmaster's process id (first line of postmaster.pid)."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def _children(self, parent: int) -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                found.append(int(entry.name))
        return found

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend process (a crash of the whole server)."""
        postmaster = self.pid
        victims = [postmaster, *self._children(postmaster)]
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in victims):
            time.sleep(0.05)

    def pause(self) -> None:
        """Freeze the postmaster and every backend."""
        postmaster = self.pid
        for pid in [postmaster, *self._children(postmaster)]:
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Unfreeze the postmaster and every backend."""
        postmaster = self.pid
        for pid in [postmaster, *self._children(postmaster)]:
            os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop the cluster immediately and remove its data."""
        with contextlib.suppress(OSError, ValueError):
            self.resume()
        self._as_owner(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


class SQLiteFile:
    """SQLite needs no server: a database file in a temporary directory."""

    kind = "sqlite"

    def __init__(self, base: Path | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sqlite-", dir=base))

    @property
    def url(self) -> str:
        """The database file path."""
        return str(self.root / "chaos.db")

    def start(self) -> None:
        """Nothing to start."""

    def stop(self) -> None:
        """Remove the database file."""
        shutil.rmtree(self.root, ignore_errors=True)


class RabbitMQBroker:
    """One private RabbitMQ node (its own name, ports, data and config) on loopback.

    Started as the ``rabbitmq`` system user when run as root, with an empty plugin list (the
    management plugin would bind the shared node's port) and a config of its own, so the
    machine's ``/etc/rabbitmq`` files (which name the shared node's listener) are not read.
    Queues are durable and messages persistent, as the backend declares them; the broker
    writes them to disk before it confirms a publish.
    """

    kind = "rabbitmq"

    def __init__(self, base: Path | None = None) -> None:
        script = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
        found = shutil.which("rabbitmq-server")
        if not script.exists() and found is None:
            msg = "rabbitmq-server is not installed: install RabbitMQ to run its scenarios"
            raise RuntimeError(msg)
        self.script = script if script.exists() else Path(str(found))
        self.root = Path(tempfile.mkdtemp(prefix="rabbitmq-", dir=base))
        self.root.chmod(0o755)
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"chaos-{self.port}@localhost"
        (self.root / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        (self.root / "enabled_plugins").write_text("[].\n")
        self.user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self.user = pwd.getpwnam("rabbitmq")
            except KeyError:
                self.user = None
        if self.user is not None:
            for path in [self.root, *self.root.iterdir()]:
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The AMQP URL workers and the producer connect to."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        home = self.user.pw_dir if self.user is not None else env.get("HOME", str(self.root))
        env |= {
            "HOME": home,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),  # none: no shared one
            "RABBITMQ_PID_FILE": str(self.root / "pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        return env

    def start(self) -> None:
        """Start (or restart, on the same data) the node and wait until AMQP answers."""
        prefix = ["runuser", "-u", self.user.pw_name, "--"] if self.user is not None else []
        with (self.root / "server.log").open("ab") as out:
            self.proc = subprocess.Popen(
                [*prefix, str(self.script)], env=self._env(), cwd=self.root,
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        _wait_port(self.port, 90.0)

    @property
    def pid(self) -> int:
        """The Erlang VM's (beam.smp) process id, from the node's pid file."""
        return int((self.root / "pid").read_text().split()[0])

    def kill(self) -> None:
        """SIGKILL the Erlang VM (no shutdown: what a crash or the OOM killer does)."""
        pid = self.pid
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.05)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)

    def pause(self) -> None:
        """Freeze the Erlang VM."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Unfreeze the Erlang VM."""
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop the node (SIGTERM to the VM, then SIGKILL) and remove its data."""
        with contextlib.suppress(OSError, ValueError):
            pid = self.pid
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.1)
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)
