"""The job envelope: how a job travels through a broker, and URL masking.

A job is encoded as compact JSON ``{"v": 1, "job": {...}}``, where the job record is
`Job.to_dict` without the fields at their defaults (which `Job.from_dict` reads back as
those defaults). The format version lets a newer worker read what an older producer
wrote. With an `EnvelopeSigner` configured (`configure_envelope`), the envelope is
``{"v": 1, "sig": "<key id>.<hmac>", "job": {...}}`` where the HMAC-SHA256 covers the
exact bytes of the ``job`` value, and `decode_job` rejects an unsigned or badly signed
envelope with `TaskDecodeError`; every backend already turns that error into a poison
job, which the worker dead-letters without running it. `encode_job` also refuses a job
that was never delivered and encodes to more than the maximum payload size. JSON is the
default because it is safe: no payload can execute code on decode, unlike pickle.
Arguments that JSON cannot carry fail at enqueue time with `TaskValidationError`, never
in the worker.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

from lexigram.contracts.tasks._enums import PRIORITY_MAX, PRIORITY_MIN, JobStatus
from lexigram.contracts.tasks._errors import TaskDecodeError, TaskValidationError
from lexigram.contracts.tasks._json import (
    has_utf8_form,
    orjson_dumps,
    orjson_loads,
    sendable_json,
    strict_json,
)
from lexigram.contracts.tasks._models import Job
from lexigram.contracts.tasks._security import EnvelopeSigner

ENVELOPE_VERSION = 1
"""Version of the job envelope this code writes; it reads this version and older."""

# The password runs to the last "@" before the query or fragment: an unescaped "@" or "/"
# inside a password is masked with the rest. (URL parsers end the authority at the first
# "/", so such a password never works, but the URL it sits in still reaches error
# messages.) An "@" in the path after a port is masked from the port on: safe, if odd.
_URL_PASSWORD = re.compile(r"(?P<prefix>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^\s?#]*)@")
# A password given as a setting: a URL's query (``?password=...``, which asyncpg and
# redis-py read, ``?ssl_password=...`` for redis-py's TLS key) or a libpq key/value DSN
# (``host=db password=...``, quoted or not). Any key that ends in a word for a secret.
_SETTING_PASSWORD = re.compile(
    r"(?P<key>(?<![A-Za-z0-9_])[A-Za-z0-9_]*(?:password|passwd|passphrase|secret)\s*=\s*)"
    r"(?P<pw>'(?:[^'\\]|\\.)*'|[^\s&#]*)",
    re.IGNORECASE,
)


DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
"""Default largest encoded job `encode_job` accepts at enqueue (1 MiB)."""

_SIGNED_PREFIX = b'{"v":%d,"sig":"' % ENVELOPE_VERSION
_SIGNED_JOB = b'","job":'
_SIGNATURE = re.compile(r"[0-9a-f]{8}\.[0-9a-f]{64}")

# Process-wide envelope settings; set once at start-up by the composition root.
_signer: EnvelopeSigner | None = None
_max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES


def configure_envelope(
    *,
    signer: EnvelopeSigner | None = None,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> None:
    """Set how this process signs, verifies and bounds job envelopes.

    Every backend encodes and decodes through `encode_job` / `decode_job`, so this one
    call covers them all. The settings are process-wide: the last call wins.

    Args:
        signer: Signs every envelope `encode_job` writes and makes `decode_job` refuse
            an unsigned or badly signed one; None (the default) neither signs nor checks.
        max_payload_bytes: Largest encoded size of a job at enqueue, in bytes.

    Raises:
        ValueError: `max_payload_bytes` is not positive.
    """
    global _signer, _max_payload_bytes  # noqa: PLW0603 - one process-wide setting
    if max_payload_bytes <= 0:
        msg = f"max_payload_bytes={max_payload_bytes!r} is not positive. Use e.g. 1048576 (1 MiB)."
        raise ValueError(msg)
    _signer = signer
    _max_payload_bytes = max_payload_bytes


def envelope_signer() -> EnvelopeSigner | None:
    """Return the signer `configure_envelope` set (None when envelopes are not signed)."""
    return _signer


def max_payload_bytes() -> int:
    """Return the largest encoded job size `encode_job` accepts at enqueue."""
    return _max_payload_bytes


def _size(count: int) -> str:
    """Human-readable byte count: ``1.2 MB``, ``1 MB``, ``800 kB`` (binary units)."""
    for unit, scale in (("MB", 1024 * 1024), ("kB", 1024)):
        if count >= scale:
            return f"{count / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{count} bytes"


def _too_large(job: Job, size: int) -> TaskValidationError:
    msg = (
        f"job {job.id} ({job.name}) encodes to {_size(size)} ({size} bytes), over the limit "
        f"of {_size(_max_payload_bytes)} ({_max_payload_bytes} bytes, max_payload_bytes); "
        "pass large data by reference "
        "(store it and pass its key or URL) or raise tasks.security.max_payload_bytes."
    )
    return TaskValidationError(msg)


# Workers decode every job they run; orjson parses the envelope about five times faster.
_fast_loads = orjson_loads
# Producers encode every job they enqueue; orjson writes a job's record about ten times
# faster than the json module, once `_plain` has ruled out the values they write differently.
_fast_dumps = orjson_dumps
# Deeper than this, `_plain` leaves the value to the json module (which also reports cycles).
_PLAIN_DEPTH = 32
_PENDING = JobStatus.PENDING


# orjson reads an integer beyond 64 bits as a float (2**64 as 1.8446744073709552e+19),
# without an error: a payload with a run of 19 digits may hold one (the longest integer it
# keeps, -2**63 or 2**64 - 1, has 19 or 20), so the json module, which keeps every integer
# exact, reads it. Such runs are rare in an envelope: ids, times and names have none. The
# run is found by mapping every digit to "0" and everything else to " " and looking for
# 19 zeros: about 0.3 µs for a small envelope, a fifth of a regular expression's scan.
_DIGITS_ONLY = b"".join(b"0" if chr(byte) in "0123456789" else b" " for byte in range(256))
_LONG_RUN = b"0" * 19


def _loads(data: bytes | str) -> Any:
    if _fast_loads is not None:
        raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
        if _LONG_RUN not in raw.translate(_DIGITS_ONLY):
            try:
                return _fast_loads(data)
            except ValueError:
                pass  # orjson is stricter (NaN, a BOM): the json module decides
    if isinstance(data, bytes):
        # UTF-8 only (a leading BOM skipped, as the json module skips it): given bytes, the
        # json module would also read UTF-16 and UTF-32, which no producer of ours writes
        # and a backend keeping the envelope as text could not keep. UnicodeDecodeError.
        data = data.decode("utf-8-sig")
    return json.loads(data)


def _plain(values: Iterable[Any], depth: int = 0) -> bool:  # noqa: C901, PLR0911 - a flat table of types
    """Tell whether orjson writes `values` as the json module would (up to number spelling).

    True when each is a str, int, bool, None, finite float, or a list, tuple or str-keyed
    dict of such values, by exact type. The json module refuses NaN and infinities where
    orjson writes ``null``, and orjson writes UUIDs, enums, dataclasses and datetimes that
    the json module refuses, so anything else goes to the json module, which keeps its
    results and errors. Scalars are checked in the loop: a call per value would cost more
    than the rest of the encoding.
    """
    for value in values:
        kind = type(value)
        if kind is str or kind is int or kind is bool or value is None:
            continue
        if kind is float:
            if value - value == 0.0:  # NaN and the infinities give NaN
                continue
            return False
        if depth >= _PLAIN_DEPTH:
            return False
        if kind is list or kind is tuple:
            if not _plain(value, depth + 1):
                return False
        elif kind is dict:
            for key in value:
                if type(key) is not str:
                    return False
            if not _plain(value.values(), depth + 1):
                return False
        else:
            return False
    return True


def _envelope_record(job: Job) -> dict[str, Any]:  # noqa: C901, PLR0912 - one test per field, inlined
    """`job.to_dict()` without the fields that hold what `Job.from_dict` assumes when absent.

    A job fresh from `Job(name=..., args=...)` is five fields instead of twenty-three, so
    the envelope is a quarter of the size to encode, store, send and parse. `Job.from_dict`
    has read absent fields as their defaults since the envelope's first version, so every
    reader of version 1 decodes the same job from either form. `created_at` is always
    written (absent, it would read as the time of decoding). A subclass of `Job` may
    override `to_dict`, so its record is `to_dict()` as it always was.
    """
    if type(job) is not Job:
        return job.to_dict()
    record: dict[str, Any] = {"id": job.id, "name": job.name}
    # Containers are written as they are when the json module writes them as to_dict's
    # copies (list, dict); anything else is converted as to_dict converts it.
    value: Any = job.args
    if value:
        record["args"] = value if type(value) is tuple or type(value) is list else list(value)
    value = job.kwargs
    if value:
        record["kwargs"] = value if type(value) is dict else dict(value)
    value = job.priority
    if value:
        # A Priority (an IntEnum) is written as its number, as the json module writes it.
        record["priority"] = int(value) if isinstance(value, int) else value
    if job.max_retries is not None:
        record["max_retries"] = job.max_retries
    if job.timeout is not None:
        record["timeout"] = job.timeout
    value = job.depends_on
    if value:
        record["depends_on"] = value if type(value) is list else list(value)
    if job.idempotency_key is not None:
        record["idempotency_key"] = job.idempotency_key
    if job.correlation_id is not None:
        record["correlation_id"] = job.correlation_id
    if job.causation_id is not None:
        record["causation_id"] = job.causation_id
    if job.status is not _PENDING:
        record["status"] = job.status.value
    record["created_at"] = job.created_at
    if job.started_at is not None:
        record["started_at"] = job.started_at
    if job.completed_at is not None:
        record["completed_at"] = job.completed_at
    if job.retry_count:
        record["retry_count"] = job.retry_count
    if job.last_error is not None:
        record["last_error"] = job.last_error
    if job.result is not None:
        record["result"] = job.result.to_dict()
    if job.scheduled_at is not None:
        record["scheduled_at"] = job.scheduled_at
    if job.cron_expression is not None:
        record["cron_expression"] = job.cron_expression
    if job.queue_name is not None:
        record["queue_name"] = job.queue_name
    if job.delivery_count:
        record["delivery_count"] = job.delivery_count
    value = job.metadata
    if value:
        record["metadata"] = value if type(value) is dict else dict(value)
    return record


def _shown(value: Any) -> str:
    """The start of `value`'s repr, for a message; never raises."""
    try:
        text = repr(value)
    except ValueError:  # an int past the digit limit of int -> str
        return "too long to show"
    except Exception:
        return "its repr failed"
    return text[:80]


