"""`decode_or_poison`: a delivered payload becomes its job or the poison stand-in, never an error.

Every backend turns what it hands out into jobs through it, so what it does for a bad
payload (any exception from decoding that one payload, not only `TaskDecodeError`) is
what every backend does.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import lexigram.contracts.tasks as contracts
from lexigram.contracts.tasks import (
    POISON_JOB_NAME,
    EnvelopeSigner,
    Job,
    JobStatus,
    TaskDecodeError,
    _codec,
    configure_envelope,
    decode_job,
    decode_or_poison,
    encode_job,
)

_BAD_PAYLOADS: dict[str, bytes | str] = {
    "not-utf8": b"\xff\xfe not a job \x00",
    "utf16-json": json.dumps({"v": 1, "job": {"id": "j", "name": "send"}}).encode("utf-16"),
    "not-json": b"{not json",
    "not-an-envelope": b'{"v": 1, "nojob": []}',
    "job-not-an-object": b'{"v": 1, "job": 5}',
    "no-version": b'{"job": {"id": "j", "name": "x"}}',
    "future-version": b'{"v": 99, "job": {"id": "j", "name": "x"}}',
    "bad-record": b'{"v": 1, "job": {"id": "j"}}',
    "nested-too-deeply": b"[" * 5000 + b"]" * 5000,
    "text-not-json": "plain text, not a job",
}


def test_a_payload_that_decodes_is_the_job_decode_job_reads() -> None:
    job = Job(id="j-1", name="send", args=(1, "two"), kwargs={"to": "a@b.c"}, priority=3)
    raw = encode_job(job)
    for payload in (raw, raw.decode()):
        got = decode_or_poison("delivery-7", payload, queue_name="emails")
        assert got.to_dict() == decode_job(raw).to_dict()
        # The id given is the stand-in's: a job that decodes keeps its own.
        assert got.id == "j-1"
        assert got.name == "send"
        assert got.status is JobStatus.PENDING


@pytest.mark.parametrize("raw", list(_BAD_PAYLOADS.values()), ids=list(_BAD_PAYLOADS))
def test_a_payload_decode_job_rejects_is_the_poison_stand_in(raw: bytes | str) -> None:
    with pytest.raises(TaskDecodeError) as refused:
        decode_job(raw)
    job = decode_or_poison("delivery-7", raw, queue_name="emails")
    assert job.name == POISON_JOB_NAME
    assert job.id == "delivery-7"
    assert job.queue_name == "emails"
    assert job.max_retries == 0
    assert job.last_error == str(refused.value)
    assert job.metadata["poison_error"] == job.last_error
    preview = raw if isinstance(raw, str) else raw.decode("utf-8", errors="replace")
    assert job.metadata["raw_payload"] == preview[:2000]


def test_json_in_another_encoding_than_utf8_is_poison_on_every_backend_alike() -> None:
    """The json module reads UTF-16 from bytes; no producer writes it, so it is poison."""
    raw = _BAD_PAYLOADS["utf16-json"]
    job = decode_or_poison("m-utf16", raw, queue_name="tasks")
    assert job.name == POISON_JOB_NAME
    assert "not UTF-8" in (job.last_error or "")


@pytest.mark.parametrize("fast", [True, False], ids=["orjson", "json-module"])
def test_utf8_with_a_bom_still_decodes(monkeypatch: pytest.MonkeyPatch, fast: bool) -> None:
    if not fast:
        monkeypatch.setattr(_codec, "_fast_loads", None)
    raw = b'\xef\xbb\xbf{"v":1,"job":{"id":"b","name":"bom","args":["\xc3\xa9"]}}'
    job = decode_or_poison("d", raw, queue_name="q")
    assert (job.name, job.args) == ("bom", ("é",))


@pytest.mark.parametrize("fast", [True, False], ids=["orjson", "json-module"])
def test_encoded_surrogates_are_not_utf8(monkeypatch: pytest.MonkeyPatch, fast: bool) -> None:
    """Bytes a strict UTF-8 decoder refuses are poison (encode_job escapes a lone surrogate)."""
    if not fast:
        monkeypatch.setattr(_codec, "_fast_loads", None)
    raw = b'{"v":1,"job":{"id":"s","name":"\xed\xa0\x80"}}'
    job = decode_or_poison("d", raw, queue_name="q")
    assert job.name == POISON_JOB_NAME
    assert "not UTF-8" in (job.last_error or "")
    escaped = encode_job(Job(id="s", name="x", args=("\udc80",)))
    assert decode_or_poison("d", escaped, queue_name="q").args == ("\udc80",)


class _UnprintableError(Exception):
    def __str__(self) -> str:
        msg = "no str either"
        raise RuntimeError(msg)


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (RuntimeError("decoder bug"), "RuntimeError: decoder bug"),
        (KeyError("job"), "KeyError: 'job'"),
        (AttributeError("'NoneType' object has no attribute 'x'"), "AttributeError: 'NoneType'"),
        (RecursionError("maximum recursion depth exceeded"), "RecursionError: maximum"),
        (MemoryError(), "MemoryError: no message"),
        (_UnprintableError(), "_UnprintableError: its message could not be read"),
    ],
    ids=["runtime", "key", "attribute", "recursion", "memory", "unprintable"],
)
def test_any_other_error_while_decoding_is_poison_naming_it(
    monkeypatch: pytest.MonkeyPatch, error: Exception, shown: str
) -> None:
    """Not only TaskDecodeError: whatever decoding one payload raises makes it poison."""

    def failing(data: bytes | str) -> Job:
        raise error

    monkeypatch.setattr(_codec, "decode_job", failing)
    raw = encode_job(Job(id="j", name="send"))
    job = decode_or_poison("delivery-3", raw, queue_name="emails")
    assert job.name == POISON_JOB_NAME
    assert (job.id, job.queue_name) == ("delivery-3", "emails")
    assert shown in (job.last_error or "")
    assert "dead-letter queue" in (job.last_error or "")
    assert job.metadata["poison_error"] == job.last_error
    assert job.metadata["raw_payload"] == raw.decode()


def test_a_long_error_message_is_cut_short(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(data: bytes | str) -> Job:
        raise ValueError("x" * 100_000)

    monkeypatch.setattr(_codec, "decode_job", failing)
    job = decode_or_poison("d", b"{}", queue_name="q")
    assert len(job.last_error or "") < 1000


@pytest.mark.parametrize(
    "interrupt",
    [asyncio.CancelledError(), KeyboardInterrupt(), SystemExit(3)],
    ids=["cancelled", "keyboard-interrupt", "system-exit"],
)
def test_what_is_not_an_error_of_the_payload_propagates(
    monkeypatch: pytest.MonkeyPatch, interrupt: BaseException
) -> None:
    def interrupted(data: bytes | str) -> Job:
        raise interrupt

    monkeypatch.setattr(_codec, "decode_job", interrupted)
    with pytest.raises(type(interrupt)):
        decode_or_poison("d", encode_job(Job(name="send")), queue_name="q")


def test_one_payload_failing_unexpectedly_leaves_the_rest_of_a_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a backend's batch loop sees: one stand-in among the jobs, nothing raised."""
    real = _codec.decode_job

    def flaky(data: bytes | str) -> Job:
        if b"boom" in (data if isinstance(data, bytes) else data.encode()):
            msg = "boom"
            raise RuntimeError(msg)
        return real(data)

    monkeypatch.setattr(_codec, "decode_job", flaky)
    rows = [
        ("a", encode_job(Job(id="a", name="send"))),
        ("b", encode_job(Job(id="b", name="boom"))),
        ("c", b"\xff not json"),
        ("d", encode_job(Job(id="d", name="send"))),
    ]
    batch = [decode_or_poison(job_id, raw, queue_name="q") for job_id, raw in rows]
    assert [(job.id, job.name) for job in batch] == [
        ("a", "send"),
        ("b", POISON_JOB_NAME),
        ("c", POISON_JOB_NAME),
        ("d", "send"),
    ]
    assert "RuntimeError: boom" in (batch[1].last_error or "")
    assert "not valid JSON" in (batch[2].last_error or "")


@pytest.mark.parametrize("raw", [None, 42, bytearray(b"\xff{"), memoryview(b"[1")])
def test_a_payload_that_is_not_bytes_or_text_is_poison_too(raw: Any) -> None:
    """A backend reading a missing value (None) still gets a stand-in, not an error."""
    job = decode_or_poison("d", raw, queue_name="q")
    assert job.name == POISON_JOB_NAME
    assert job.last_error
    assert isinstance(job.metadata["raw_payload"], str)


def test_a_signed_queue_makes_an_unsigned_payload_poison() -> None:
    raw = encode_job(Job(id="u", name="send"))
    configure_envelope(signer=EnvelopeSigner("k" * 32))
    try:
        job = decode_or_poison("u", raw, queue_name="q")
    finally:
        configure_envelope()
    assert job.name == POISON_JOB_NAME
    assert "not signed" in (job.last_error or "")


def test_it_is_exported_for_backend_authors() -> None:
    assert contracts.decode_or_poison is decode_or_poison
    assert "decode_or_poison" in contracts.__all__
