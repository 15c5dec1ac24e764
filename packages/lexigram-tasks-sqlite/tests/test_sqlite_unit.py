"""Unit tests of the SQLite backend: URL, options, backend object, schema, filesystem check."""

from __future__ import annotations

import importlib.metadata
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from lexigram.contracts.tasks import (
    OPTIONAL_BACKEND_FACTORIES,
    BackendConnectionError,
    ConnectionCheckingQueueProtocol,
    Job,
    TaskBackendSpec,
    TaskConfigurationError,
    TaskQueueProtocol,
)
from lexigram.tasks.backends.sqlite import (
    DEFAULT_FILENAME,
    DEFAULT_PATH_ENV,
    SCHEMA_VERSION,
    SQLiteBackend,
    SQLiteOptions,
    SQLiteTaskQueue,
    backend,
    network_filesystem,
    path_from_url,
)
from lexigram.tasks.backends.sqlite._netfs import mount_type


def test_url_three_slashes_is_relative_four_is_absolute() -> None:
    assert path_from_url("sqlite:///tasks.db") == "tasks.db"
    assert path_from_url("sqlite:///data/tasks.db") == "data/tasks.db"
    assert path_from_url("sqlite:////var/lib/app/tasks.db") == "/var/lib/app/tasks.db"
    assert path_from_url("sqlite:///my%20tasks.db") == "my tasks.db"


def test_no_url_means_the_default_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEFAULT_PATH_ENV, raising=False)
    assert path_from_url(None) == DEFAULT_FILENAME
    assert path_from_url("sqlite://") == DEFAULT_FILENAME
    monkeypatch.setenv(DEFAULT_PATH_ENV, "/srv/q.db")
    assert path_from_url(None) == "/srv/q.db"


def test_a_path_is_a_file_a_sqlite_url_or_refused(tmp_path: Path) -> None:
    inside = tmp_path / "q.db"
    assert (
        repr(SQLiteTaskQueue(str(inside)))
        == f"SQLiteTaskQueue(path={str(inside)!r}, queue_name='tasks')"
    )
    assert "path='tasks.db'" in repr(SQLiteTaskQueue("sqlite:///tasks.db"))
    with pytest.raises(TaskConfigurationError, match="is a URL, not a file") as info:
        SQLiteTaskQueue("redis://:secret@localhost/0")
    assert "secret" not in str(info.value)
    with pytest.raises(TaskConfigurationError, match="both a path and url="):
        SQLiteTaskQueue(str(inside), url="sqlite:///other.db")
    assert not any(tmp_path.iterdir())  # nothing was opened


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("sqlite:///:memory:", "in-memory"),
        ("sqlite://host/x.db", "names a host"),
        ("sqlite://u:hunter2@h/x.db", "names a host or credentials"),
        ("redis://localhost/0", "does not start with sqlite://"),
        # Read as a path, these were misread without a word: `?mode=ro` dropped (the
        # file opened for writing), a directory made into a file of that name.
        ("sqlite:///x.db?mode=ro", "has a query string"),
        ("sqlite:///x.db#main", "has a query string or fragment"),
        ("sqlite:///data/", "names a directory, not a file"),
    ],
)
def test_bad_urls_say_what_to_do(url: str, words: str) -> None:
    with pytest.raises(TaskConfigurationError, match=words) as caught:
        path_from_url(url)
    assert "sqlite:///" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_backend_describes_itself() -> None:
    assert SQLiteBackend.url_schemes == ("sqlite",)
    assert SQLiteBackend.url_field is None
    assert SQLiteBackend.options_type is SQLiteOptions
    for name in OPTIONAL_BACKEND_FACTORIES:
        assert callable(getattr(backend, name)), name


def test_entry_point_names_the_backend_object() -> None:
    found = [
        ep
        for ep in importlib.metadata.entry_points(group="lexigram.tasks.backends")
        if ep.name == "sqlite"
    ]
    assert len(found) == 1
    assert found[0].load() is backend


def test_options_are_parsed_and_checked(tmp_path: Path) -> None:
    spec = TaskBackendSpec(
        name="default",
        type="sqlite",
        url=f"sqlite:///{tmp_path}/x.db",
        queue_name="q",
        options={"synchronous": "FULL", "visibility_timeout": "7", "busy_timeout": 2},
    )
    queue = backend.create_queue(spec)
    assert isinstance(queue, TaskQueueProtocol)
    assert queue.lease_seconds == 7.0
    assert queue.options.synchronous == "FULL"
    assert queue.database.busy_timeout == 2.0
    bad = TaskBackendSpec(name="default", type="sqlite", options={"synchronus": "FULL"})
    with pytest.raises(TaskConfigurationError, match="Did you mean 'synchronous'"):
        backend.create_queue(bad)
    wrong = TaskBackendSpec(name="default", type="sqlite", options={"synchronous": "OFF"})
    with pytest.raises(TaskConfigurationError, match="synchronous"):
        backend.create_queue(wrong)