def _describe_unserializable(job: Job) -> str:
    for index, value in enumerate(job.args):
        try:
            strict_json(value)
        except (TypeError, ValueError):
            return f"positional argument {index} ({type(value).__name__}: {_shown(value)})"
    for key, value in job.kwargs.items():
        try:
            strict_json(value)
        except (TypeError, ValueError):
            return f"keyword argument {key!r} ({type(value).__name__}: {_shown(value)})"
    return "its metadata or result"


def validate_job(job: Job) -> None:
    """Check the fields every backend relies on; raise `TaskValidationError` if one is bad.

    Args:
        job: The job about to be enqueued.

    Raises:
        TaskValidationError: The name is empty, the id has no UTF-8 form, the priority
            is out of range, or a timing field is not a finite number.
    """
    if not job.name:
        msg = f"Job {job.id!r} has no name. Set Job.name to the registered task name."
        raise TaskValidationError(msg)
    # Every backend but the memory one sends the id to its server as UTF-8; an id with a
    # lone surrogate (text decoded with errors="surrogateescape") failed there with a
    # bare UnicodeEncodeError.
    job_id: object = job.id  # a non-str id is refused by the encoder, as it always was
    if isinstance(job_id, str) and not has_utf8_form(job_id):
        msg = (
            f"Job {job.name!r} has id {job.id!r}, which has no UTF-8 form: it holds a lone "
            "surrogate, as text decoded with errors='surrogateescape' does. Use an id of "
            "plain text, or leave it empty for a generated one."
        )
        raise TaskValidationError(msg)
    # Read as `object`: a caller may have put anything there, whatever the annotation.
    priority: object = job.priority
    if not isinstance(priority, int) or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        msg = (
            f"Job {job.name!r} has priority {priority!r}, outside "
            f"{PRIORITY_MIN}..{PRIORITY_MAX}. Use a Priority value or an int in that range."
        )
        raise TaskValidationError(msg)
    scheduled: object = job.scheduled_at
    # A datetime (or a string) compared as a number raised a bare TypeError.
    if scheduled is not None and (
        not isinstance(scheduled, int | float)
        or isinstance(scheduled, bool)
        or not math.isfinite(scheduled)
    ):
        msg = (
            f"Job {job.name!r} has scheduled_at={scheduled!r}. Use epoch seconds, e.g. "
            "time.time() + 60 or a datetime's .timestamp()."
        )
        raise TaskValidationError(msg)
    retries: object = job.max_retries
    if retries is not None and (not isinstance(retries, int) or retries < 0):
        msg = f"Job {job.name!r} has max_retries={retries!r}. Use an int, 0 or more."
        raise TaskValidationError(msg)


