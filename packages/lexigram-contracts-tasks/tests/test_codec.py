from __future__ import annotations

import datetime
import json
import math
import re
from typing import Any

import pytest

from lexigram.contracts.tasks import (
    ENVELOPE_VERSION,
    POISON_JOB_NAME,
    Job,
    JobResult,
    JobStatus,
    TaskConfigurationError,
    TaskDecodeError,
    TaskValidationError,
    decode_job,
    encode_job,
    make_poison_job,
    mask_url,
    require_number,
)


def test_encode_decode_round_trip_loses_nothing() -> None:
    job = Job(
        name="send",
        args=(1, "two", [3]),
        kwargs={"to": "a@b.c", "nested": {"k": [1, 2]}},
        priority=10,
        max_retries=5,
        timeout=2.5,
        depends_on=["a"],
        idempotency_key="key",
        correlation_id="corr",
        causation_id="cause",
        retry_count=2,
        last_error="boom",
        result=JobResult.ok({"x": 1}, duration=0.1),
        scheduled_at=123.0,
        cron_expression="* * * * *",
        queue_name="q",
        delivery_count=3,
        metadata={"m": True},
    )
    decoded = decode_job(encode_job(job))
    assert decoded == job
    assert decoded.correlation_id == "corr"
    assert decoded.causation_id == "cause"


def test_encode_rejects_unserializable_argument_naming_it() -> None:
    job = Job(name="report", args=(1, datetime.date(2026, 1, 1)))
    with pytest.raises(TaskValidationError) as info:
        encode_job(job)
    message = str(info.value)
    assert "positional argument 1" in message
    assert "'report'" in message
    assert "ISO string" in message


def test_encode_rejects_unserializable_keyword_naming_it() -> None:
    with pytest.raises(TaskValidationError, match="keyword argument 'when'"):
        encode_job(Job(name="x", kwargs={"when": object()}))


@pytest.mark.parametrize("priority", [-1, 256])
def test_encode_rejects_priority_out_of_range(priority: int) -> None:
    with pytest.raises(TaskValidationError, match="priority"):
        encode_job(Job(name="x", priority=priority))


def test_encode_rejects_an_id_without_a_utf8_form() -> None:
    with pytest.raises(TaskValidationError, match="no UTF-8 form: it holds a lone surrogate"):
        encode_job(Job(name="x", id="scan-\udcff.pdf"))


def test_encode_keeps_an_id_of_any_plain_text() -> None:
    job = Job(name="x", id="rapport-été-✓")
    assert decode_job(encode_job(job)).id == job.id


def test_encode_rejects_empty_name() -> None:
    with pytest.raises(TaskValidationError, match="no name"):
        encode_job(Job())


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"\xff\xfe not json", "not valid JSON"),
        (b"[1, 2]", "not a lexigram-tasks envelope"),
        (b'{"v": 99, "job": {}}', "version 99 is not supported by this worker"),
        # Not written by lexigram-tasks at all: upgrading the workers would not help.
        (b'{"job": {"id": "1", "name": "x"}}', "has no valid version \\('v' is None"),
        (b'{"v": "1", "job": {}}', "it was not written by lexigram-tasks"),
        (b'{"v": true, "job": {}}', "it was not written by lexigram-tasks"),
        (b'{"v": 0, "job": {}}', "it was not written by lexigram-tasks"),
        (b'{"v": 1, "job": {"id": "1"}}', "invalid job record"),
        # Valid JSON that Job.from_dict cannot read: poison, never another exception.
        (b'{"v": 1, "job": 5}', "a 'job' that is a int, not an object"),
        (b'{"v": 1, "job": "x"}', "a 'job' that is a str, not an object"),
        # Too deep for the parser on 3.11 and 3.12; 3.13's parses it, to no envelope.
        (
            b"[" * 5000 + b"]" * 5000,
            "not valid JSON \\(nested too deeply\\)|not a lexigram-tasks envelope",
        ),
        (b'{"v": 1, "job": {"id": "1", "name": "x", "metadata": 7}}', "invalid job record"),
    ],
)
def test_decode_poison_payloads_raise_decode_error(payload: bytes, fragment: str) -> None:
    with pytest.raises(TaskDecodeError, match=fragment):
        decode_job(payload)


def test_envelope_carries_version() -> None:
    assert encode_job(Job(name="x")).startswith(b'{"v":%d' % ENVELOPE_VERSION)


def test_make_poison_job_keeps_error_and_payload() -> None:
    job = make_poison_job("id-1", b"\xffgarbage", "bad payload")
    assert job.name == POISON_JOB_NAME
    assert job.id == "id-1"
    assert job.last_error == "bad payload"
    assert job.metadata["raw_payload"].endswith("garbage")
    assert job.max_retries == 0
    assert job.queue_name is None  # callers from before queue_name still work


