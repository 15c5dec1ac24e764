"""Lone surrogates (file names decoded with surrogateescape): stored and sent, never refused.

No UTF-8 client (redis-py, sqlite3, asyncpg) can send a string holding one; JSON's escapes
carry it, and the json module reads it back.
"""

from __future__ import annotations

import json

from lexigram.contracts.tasks import Job, JobResult, decode_job, encode_job, sendable_json


def test_a_lone_surrogate_is_stored_as_an_escape_every_utf8_client_can_send() -> None:
    # What a file name with invalid UTF-8 bytes decodes to with surrogateescape.
    name = b"report-\xff-\xe9.txt".decode("utf-8", "surrogateescape")
    result = JobResult(success=True, data={"file": name, "note": "é😀"}, error="bad\udc80")
    text = result.to_json()
    text.encode()  # no UnicodeEncodeError: Redis, SQLite and PostgreSQL clients take it
    assert text.isascii()
    assert JobResult.from_dict(json.loads(text)) == result


def test_text_without_a_lone_surrogate_keeps_its_characters() -> None:
    text = JobResult(success=True, data={"note": "é😀"}).to_json()
    assert "é😀" in text
    assert sendable_json(text) is text
    assert sendable_json('{"a":"plain"}') == '{"a":"plain"}'


def test_a_job_whose_arguments_hold_a_lone_surrogate_reaches_the_worker_intact() -> None:
    name = b"scan-\xff.pdf".decode("utf-8", "surrogateescape")
    job = Job(name="index", args=(name,), kwargs={"note": "é"})
    data = encode_job(job)
    assert data.isascii()
    decoded = decode_job(data)
    assert decoded.args == (name,)
    assert decoded.kwargs == {"note": "é"}