def _fast_encode(value: Any, record: dict[str, Any]) -> bytes | None:
    """`value` written by orjson, or None when the json module must write it."""
    if _fast_dumps is None or not _plain(record.values()):
        return None
    try:
        written = _fast_dumps(value)
    except TypeError:  # an integer beyond 64 bits: the json module writes it
        return None
    # orjson (3.12 and later) hands back the buffer it wrote into, at least 4 KiB, and never
    # shrinks it: a 100-byte envelope held 4 KiB for as long as it was kept (a memory
    # queue's million waiting jobs took 4.7 GB, a bulk enqueue of 100,000 jobs 400 MB until
    # sent). A copy of its own size costs about 65 ns; the join of two parts always copies.
    return b"".join((written, b""))


def encode_job(job: Job) -> bytes:
    """Encode a job into its JSON envelope, validating it first.

    Fields at their defaults are left out of the record. With orjson installed, it writes
    the envelope when every value is one the json module would write the same way
    (`_plain`); anything else is written, or refused, by the json module as before.

    Args:
        job: The job to encode.

    Returns:
        The UTF-8 JSON envelope.

    Raises:
        TaskValidationError: The job is invalid, an argument is not JSON-serializable,
            or a job never delivered encodes to more than `max_payload_bytes` (a job
            re-encoded for a retry or requeue is not refused: it was admitted already).
    """
    validate_job(job)
    signer = _signer
    record = _envelope_record(job)
    value: Any = record if signer is not None else {"v": ENVELOPE_VERSION, "job": record}
    data = _fast_encode(value, record)
    if data is None:
        try:
            text = strict_json(value)
        except (TypeError, ValueError) as exc:
            where = _describe_unserializable(job)
            msg = (
                f"Job {job.name!r} cannot be serialized: {where} is not JSON-serializable "
                f"({exc}). Pass plain JSON values (str, int, float, bool, None, list, dict), "
                "e.g. an id instead of an object or an ISO string instead of a datetime."
            )
            raise TaskValidationError(msg) from None
        # A lone surrogate (a file name decoded with surrogateescape) has no UTF-8 form;
        # orjson refused it above, and its JSON escape carries it to the worker.
        data = sendable_json(text).encode()
    if signer is not None:
        data = b"%s%s%s%s}" % (_SIGNED_PREFIX, signer.sign(data).encode(), _SIGNED_JOB, data)
    if len(data) > _max_payload_bytes and job.delivery_count == 0 and job.retry_count == 0:
        raise _too_large(job, len(data))
    return data


