"""Unit tests of the PostgreSQL backend: no server, only pure logic and construction."""

from __future__ import annotations

import socket
import ssl
import uuid
from importlib.metadata import entry_points

import asyncpg
import pytest

from lexigram.contracts.tasks import (
    OPTIONAL_BACKEND_ATTRIBUTES,
    OPTIONAL_BACKEND_FACTORIES,
    Err,
    Job,
    JobStatus,
    TaskBackendSpec,
    TaskConfigurationError,
    TaskQueueProtocol,
    TaskValidationError,
    parse_options,
)
from lexigram.tasks.backends.postgres import (
    DEFAULT_SCHEMA,
    PostgresOptions,
    PostgresTaskConfig,
    PostgresTaskQueue,
    backend,
    create_queue,
)
from lexigram.tasks.backends.postgres._connection import backoff_delays, payload_delay
from lexigram.tasks.backends.postgres._diagnose import connect_error
from lexigram.tasks.backends.postgres._enqueue import make_token, parse_token
from lexigram.tasks.backends.postgres._options import channel_name, normalize_dsn
from lexigram.tasks.backends.postgres._schema import (
    QUEUE_MIGRATIONS,
    STORE_MIGRATIONS,
    _pending,
    _render,
)
from lexigram.tasks.backends.postgres._sql import QueueSQL
from lexigram.tasks.backends.postgres._stores import notified_ids, notify_payloads


class _Secret:
    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value


def test_config_defaults_match_the_published_shape():
    config = PostgresTaskConfig()
    assert config.table == "tasks"
    assert (config.pool_min_size, config.pool_max_size) == (1, 2)
    assert config.command_timeout == 60.0
    assert config.max_attempts == 5
    assert config.schema == DEFAULT_SCHEMA == "lexigram_tasks"
    assert config.visibility_timeout == 30.0


def test_config_positional_dsn_and_secret_unwrapping():
    assert PostgresTaskConfig("postgresql://h/db").dsn == "postgresql://h/db"
    secret = _Secret("postgresql://u:pw@h/db")
    assert PostgresTaskConfig(secret).dsn == "postgresql://u:pw@h/db"  # type: ignore[arg-type]


def test_config_repr_masks_the_password():
    config = PostgresTaskConfig("postgresql://app:hunter2@db:5432/app")
    assert "hunter2" not in repr(config)
    assert "***" in repr(config)
    assert "hunter2" not in config.masked_dsn


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql+asyncpg://u@h/db", "postgresql://u@h/db"),
        ("postgres://u@h/db", "postgres://u@h/db"),
        ("", None),
        (None, None),
    ],
)
def test_normalize_dsn(dsn, expected):
    assert normalize_dsn(dsn) == expected


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("schema", "Bad-Name"),
        ("schema", "x; DROP TABLE y"),
        ("table", "1tasks"),
        ("table", ""),
    ],
)
def test_config_rejects_unsafe_identifiers(field, value):
    with pytest.raises(TaskConfigurationError, match=field):
        PostgresTaskConfig(**{field: value})


@pytest.mark.parametrize(
    "changes",
    [
        {"visibility_timeout": 0},
        {"poll_interval": -1.0},
        {"max_attempts": 0},
        {"pool_min_size": 3, "pool_max_size": 2},
        {"idempotency_ttl": -5},
        {"queue_name": ""},
    ],
)
def test_config_rejects_bad_values(changes):
    with pytest.raises(TaskConfigurationError):
        PostgresTaskConfig(**changes)


def test_from_mapping_reads_strings_and_rejects_unknown_keys():
    config = PostgresTaskConfig.from_mapping(
        {"dsn": "postgresql://h/db", "visibility_timeout": "12.5", "pool_max_size": "8"}
    )
    assert config.visibility_timeout == 12.5
    assert config.pool_max_size == 8
    with pytest.raises(TaskConfigurationError, match="Did you mean 'visibility_timeout'"):
        PostgresTaskConfig.from_mapping({"visiblity_timeout": 3})
    with pytest.raises(TaskConfigurationError, match="not a number"):
        PostgresTaskConfig.from_mapping({"poll_interval": "soon"})
    with pytest.raises(TaskConfigurationError, match="whole number"):
        PostgresTaskConfig.from_mapping({"max_attempts": 2.5})


def test_from_spec_takes_url_queue_and_leaves_store_options_out():
    spec = TaskBackendSpec(
        name="pg",
        type="postgres",
        url="postgresql://h/db",
        queue_name="emails",
        options={"schema": "app_tasks", "namespace": "billing", "result_ttl": 60},
    )
    config = PostgresTaskConfig.from_spec(spec)
    assert (config.dsn, config.queue_name, config.schema) == (
        "postgresql://h/db",
        "emails",
        "app_tasks",
    )


