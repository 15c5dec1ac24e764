"""encode_job's compact record and its orjson path: the same jobs, the same refusals.

The reference is what encode_job wrote before: the json module on ``{"v": 1, "job":
job.to_dict()}``. Every job must decode to the same job from either envelope, and every
job the reference refused must still be refused.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import tracemalloc
import uuid
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import pytest

from lexigram.contracts.tasks import (
    Job,
    JobResult,
    JobStatus,
    Priority,
    TaskValidationError,
    _codec,
    decode_job,
    encode_job,
)

_REFERENCE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _reference(job: Job) -> bytes:
    return _REFERENCE.encode({"v": 1, "job": job.to_dict()}).encode()


# orjson is in the package's test extra; an environment without it runs the json cases only.
_ENCODERS = ["json"] if _codec._fast_dumps is None else ["orjson", "json"]


@pytest.fixture(params=_ENCODERS)
def encoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run each test with orjson (when installed) and with the json module alone."""
    if request.param == "json":
        monkeypatch.setattr(_codec, "_fast_dumps", None)
    return str(request.param)


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int


def _full_job() -> Job:
    return Job(
        name="send",
        args=(1, "two", [3, 4.5], None, True),
        kwargs={"to": "a@b.c", "nested": {"k": [1, 2, {"deep": None}]}},
        priority=Priority.HIGH,
        max_retries=0,
        timeout=0.0,
        depends_on=["a", "b"],
        idempotency_key="",
        correlation_id="corr",
        causation_id="cause",
        status=JobStatus.RETRYING,
        started_at=1.0,
        completed_at=2.0,
        retry_count=2,
        last_error="boom",
        result=JobResult.ok({"x": 1}, duration=0.1),
        scheduled_at=123.0,
        cron_expression="* * * * *",
        queue_name="q",
        delivery_count=3,
        metadata={"m": True, "trace": "00-ab-cd-01"},
    )


def _nested(depth: int) -> list[Any]:
    value: list[Any] = [1]
    for _ in range(depth):
        value = [value]
    return value


JOBS: list[Any] = [
    lambda: Job(name="h"),
    lambda: Job(name="h", args=(1.5,)),
    # A list on purpose: Job turns the args callers pass as lists into a tuple.
    lambda: Job(name="h", args=[1, 2]),  # type: ignore[arg-type]
    lambda: Job(name="h", priority=True, retry_count=False),
    _full_job,
    lambda: Job(name="floats", args=(1e16, -0.0, 5e-324, 1.7976931348623157e308, 0.1 + 0.2)),
    lambda: Job(name="ints", args=(2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**70))),
    lambda: Job(name="text", args=("é€😀", '\x00\x1f\x7f"\\/', "null", "NaN")),
    lambda: Job(name="int keys", kwargs={"d": {1: "one", 2.5: "x", False: "f", None: "n"}}),
    lambda: Job(name="subclasses", kwargs={"o": OrderedDict(a=1)}, metadata=OrderedDict(m=1)),
    lambda: Job(name="deep", args=(_nested(40),)),
]


@pytest.mark.parametrize("make", JOBS)
def test_every_job_decodes_as_from_the_full_envelope(encoder: str, make: Any) -> None:
    job = make()
    expected = decode_job(_reference(job))
    assert decode_job(encode_job(job)) == expected
    assert decode_job(encode_job(job)).to_dict() == expected.to_dict()


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        -math.inf,
        [1, {"x": math.nan}],
        uuid.UUID(int=1),
        Color.RED,
        datetime(2026, 1, 1, tzinfo=UTC),
        Point(1),
        {(1, 2): "tuple key"},
        b"bytes",
        {1, 2},
    ],
)
def test_what_the_json_module_refused_is_still_refused(encoder: str, value: Any) -> None:
    job = Job(name="bad", args=(value,))
    with pytest.raises((TypeError, ValueError)):
        _reference(job)
    with pytest.raises(TaskValidationError, match="positional argument 0"):
        encode_job(job)
    with pytest.raises(TaskValidationError, match="keyword argument 'v'"):
        encode_job(Job(name="bad", kwargs={"v": value}))


def test_a_cycle_is_refused(encoder: str) -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(TaskValidationError, match="positional argument 0"):
        encode_job(Job(name="cycle", args=(loop,)))


def test_a_bad_id_type_is_refused_as_before(encoder: str) -> None:
    job = Job(id=uuid.UUID(int=7), name="h")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _reference(job)
    with pytest.raises(TaskValidationError, match="its metadata or result"):
        encode_job(job)


def test_fields_at_their_defaults_are_left_out(encoder: str) -> None:
    # A priority is left out when it is 0, which is what an absent one reads as (every
    # version wrote it so): a job at the default NORMAL priority carries it.
    job = Job(name="h", args=(1.5,), priority=Priority.LOW)
    envelope = json.loads(encode_job(job))
    assert envelope == {
        "v": 1,
        "job": {"id": job.id, "name": "h", "args": [1.5], "created_at": job.created_at},
    }
    assert len(encode_job(job)) < len(_reference(job)) / 3
    default = Job(name="h")
    assert json.loads(encode_job(default))["job"]["priority"] == Priority.NORMAL
    assert decode_job(encode_job(default)).priority == Priority.NORMAL


def test_envelopes_written_with_every_field_still_decode() -> None:
    # What encode_job wrote until the record left defaults out.
    old = (
        b'{"v":1,"job":{"id":"0b7c","name":"h","args":[1.5],"kwargs":{},"priority":0,'
        b'"max_retries":null,"timeout":null,"depends_on":[],"idempotency_key":null,'
        b'"correlation_id":null,"causation_id":null,"status":"pending",'
        b'"created_at":1796321127.232149,"started_at":null,"completed_at":null,'
        b'"retry_count":0,"last_error":null,"result":null,"scheduled_at":null,'
        b'"cron_expression":null,"queue_name":"bench","delivery_count":0,"metadata":{}}}'
    )
    job = decode_job(old)
    assert job == Job(
        id="0b7c",
        name="h",
        args=(1.5,),
        priority=0,
        created_at=1796321127.232149,
        queue_name="bench",
    )
    assert decode_job(encode_job(job)) == job


def test_a_job_subclass_keeps_its_own_to_dict(encoder: str) -> None:
    @dataclasses.dataclass(slots=True)
    class Tagged(Job):
        def to_dict(self) -> dict[str, Any]:
            record = Job.to_dict(self)
            record["metadata"] = {**record["metadata"], "tagged": True}
            return record

    job = Tagged(name="h")
    assert decode_job(encode_job(job)).metadata == {"tagged": True}


def test_the_compact_record_names_every_field_to_dict_names() -> None:
    # The record is written field by field for speed: a field added to Job must be added
    # there too, or a job that sets it would lose it on the way through a queue.
    job = _full_job()
    record = json.loads(encode_job(job))["job"]
    assert set(record) == set(job.to_dict())


def test_an_envelope_holds_no_more_memory_than_its_size(encoder: str) -> None:
    # orjson hands back a buffer of at least 4 KiB that it never shrinks; an envelope kept
    # as it came (a waiting job in memory, a bulk enqueue before it is sent) held all of it.
    jobs = [Job(name="noop", args=(n,)) for n in range(500)]
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        envelopes = [encode_job(job) for job in jobs]
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    per_envelope = grown / len(envelopes)
    assert per_envelope < 2 * max(len(envelope) for envelope in envelopes) + 64, (
        f"{per_envelope:.0f} bytes held per envelope of {len(envelopes[0])} ({encoder})"
    )