def _label(envelope: dict[str, Any]) -> str:
    record = envelope.get("job")
    if not isinstance(record, dict):
        return "job ?"
    return f"job {record.get('id')} ({record.get('name')})"


def _verify(signer: EnvelopeSigner, data: bytes | str, envelope: dict[str, Any]) -> None:
    """Raise `TaskDecodeError` unless `data` is an envelope `signer` accepts."""
    signature = envelope.get("sig")
    if signature is None:
        if signer.accept_unsigned:
            return
        msg = (
            f"{_label(envelope)} is not signed, and this worker only runs signed jobs "
            "(tasks.security.signing_key is set); it was not run. Set the same signing_key "
            "on every producer (and on every worker: a worker re-enqueues retries), with "
            "tasks.security.accept_unsigned while some process still writes unsigned jobs."
        )
        raise TaskDecodeError(msg)
    raw = data.encode() if isinstance(data, str) else data
    start = len(_SIGNED_PREFIX)
    end = raw.find(_SIGNED_JOB, start)
    if (
        not isinstance(signature, str)
        or not raw.startswith(_SIGNED_PREFIX)
        or raw[start:end] != signature.encode()
        or not raw.endswith(b"}")
        or _SIGNATURE.fullmatch(signature) is None
    ):
        problem: str | None = "its signature field is malformed"
    else:
        problem = signer.check(signature, raw[end + len(_SIGNED_JOB) : -1])
    if problem is not None:
        msg = (
            f"{_label(envelope)}: its signature does not match any configured key "
            f"({problem}); it was not run. Sign it with a key this worker has "
            "(tasks.security.signing_key or verification_keys)."
        )
        raise TaskDecodeError(msg)