def test_make_poison_job_carries_the_queue_it_came_from() -> None:
    # The dead-letter record shows the job's queue: without it, the record names none.
    job = make_poison_job("id-2", "not json", "bad payload", queue_name="emails")
    assert job.queue_name == "emails"
    assert job.name == POISON_JOB_NAME
    assert Job.from_dict(job.to_dict()).queue_name == "emails"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://user:secret@host:6379/0", "redis://user:***@host:6379/0"),
        ("amqp://guest:guest@127.0.0.1:5672/", "amqp://guest:***@127.0.0.1:5672/"),
        ("postgresql://app:p%40ss@db/test", "postgresql://app:***@db/test"),
        ("rediss://:token@host", "rediss://:***@host"),
        ("redis://localhost:6379", "redis://localhost:6379"),
        # An unescaped "@" in a password: URL parsers split at the last "@".
        ("redis://:hunter2@SECRET@127.0.0.1:6379/8", "redis://:***@127.0.0.1:6379/8"),
        ("redis://host:6379/0?tag=a@b", "redis://host:6379/0?tag=a@b"),
        # An unescaped "/" in a password (it ends the authority for a URL parser, so the
        # password cannot work, but the URL still reaches an error message).
        ("redis://:pa/ss@host:6379/0", "redis://:***@host:6379/0"),
        ("amqp://user:p/w@host/vh", "amqp://user:***@host/vh"),
        ("postgresql://u:a/b/c@h/db?x=a@b", "postgresql://u:***@h/db?x=a@b"),
        # A password given as a setting: in the query, or in a libpq key/value DSN.
        (
            "postgresql://u@h/db?password=s3cret&sslmode=off",
            "postgresql://u@h/db?password=***&sslmode=off",
        ),
        ("redis://h:6379/0?Password=s3cret", "redis://h:6379/0?Password=***"),
        ("host=db user=app password=s3cret dbname=x", "host=db user=app password=*** dbname=x"),
        ("host=db password = 'se cr\\'et' sslpassword=k", "host=db password = *** sslpassword=***"),
        ("redis://h/0?passwords_file=x", "redis://h/0?passwords_file=x"),
        (
            "rediss://h:6390/13?ssl_password=s3cretq&ssl_keyfile=k.pem",
            "rediss://h:6390/13?ssl_password=***&ssl_keyfile=k.pem",
        ),
        ("amqps://h/?key_passphrase=s3cret", "amqps://h/?key_passphrase=***"),
        ("redis://h/0?client_secret=s3cret", "redis://h/0?client_secret=***"),
    ],
)
def test_mask_url_hides_passwords(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_decode_accepts_what_json_accepts_beyond_the_fast_parser() -> None:
    # orjson (used when installed) rejects integers beyond 64 bits, NaN and a BOM;
    # decode_job falls back to json for them instead of calling the payload poison.
    job = Job(name="big", args=(2**70,), kwargs={"x": -(2**65)})
    assert decode_job(encode_job(job)) == job
    nan_job = decode_job(b'{"v":1,"job":{"id":"n","name":"x","args":[NaN]}}')
    assert math.isnan(nan_job.args[0])
    assert decode_job(b'\xef\xbb\xbf{"v":1,"job":{"id":"b","name":"bom"}}').name == "bom"


def test_decode_converts_loosely_typed_fields_like_the_constructor() -> None:
    payload = (
        b'{"v":1,"job":{"name":7,"priority":"3","max_retries":"2","timeout":1,'
        b'"created_at":5,"retry_count":"1","delivery_count":"4","status":"retrying"}}'
    )
    job = decode_job(payload)
    assert (job.name, job.priority, job.max_retries, job.retry_count) == ("7", 3, 2, 1)
    assert (job.timeout, job.created_at, job.delivery_count) == (1.0, 5.0, 4)
    assert isinstance(job.timeout, float)
    assert job.status is JobStatus.RETRYING
    assert job.id


@pytest.mark.parametrize(
    "record",
    [{"name": "x", "status": "bogus"}, {"name": "x", "priority": "high"}, {"name": "x", "args": 5}],
)
def test_decode_rejects_badly_typed_fields_as_poison(record: dict[str, object]) -> None:
    with pytest.raises(TaskDecodeError, match="invalid job record"):
        decode_job(json.dumps({"v": 1, "job": record}))


@pytest.mark.parametrize(
    ("value", "whole", "ok"),
    [
        (30, False, True),
        (0.5, False, True),
        ("30", False, False),
        (True, False, False),
        (None, False, False),
        (10, True, True),
        (10.0, True, False),
    ],
)
def test_require_number_refuses_what_a_range_check_cannot_compare(
    value: object, whole: bool, ok: bool
) -> None:
    if ok:
        require_number("Queue", "visibility_timeout", value, whole=whole)
        return
    with pytest.raises(TaskConfigurationError, match=r"Queue visibility_timeout=.* is not a"):
        require_number("Queue", "visibility_timeout", value, whole=whole)


@pytest.mark.parametrize("value", [2**63, 2**64 - 1, 2**64, -(2**63) - 1, 2**70, 10**40])
def test_integers_beyond_64_bits_decode_exactly(value: int) -> None:
    # orjson reads them as floats (2**64 as 1.8446744073709552e+19) without an error.
    decoded = decode_job(encode_job(Job(name="x", args=(value,), kwargs={"id": [value]})))
    assert decoded.args == (value,)
    assert type(decoded.args[0]) is int
    assert decoded.kwargs == {"id": [value]}


def test_a_digit_run_inside_a_string_decodes_the_same() -> None:
    job = Job(name="x", args=("1234567890123456789012345", 1.5), kwargs={"n": 7})
    decoded = decode_job(encode_job(job))
    assert decoded.args == ("1234567890123456789012345", 1.5)
    assert decoded.kwargs == {"n": 7}


def test_an_integer_too_long_to_print_is_a_validation_error() -> None:
    with pytest.raises(
        TaskValidationError, match=r"positional argument 0 \(int: too long to show\)"
    ):
        encode_job(Job(name="x", args=(10**5000,)))


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (
            {"scheduled_at": datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)},
            "scheduled_at=datetime",
        ),
        ({"scheduled_at": "soon"}, "scheduled_at='soon'"),
        ({"priority": "high"}, "priority 'high'"),
        ({"max_retries": "3"}, "max_retries='3'"),
    ],
)
def test_a_field_of_the_wrong_type_is_a_validation_error(
    fields: dict[str, Any], named: str
) -> None:
    # A datetime in scheduled_at raised a bare TypeError from the range check.
    with pytest.raises(TaskValidationError, match=re.escape(named)):
        encode_job(Job(name="x", **fields))