def test_channel_names_are_valid_identifiers():
    short = channel_name("lexigram_tasks", "tasks", "emails")
    assert short == "lexigram.lexigram_tasks.tasks.emails"
    long_name = channel_name("lexigram_tasks", "tasks", "q" * 80)
    weird = channel_name("lexigram_tasks", "tasks", "Emails Ünïcode")
    for name in (long_name, weird):
        assert len(name.encode()) <= 63
        assert name.startswith("lexigram.")
    assert channel_name("s", "t", "a") != channel_name("s", "t", "b")
    assert long_name == channel_name("lexigram_tasks", "tasks", "q" * 80)  # stable


def test_queue_sql_quotes_identifiers_and_uses_skip_locked():
    sql = QueueSQL.build("my_schema", "jobs")
    assert '"my_schema"."jobs"' in sql.dequeue
    assert "FOR UPDATE SKIP LOCKED" in sql.dequeue
    assert "LIMIT $2" in sql.dequeue
    assert "ORDER BY priority DESC, available_at, seq" in sql.dequeue
    assert '"my_schema"."jobs_keys"' in sql.insert_keyed
    for statement in (sql.insert_many, sql.insert_keyed, sql.requeue, sql.retry_later):
        assert "pg_notify" in statement
    assert sql.explain_dequeue.startswith("EXPLAIN")


def test_migrations_are_ordered_and_render_for_the_schema():
    for migrations in (QUEUE_MIGRATIONS, STORE_MIGRATIONS):
        versions = [m.version for m in migrations]
        assert versions == sorted(set(versions))
        assert versions[0] == 1
    rendered = _render(QUEUE_MIGRATIONS[0], "app_tasks", "jobs")
    assert 'CREATE TABLE IF NOT EXISTS "app_tasks"."jobs"' in rendered
    assert '"jobs_dequeue_idx"' in rendered
    assert "(queue, priority DESC, available_at, seq)" in rendered
    assert "{" not in rendered


def test_pending_migrations_by_scope():
    everything = _pending({}, "tasks")
    assert [(scope, m.version) for scope, m in everything] == [
        ("stores", 1),
        ("stores", 2),
        ("stores", 3),
        ("stores", 4),
        ("stores", 5),
        ("stores", 6),
        ("stores", 7),
        ("stores", 8),
        ("stores", 9),
        ("queue:tasks", 1),
        ("queue:tasks", 2),
        ("queue:tasks", 3),
    ]
    assert _pending({"stores": 9, "queue:tasks": 3}, "tasks") == []
    assert [scope for scope, _ in _pending({"stores": 9}, "other")] == [
        "queue:other",
        "queue:other",
        "queue:other",
    ]
    assert _pending({"stores": 9}, None) == []
    # A schema of an earlier version gets exactly the upgrades.
    assert [(scope, m.version) for scope, m in _pending({"stores": 1}, None)] == [
        ("stores", 2),
        ("stores", 3),
        ("stores", 4),
        ("stores", 5),
        ("stores", 6),
        ("stores", 7),
        ("stores", 8),
        ("stores", 9),
    ]
    assert [(scope, m.version) for scope, m in _pending({"queue:tasks": 2}, "tasks")][-1:] == [
        ("queue:tasks", 3)
    ]


def test_backoff_is_bounded_and_grows():
    delays = backoff_delays(8)
    assert len(delays) == 7
    assert 0.15 < delays[0] < 0.25
    assert max(delays) <= 3.0 * 1.2
    assert backoff_delays(1) == []


@pytest.mark.parametrize(
    ("payload", "expected"), [("", None), (None, None), ("2.5", 2.5), ("junk", None)]
)
def test_notify_payload_delay(payload, expected):
    assert payload_delay(payload) == expected


def test_backend_offers_every_optional_factory():
    for name in ("create_queue", *OPTIONAL_BACKEND_FACTORIES):
        if name == "create_progress_tracker":
            continue  # the core's tracker runs over the progress store
        assert callable(getattr(backend, name)), name


def test_entry_point_names_the_backend_object():
    (ep,) = [ep for ep in entry_points(group="lexigram.tasks.backends") if ep.name == "postgres"]
    assert ep.value == "lexigram.tasks.backends.postgres:backend"
    assert ep.load() is backend