def decode_job(data: bytes | str) -> Job:
    """Decode a job envelope produced by `encode_job`.

    A backend decoding what it delivers calls `decode_or_poison` instead, which turns
    every failure into the poison stand-in job.

    Args:
        data: The raw envelope: UTF-8 JSON when given as bytes (a UTF-8 BOM is skipped).

    Returns:
        The decoded job.

    Raises:
        TaskDecodeError: The payload is not a valid envelope (a poison message: not
            UTF-8, not JSON, not an envelope, an invalid job record), or a signer is
            configured and the envelope is unsigned or badly signed; the message says
            what was wrong.
    """
    try:
        envelope: Any = _loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # RecursionError: JSON nested deeper than the parser's stack, never ours.
        preview = data[:60] if isinstance(data, str) else data[:60].decode(errors="replace")
        if isinstance(exc, RecursionError):
            why = "nested too deeply"
        elif isinstance(exc, UnicodeDecodeError):
            why = f"not UTF-8: {exc}"
        else:
            why = str(exc)
        msg = (
            f"Job payload is not valid JSON ({why}); payload starts with {preview!r}. "
            "It was not written by lexigram-tasks encode_job; it goes to the dead-letter queue."
        )
        raise TaskDecodeError(msg) from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("job"), dict):
        what = type(envelope).__name__
        if isinstance(envelope, dict) and "job" in envelope:
            what = f"a 'job' that is a {type(envelope['job']).__name__}, not an object"
        else:
            what = f"{what} without a 'job' key"
        msg = (
            f"Job payload is not a lexigram-tasks envelope (got {what}). Enqueue jobs "
            "through TaskQueueProtocol.enqueue."
        )
        raise TaskDecodeError(msg)
    version = envelope.get("v")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        # No producer of lexigram-tasks writes this: upgrading the workers cannot help.
        msg = (
            f"Job envelope has no valid version ('v' is {version!r}, expected an integer "
            f"from 1 to {ENVELOPE_VERSION}): it was not written by lexigram-tasks. Enqueue "
            "jobs through TaskQueueProtocol.enqueue."
        )
        raise TaskDecodeError(msg)
    if version > ENVELOPE_VERSION:
        msg = (
            f"Job envelope version {version!r} is not supported by this worker (reads up to "
            f"{ENVELOPE_VERSION}). Upgrade lexigram-tasks on the workers."
        )
        raise TaskDecodeError(msg)
    if _signer is not None:
        _verify(_signer, data, envelope)
    try:
        return Job.from_dict(envelope["job"])
    except Exception as exc:  # any failure to build a job from untrusted input is poison
        msg = f"Job envelope has an invalid job record ({type(exc).__name__}: {exc})."
        raise TaskDecodeError(msg) from None