async def test_objects_of_one_file_share_one_database(tmp_path: Path) -> None:
    spec = TaskBackendSpec(name="default", type="sqlite", url=f"sqlite:///{tmp_path}/s.db")
    one = SQLiteBackend()
    queue = one.create_queue(spec)
    results = one.create_result_store(spec)
    assert queue.database is results.database
    await queue.close()
    assert not results.database.closed  # the store still holds a reference
    assert await results.get("nothing") is None
    await results.close()
    assert results.database.closed


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
async def test_file_is_in_wal_mode_with_the_chosen_synchronous(
    tmp_path: Path, synchronous: str
) -> None:
    queue = SQLiteTaskQueue(
        str(tmp_path / "w.db"),
        options=SQLiteOptions(synchronous=synchronous),  # type: ignore[arg-type]
    )
    try:
        await queue.enqueue(Job(name="a"))

        def pragmas(conn: sqlite3.Connection) -> tuple[str, int]:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            return str(mode), int(conn.execute("PRAGMA synchronous").fetchone()[0])

        mode, sync = await queue.database.call(pragmas, write=False)
        assert mode == "wal"
        assert sync == {"NORMAL": 1, "FULL": 2}[synchronous]
    finally:
        await queue.close()


async def test_the_connection_check_opens_the_file_and_fails_as_count_does(
    tmp_path: Path,
) -> None:
    queue = SQLiteTaskQueue(str(tmp_path / "c.db"))
    try:
        assert isinstance(queue, ConnectionCheckingQueueProtocol)
        await queue.check_connection()  # creates the tables, as any first call
        await queue.enqueue(Job(name="a"))
        await queue.check_connection()
        assert await queue.count(queue.queue_name) == 1
    finally:
        await queue.close()
    newer = str(tmp_path / "newer.db")
    with closing(sqlite3.connect(newer)) as conn, conn:
        conn.execute("CREATE TABLE lexigram_schema (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO lexigram_schema VALUES (?)", (SCHEMA_VERSION + 1,))
    messages = []
    for call in ("check_connection", "count"):
        queue = SQLiteTaskQueue(newer)
        check = queue.count(queue.queue_name) if call == "count" else queue.check_connection()
        try:
            with pytest.raises(BackendConnectionError) as caught:
                await check
        finally:
            await queue.close()
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    assert "Upgrade lexigram-tasks-sqlite" in messages[0]


async def test_schema_version_is_recorded_and_migrations_run_once(tmp_path: Path) -> None:
    path = str(tmp_path / "m.db")
    for _ in range(2):
        queue = SQLiteTaskQueue(path)
        await queue.count(queue.queue_name)
        await queue.close()
    with closing(sqlite3.connect(path)) as conn, conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM lexigram_schema")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


async def test_rows_with_columns_another_program_mistyped_are_still_delivered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A due time or a delivery count that is not a number does not stop the queue."""
    path = str(tmp_path / "typed.db")
    queue = SQLiteTaskQueue(path)
    try:
        jobs = [Job(name="a"), Job(name="b"), Job(name="c")]
        for job in jobs:
            (await queue.enqueue(job)).unwrap()
        with closing(sqlite3.connect(path)) as conn, conn:
            conn.execute(
                "UPDATE lexigram_jobs SET available_at = 'soon' WHERE id = ?", (jobs[0].id,)
            )
            conn.execute(
                "UPDATE lexigram_jobs SET delivery_count = 'x' WHERE id = ?", (jobs[1].id,)
            )
        first = await queue.dequeue_batch(10)
        assert [job.id for job in first] == [jobs[1].id, jobs[2].id]
        assert first[0].delivery_count == 1  # 'x' read as no earlier delivery
        # The idle take finds the due time that is not one, makes it now and delivers.
        (repaired,) = await queue.dequeue_batch(10, timeout=1.0)
        assert repaired.id == jobs[0].id
        assert "not a number" in caplog.text
        assert "lexigram_jobs.available_at" in caplog.text
    finally:
        await queue.close()


async def test_a_file_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "new.db")
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE lexigram_schema (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO lexigram_schema VALUES (?)", (SCHEMA_VERSION + 1,))
    queue = SQLiteTaskQueue(path)
    try:
        with pytest.raises(BackendConnectionError, match="Upgrade lexigram-tasks-sqlite"):
            await queue.count(queue.queue_name)
    finally:
        await queue.close()


async def test_an_unwritable_place_fails_with_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    queue = SQLiteTaskQueue(str(blocker / "sub" / "q.db"))
    try:
        with pytest.raises(BackendConnectionError, match="Cannot open the SQLite database"):
            await queue.enqueue(Job(name="a"))
    finally:
        await queue.close()


async def test_a_file_that_is_not_a_database_is_named_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 200)
    queue = SQLiteTaskQueue(str(path))
    try:
        with pytest.raises(BackendConnectionError) as raised:
            await queue.enqueue(Job(name="a"))
    finally:
        await queue.close()
    message = str(raised.value)
    assert "notes.db" in message
    assert "file is not a database" in message
    assert "a path that does not exist yet" in message
    assert "\n" not in message


MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /mnt/share rw,relatime shared:20 - nfs4 server:/export rw,vers=4.2
41 22 0:36 / /mnt/my\\040docs rw,relatime shared:21 - cifs //nas/docs rw
42 40 0:37 / /mnt/share/local rw,relatime shared:22 - tmpfs tmpfs rw
"""