def test_create_queue_is_lazy_and_satisfies_the_protocol():
    spec = TaskBackendSpec(
        type="postgres",
        url="postgresql://u:pw@nowhere.invalid/db",
        queue_name="q",
        options={"visibility_timeout": 7},
    )
    queue = create_queue(spec)
    assert isinstance(queue, PostgresTaskQueue)
    assert isinstance(queue, TaskQueueProtocol)
    assert queue.visibility_timeout == 7.0
    assert queue.queue_name == "q"
    assert "pw" not in repr(queue)


def test_queue_accepts_a_dict_config_and_keyword_overrides():
    queue = PostgresTaskQueue({"dsn": "postgresql://h/db", "table": "jobs"}, queue_name="x")
    assert queue.config.table == "jobs"
    assert queue.queue_name == "x"
    with pytest.raises(TypeError, match="asyncpg pool"):
        PostgresTaskQueue(provider=object())


def test_queue_takes_the_dsn_first_as_the_other_backends_take_their_url():
    queue = PostgresTaskQueue("postgresql://app:pw@h/db", queue_name="emails")
    assert queue.config.dsn == "postgresql://app:pw@h/db"
    assert queue.queue_name == "emails"
    with pytest.raises(TaskConfigurationError, match="both as its first argument and as dsn="):
        PostgresTaskQueue("postgresql://h/db", dsn="postgresql://h/other")


def test_a_queue_name_passed_as_the_provider_is_named_and_never_echoed():
    with pytest.raises(TypeError, match="queue_name=") as info:
        PostgresTaskQueue("postgresql://h/db", "postgresql://app:pw@h/db")
    assert "pw" not in str(info.value)
    assert "\n" not in str(info.value)


async def test_invalid_jobs_are_rejected_before_any_connection():
    queue = PostgresTaskQueue(dsn="postgresql://nowhere.invalid/db")
    result = await queue.enqueue(Job(name="bad", args=(object(),)))
    assert isinstance(result, Err)
    assert isinstance(result.error, TaskValidationError)
    # A dict on purpose: enqueue must reject what is not a Job.
    not_a_job = await queue.enqueue({"name": "dict"})  # type: ignore[arg-type]
    assert isinstance(not_a_job, Err)
    await queue.close()


def test_backend_describes_itself():
    assert backend.url_schemes == ("postgresql", "postgres")
    assert backend.url_field == "postgres_dsn"
    assert backend.options_type is PostgresOptions
    for name in OPTIONAL_BACKEND_ATTRIBUTES:
        assert hasattr(backend, name), name


def test_options_are_read_by_parse_options_with_did_you_mean():
    spec = TaskBackendSpec(
        name="pg", type="postgres", options={"visibility_timeout": "9", "namespace": "b"}
    )
    options = PostgresOptions.from_spec(spec)
    assert (options.visibility_timeout, options.namespace) == (9.0, "b")
    typo = TaskBackendSpec(name="pg", type="postgres", options={"shcema": "x"})
    with pytest.raises(TaskConfigurationError, match="Did you mean 'schema'"):
        backend.create_dlq_backend(typo)
    with pytest.raises(TaskConfigurationError, match="result_ttl"):
        PostgresOptions(result_ttl=0)
    with pytest.raises(TaskConfigurationError, match="progress_ttl"):
        PostgresOptions(progress_ttl=-1)
    with pytest.raises(TaskConfigurationError, match="schema"):
        parse_options("postgres", "pg", {"schema": "Bad-Name"}, PostgresOptions)


def test_queue_config_refuses_store_options():
    with pytest.raises(TaskConfigurationError, match="store option 'namespace'"):
        PostgresTaskConfig.from_mapping({"namespace": "x"})


def test_lease_tokens_name_one_delivery_of_one_row():
    assert make_token(12, 3) == "12:3"
    assert parse_token("12:3") == (12, 3)
    assert parse_token(None) is None
    for junk in ("", "12", "a:b", "1:2:3", "x:1"):
        assert parse_token(junk) is None


async def test_a_nul_in_an_id_or_key_is_an_err_not_a_server_error():
    queue = PostgresTaskQueue(dsn="postgresql://nowhere.invalid/db")
    for job in (Job(name="t", id="a\x00b"), Job(name="t", idempotency_key="k\x00")):
        result = await queue.enqueue(job)
        assert isinstance(result, Err)
        assert isinstance(result.error, TaskValidationError)
        assert "U+0000" in str(result.error)
    await queue.close()