def mask_url(url: str) -> str:
    """Return `url` with its password replaced by `***` (safe for logs and errors).

    Args:
        url: A connection URL such as ``redis://user:secret@host:6379/0``.

    Also masks a ``password=`` setting, in a URL's query or in a libpq key/value DSN
    (``host=db password=secret``).

    Returns:
        The URL with the password masked; URLs without one are returned unchanged.
    """
    masked = _URL_PASSWORD.sub(lambda m: f"{m.group('prefix')}***@", url)
    return _SETTING_PASSWORD.sub(lambda m: f"{m.group('key')}***", masked)


POISON_JOB_NAME = "lexigram.undecodable"
"""Task name of the stand-in job a backend returns for a payload it cannot decode."""


def make_poison_job(
    job_id: str, raw: bytes | str, error: str, *, queue_name: str | None = None
) -> Job:
    """Build the stand-in job a backend hands out for an undecodable payload.

    A backend never raises from `dequeue` on bad input: it leases this job instead, so
    the worker dead-letters it with the decode error (and acks it) and keeps running.
    The stand-in cannot be retried: only a preview of the payload is kept, so the
    dead-letter commands refuse to put it back on a queue.

    Args:
        job_id: The id the backend stored the payload under (or a new uuid).
        raw: The undecodable payload (kept, truncated, for inspection in the DLQ).
        error: The decode error message.
        queue_name: The queue the payload was taken from. Always pass it: the
            dead-letter record shows it, and without it the record names no queue.

    Returns:
        A job named `POISON_JOB_NAME` with `last_error` set, the payload in metadata
        and `queue_name` set.
    """
    preview = raw if isinstance(raw, str) else _text_of(raw)
    return Job(
        id=job_id,
        name=POISON_JOB_NAME,
        max_retries=0,
        last_error=error,
        queue_name=queue_name,
        metadata={"poison_error": error, "raw_payload": preview[:2000]},
    )


def _text_of(raw: object) -> str:
    """A payload's bytes as text for the preview (what it is, when it is not bytes)."""
    if isinstance(raw, bytes | bytearray | memoryview):
        return bytes(raw).decode("utf-8", errors="replace")
    return repr(raw)  # not a payload at all (None for a missing value): show what it was


def decode_or_poison(job_id: str, raw: bytes | str, *, queue_name: str | None) -> Job:
    """Decode a delivered payload: the job it holds, or the poison stand-in job; never raises.

    The one decode step of a backend, for every payload it hands out (or shows through
    `get_job`): `decode_job` when the payload decodes, else `make_poison_job` with the
    reason, which the worker dead-letters (logging it once) without running it. Any
    `Exception` raised while decoding this one payload makes it poison, not only
    `TaskDecodeError`, so one bad message can never fail the batch it came in or stop a
    consumer; `BaseException`s that are not errors of the payload (`CancelledError`,
    `KeyboardInterrupt`) propagate. It does not log: the worker's dead-letter record names
    the job, the reason and the dead-letter queue.

    Args:
        job_id: The id the backend delivered the payload under (the stand-in's id; a job
            that decodes keeps the id it holds).
        raw: The payload as stored or received: UTF-8 JSON bytes, or text.
        queue_name: The queue the payload was taken from; the dead-letter record of a
            stand-in shows it.

    Returns:
        The decoded job, or a job named `POISON_JOB_NAME` whose `last_error` (and
        ``metadata["poison_error"]``) says what was wrong with the payload.
    """
    try:
        return decode_job(raw)
    except TaskDecodeError as exc:
        error = str(exc)
    except Exception as exc:  # any failure on this one payload makes it poison, not the batch's
        error = (
            f"Job payload could not be decoded ({type(exc).__name__}: {_message(exc)}); it "
            "was not run and goes to the dead-letter queue. decode_job raised this instead "
            "of TaskDecodeError: please report it to lexigram-tasks with the payload."
        )
    return make_poison_job(job_id, raw, error, queue_name=queue_name)


def _message(exc: BaseException) -> str:
    """`str(exc)`, or what can be said of it when that fails too; never raises."""
    try:
        text = str(exc)
    except Exception:
        return "its message could not be read"
    return text[:500] or "no message"