def test_network_filesystems_are_detected_from_the_mount_table(tmp_path: Path) -> None:
    table = tmp_path / "mountinfo"
    table.write_text(MOUNTINFO)
    assert mount_type("/home/me", str(table)) == "ext4"
    assert mount_type("/mnt/share/app", str(table)) == "nfs4"
    assert mount_type("/mnt/my docs/x", str(table)) == "cifs"  # octal escapes decoded
    assert mount_type("/mnt/share/local/x", str(table)) == "tmpfs"  # the deeper mount wins
    assert mount_type("/x", str(tmp_path / "missing")) is None
    share = (tmp_path / "share").resolve()
    (share / "app").mkdir(parents=True)
    table.write_text(MOUNTINFO + f"43 22 0:38 / {share} rw - nfs4 server:/e rw\n")
    assert network_filesystem(str(share / "app"), str(table)) == "nfs4"
    # A directory that does not exist yet is judged by its nearest existing parent.
    assert network_filesystem(str(share / "app" / "new" / "deeper"), str(table)) == "nfs4"
    assert network_filesystem(str(tmp_path), str(table)) is None


async def test_a_database_on_a_network_filesystem_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lexigram.tasks.backends.sqlite import _open

    monkeypatch.setattr(_open, "network_filesystem", lambda directory: "nfs4")
    queue = SQLiteTaskQueue(str(tmp_path / "n.db"))
    try:
        with pytest.raises(TaskConfigurationError, match="network filesystem \\(nfs4\\)"):
            await queue.enqueue(Job(name="a"))
    finally:
        await queue.close()
    allowed = SQLiteTaskQueue(
        str(tmp_path / "n.db"), options=SQLiteOptions(allow_network_filesystem=True)
    )
    try:
        assert (await allowed.enqueue(Job(name="a"))).is_ok()
    finally:
        await allowed.close()


EXIT_SCRIPT = """
import asyncio, sys
from lexigram.contracts.tasks import JobResult
from lexigram.tasks.backends.sqlite import SQLiteResultStore

async def main():
    store = SQLiteResultStore(sys.argv[1])
    await store.get("warm-up")  # the file is open: the next write runs behind
    await store.store("last", JobResult.ok(data=5))  # the loop ends before its turn

asyncio.run(main())
"""


def test_a_write_behind_made_just_before_exit_is_committed(tmp_path: Path) -> None:
    path = str(tmp_path / "exit.db")
    subprocess.run([sys.executable, "-c", EXIT_SCRIPT, path], check=True, timeout=60)  # noqa: S603
    with closing(sqlite3.connect(path)) as conn, conn:
        assert conn.execute("SELECT job_id FROM lexigram_results").fetchall() == [("last",)]


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("visibility_timeout", "-5", "is not a positive, finite number of seconds"),
        ("poll_interval", "0", "is not a positive, finite number of seconds"),
        ("busy_timeout", "-1", "is not a non-negative, finite number of seconds"),
        ("open_timeout", "-1", "is not a non-negative, finite number of seconds"),
        ("idempotency_ttl", "-5", "is not a non-negative, finite number of seconds"),
        ("dlq_max_entries", "-1", "is negative"),
    ],
)
def test_out_of_range_options_are_one_line_naming_them(
    option: str, value: object, words: str
) -> None:
    # A negative lease failed later as "a fault of the backend", a negative key TTL
    # was taken without a word.
    spec = TaskBackendSpec(name="default", type="sqlite", options={option: value})
    with pytest.raises(TaskConfigurationError, match=f"option {option}=") as caught:
        backend.create_queue(spec)
    assert words in str(caught.value)