async def test_a_malformed_token_is_refused_without_a_round_trip():
    # No server behind this DSN: a refusal that needed one would raise instead.
    queue = PostgresTaskQueue(dsn="postgresql://nowhere.invalid/db")
    for token in ("not-a-token", "7", "x:y"):
        assert await queue.ack("id", lease_token=token) is False
        assert await queue.nack("id", lease_token=token) is False
        assert await queue.extend_lease("id", lease_token=token) is False
    job = Job(name="t")
    job.lease_token = "garbage"  # noqa: S105 - a lease token, not a secret
    assert await queue.retry_later(job, delay=1.0) is False
    assert job.status is JobStatus.PENDING  # a refused retry leaves the job untouched
    await queue.close()


_DSN = "postgresql://app:hunter2@db.example:5433/shop"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            asyncpg.exceptions.InvalidPasswordError(
                'password authentication failed for user "app"'
            ),
            (
                "PostgreSQL at postgresql://app:***@db.example:5433/shop rejected the login "
                "of user 'app' (wrong password): password authentication failed for user "
                '"app". Fix the user name or password in the DSN.'
            ),
        ),
        (
            OSError(
                "Multiple exceptions: [Errno 111] Connect call failed ('::1', 5433, 0, 0), "
                "[Errno 111] Connect call failed ('127.0.0.1', 5433)"
            ),
            (
                "PostgreSQL at postgresql://app:***@db.example:5433/shop refused the connection: "
                "nothing accepts connections at db.example:5433. Start the server, or fix the host "
                "and port in the DSN."
            ),
        ),
        (
            socket.gaierror(-2, "Name or service not known"),
            (
                "PostgreSQL at postgresql://app:***@db.example:5433/shop: the host name of "
                "db.example:5433 does not resolve ([Errno -2] Name or service not known). "
                "Fix the host in the DSN."
            ),
        ),
        (
            ssl.SSLCertVerificationError("certificate verify failed: self-signed certificate"),
            "failed the TLS handshake",
        ),
        (TimeoutError(), "did not answer within 2.5 s (connect_timeout)"),
    ],
    ids=["password", "refused-all-addresses", "dns", "certificate", "timeout"],
)
def test_connect_errors_say_what_is_wrong(exc: BaseException, expected: str) -> None:
    message = str(connect_error(_DSN, exc, timeout=2.5))
    assert expected in message
    assert "hunter2" not in message
    assert "\n" not in message


def test_a_password_with_an_unescaped_at_is_named_as_the_cause() -> None:
    # asyncpg ends the login at the first "@": the rest of the password became the host.
    dsn = "postgresql://bob:hunter2@pw@127.0.0.1:5432/test"
    exc = socket.gaierror(-2, "Name or service not known")
    message = str(connect_error(dsn, exc, timeout=2.5))
    assert "holds an '@' that is not written as %40" in message
    assert "hunter2" not in message
    escaped = str(connect_error("postgresql://bob:hunter2%40pw@db:5432/test", exc, timeout=2.5))
    assert "%40" not in escaped
    assert "does not resolve" in escaped


def test_result_notify_payloads_announce_every_id_under_the_payload_limit():
    ids = [f"job-{n:05d}" for n in range(2000)] + ['quote"d', "back\\slash", "é", '["x"]']
    payloads = notify_payloads(ids)
    assert len(payloads) > 1  # 2,000 ids do not fit in one payload
    assert all(len(p.encode()) < 8000 for p in payloads)
    announced = [job_id for p in payloads for job_id in notified_ids(p)]
    assert set(ids) <= set(announced)


def test_a_batch_of_results_that_fits_is_announced_in_one_payload():
    ids = [str(uuid.uuid4()) for _ in range(100)] + ['quote"d', "é"]
    [payload] = notify_payloads(ids)
    assert len(payload.encode()) < 8000
    assert notified_ids(payload) == [payload, *ids]


def test_result_notify_payload_of_one_id_is_the_id_and_oversized_ids_are_left_out():
    assert notify_payloads(["job-1"]) == ["job-1"]
    assert notified_ids("job-1") == ["job-1"]
    assert notify_payloads(["x" * 9000]) == []
    assert notify_payloads(["x" * 9000, "job-2"]) == ['["job-2"]']
    # An id that reads as a JSON array is announced as itself too.
    assert notified_ids('["a"]') == ['["a"]', "a"]
    assert notified_ids("[not json") == ["[not json"]


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        (_DSN, "did not answer as PostgreSQL does"),  # sslmode=prefer: only asked
        (_DSN + "?sslmode=require", "does not offer TLS but the DSN requires it"),
    ],
)
def test_a_rejected_tls_request_blames_the_port_unless_tls_was_required(
    dsn: str, expected: str
) -> None:
    exc = ConnectionError('PostgreSQL server at "db.example:5433" rejected SSL upgrade')
    message = str(connect_error(dsn, exc, timeout=2.5))
    assert expected in message
    assert "hunter2" not in message
