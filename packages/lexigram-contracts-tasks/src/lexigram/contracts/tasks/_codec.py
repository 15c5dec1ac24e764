"""The job envelope: how a job travels through a broker, and URL masking.

A job is encoded as compact JSON ``{"v": 1, "job": {...}}``. The format version lets a
newer worker read what an older producer wrote. JSON is the default because it is
safe: no payload can execute code on decode, unlike pickle. Arguments that JSON
cannot carry fail at enqueue time with `TaskValidationError`, never in the worker.
"""

from __future__ import annotations

import importlib
import json
import math
import re
from collections.abc import Callable
from typing import Any

from lexigram.contracts.tasks._enums import PRIORITY_MAX, PRIORITY_MIN
from lexigram.contracts.tasks._errors import TaskDecodeError, TaskValidationError
from lexigram.contracts.tasks._models import Job

ENVELOPE_VERSION = 1
"""Version of the job envelope this code writes; it reads this version and older."""

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_URL_PASSWORD = re.compile(r"(?P<prefix>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)@")


def _optional_loads() -> Callable[[bytes | str], Any] | None:
    """Return ``orjson.loads`` when orjson is installed (an optional dependency)."""
    try:
        loads: Callable[[bytes | str], Any] = importlib.import_module("orjson").loads
    except ImportError:
        return None
    return loads


# Workers decode every job they run; orjson parses the envelope about five times faster.
_fast_loads = _optional_loads()


def _loads(data: bytes | str) -> Any:
    if _fast_loads is not None:
        try:
            return _fast_loads(data)
        except ValueError:
            pass  # orjson is stricter (integers beyond 64 bits, NaN, a BOM): json decides
    return json.loads(data)


def _describe_unserializable(job: Job) -> str:
    for index, value in enumerate(job.args):
        try:
            _encoder.encode(value)
        except (TypeError, ValueError):
            return f"positional argument {index} ({type(value).__name__}: {value!r:.80})"
    for key, value in job.kwargs.items():
        try:
            _encoder.encode(value)
        except (TypeError, ValueError):
            return f"keyword argument {key!r} ({type(value).__name__}: {value!r:.80})"
    return "its metadata or result"


def validate_job(job: Job) -> None:
    """Check the fields every backend relies on; raise `TaskValidationError` if one is bad.

    Args:
        job: The job about to be enqueued.

    Raises:
        TaskValidationError: The name is empty, the priority is out of range, or a
            timing field is not a finite number.
    """
    if not job.name:
        msg = f"Job {job.id!r} has no name. Set Job.name to the registered task name."
        raise TaskValidationError(msg)
    if not PRIORITY_MIN <= job.priority <= PRIORITY_MAX:
        msg = (
            f"Job {job.name!r} has priority {job.priority!r}, outside "
            f"{PRIORITY_MIN}..{PRIORITY_MAX}. Use a Priority value or an int in that range."
        )
        raise TaskValidationError(msg)
    if job.scheduled_at is not None and not math.isfinite(job.scheduled_at):
        msg = f"Job {job.name!r} has scheduled_at={job.scheduled_at!r}. Use epoch seconds."
        raise TaskValidationError(msg)
    if job.max_retries is not None and job.max_retries < 0:
        msg = f"Job {job.name!r} has max_retries={job.max_retries!r}. Use 0 or more."
        raise TaskValidationError(msg)


def encode_job(job: Job) -> bytes:
    """Encode a job into its JSON envelope, validating it first.

    Args:
        job: The job to encode.

    Returns:
        The UTF-8 JSON envelope.

    Raises:
        TaskValidationError: The job is invalid or an argument is not JSON-serializable.
    """
    validate_job(job)
    try:
        text = _encoder.encode({"v": ENVELOPE_VERSION, "job": job.to_dict()})
    except (TypeError, ValueError) as exc:
        where = _describe_unserializable(job)
        msg = (
            f"Job {job.name!r} cannot be serialized: {where} is not JSON-serializable "
            f"({exc}). Pass plain JSON values (str, int, float, bool, None, list, dict), "
            "e.g. an id instead of an object or an ISO string instead of a datetime."
        )
        raise TaskValidationError(msg) from None
    return text.encode()


def decode_job(data: bytes | str) -> Job:
    """Decode a job envelope produced by `encode_job`.

    Args:
        data: The raw envelope.

    Returns:
        The decoded job.

    Raises:
        TaskDecodeError: The payload is not a valid envelope (a poison message); the
            message says what was wrong.
    """
    try:
        envelope: Any = _loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        preview = data[:60] if isinstance(data, str) else data[:60].decode(errors="replace")
        msg = (
            f"Job payload is not valid JSON ({exc}); payload starts with {preview!r}. "
            "It was not written by lexigram-tasks encode_job; it goes to the dead-letter queue."
        )
        raise TaskDecodeError(msg) from None
    if not isinstance(envelope, dict) or "job" not in envelope:
        msg = (
            f"Job payload is not a lexigram-tasks envelope (got {type(envelope).__name__} "
            "without a 'job' key). Enqueue jobs through TaskQueueProtocol.enqueue."
        )
        raise TaskDecodeError(msg)
    version = envelope.get("v")
    if not isinstance(version, int) or version > ENVELOPE_VERSION:
        msg = (
            f"Job envelope version {version!r} is not supported by this worker (reads up to "
            f"{ENVELOPE_VERSION}). Upgrade lexigram-tasks on the workers."
        )
        raise TaskDecodeError(msg)
    try:
        return Job.from_dict(envelope["job"])
    except (KeyError, TypeError, ValueError) as exc:
        msg = f"Job envelope has an invalid job record ({type(exc).__name__}: {exc})."
        raise TaskDecodeError(msg) from None


def mask_url(url: str) -> str:
    """Return `url` with its password replaced by `***` (safe for logs and errors).

    Args:
        url: A connection URL such as ``redis://user:secret@host:6379/0``.

    Returns:
        The URL with the password masked; URLs without one are returned unchanged.
    """
    return _URL_PASSWORD.sub(lambda m: f"{m.group('prefix')}***@", url)


POISON_JOB_NAME = "lexigram.undecodable"
"""Task name of the stand-in job a backend returns for a payload it cannot decode."""


def make_poison_job(job_id: str, raw: bytes | str, error: str) -> Job:
    """Build the stand-in job a backend hands out for an undecodable payload.

    A backend never raises from `dequeue` on bad input: it leases this job instead, so
    the worker dead-letters it with the decode error (and acks it) and keeps running.

    Args:
        job_id: The id the backend stored the payload under (or a new uuid).
        raw: The undecodable payload (kept, truncated, for inspection in the DLQ).
        error: The decode error message.

    Returns:
        A job named `POISON_JOB_NAME` with `last_error` set and the payload in metadata.
    """
    preview = raw if isinstance(raw, str) else raw.decode("utf-8", errors="replace")
    return Job(
        id=job_id,
        name=POISON_JOB_NAME,
        max_retries=0,
        last_error=error,
        metadata={"poison_error": error, "raw_payload": preview[:2000]},
    )
