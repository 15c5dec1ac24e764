"""Envelope signing (HMAC-SHA256 with key ids) and the maximum payload size in the codec."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from lexigram.contracts.tasks import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    EnvelopeSigner,
    Job,
    TaskDecodeError,
    TaskValidationError,
    configure_envelope,
    decode_job,
    encode_job,
    envelope_signer,
    key_id,
    max_payload_bytes,
)

KEY_A = "key A: 0123456789abcdef0123456789abcdef"
KEY_B = "key B: fedcba9876543210fedcba9876543210"


@pytest.fixture(autouse=True)
def _reset_envelope() -> Iterator[None]:
    configure_envelope()
    yield
    configure_envelope()


def _job() -> Job:
    return Job(name="send_email", args=("ada@example.com",), kwargs={"n": 1.5})


def test_without_a_signer_the_envelope_is_unchanged_and_unchecked() -> None:
    job = _job()
    data = encode_job(job)
    envelope = json.loads(data)
    assert set(envelope) == {"v", "job"}
    assert envelope["v"] == 1
    assert Job.from_dict(envelope["job"]).to_dict() == job.to_dict()
    configure_envelope(signer=EnvelopeSigner(KEY_A))
    signed = encode_job(job)
    configure_envelope()
    # A process without a key runs signed jobs normally.
    assert decode_job(signed).to_dict() == job.to_dict()


def test_a_signed_envelope_round_trips_and_names_its_key_id() -> None:
    signer = EnvelopeSigner(KEY_A)
    configure_envelope(signer=signer)
    assert envelope_signer() is signer
    job = _job()
    data = encode_job(job)
    envelope = json.loads(data)
    assert envelope["sig"].startswith(f"{key_id(KEY_A)}.")
    assert Job.from_dict(envelope["job"]).to_dict() == job.to_dict()
    assert decode_job(data).to_dict() == job.to_dict()
    assert decode_job(data.decode()).to_dict() == job.to_dict()  # text payloads too


def test_an_unsigned_job_is_refused_with_its_id_and_name() -> None:
    job = _job()
    data = encode_job(job)
    configure_envelope(signer=EnvelopeSigner(KEY_A))
    with pytest.raises(TaskDecodeError) as caught:
        decode_job(data)
    assert str(caught.value).startswith(f"job {job.id} (send_email) is not signed")
    assert "it was not run" in str(caught.value)


def test_during_a_rollout_unsigned_jobs_run_and_bad_signatures_do_not() -> None:
    # A worker without the key yet re-enqueues a retry unsigned: with accept_unsigned,
    # the workers that have the key run it instead of dead-lettering it.
    job = _job()
    unsigned = encode_job(job)
    configure_envelope(signer=EnvelopeSigner(KEY_B))
    foreign = encode_job(job)
    configure_envelope(signer=EnvelopeSigner(KEY_A, accept_unsigned=True))
    assert decode_job(unsigned).to_dict() == job.to_dict()
    assert json.loads(encode_job(job))["sig"].startswith(f"{key_id(KEY_A)}.")  # still signs
    with pytest.raises(TaskDecodeError, match="its signature does not match"):
        decode_job(foreign)


def test_a_job_signed_with_another_key_is_refused_naming_both_key_ids() -> None:
    job = _job()
    configure_envelope(signer=EnvelopeSigner(KEY_B))
    data = encode_job(job)
    configure_envelope(signer=EnvelopeSigner(KEY_A))
    with pytest.raises(TaskDecodeError) as caught:
        decode_job(data)
    message = str(caught.value)
    assert f"job {job.id} (send_email): its signature does not match any configured key" in message
    assert key_id(KEY_B) in message
    assert key_id(KEY_A) in message
    assert KEY_A not in message
    assert KEY_B not in message


def test_a_tampered_body_fails_verification() -> None:
    configure_envelope(signer=EnvelopeSigner(KEY_A))
    data = encode_job(_job())
    forged = data.replace(b"ada@example.com", b"eve@example.com")
    assert forged != data
    with pytest.raises(TaskDecodeError, match=r"signature made with key id .* is wrong"):
        decode_job(forged)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: d.replace(b'{"v":1,"sig"', b'{"v":1, "sig"'),  # layout changed
        lambda d: d.replace(b'","job":', b'","x":0,"job":'),  # a field slipped in
        lambda d: d[: d.index(b".") + 5] + d[d.index(b".") + 9 :],  # short mac
    ],
)
def test_a_malformed_signature_field_is_refused(mangle: Callable[[bytes], bytes]) -> None:
    configure_envelope(signer=EnvelopeSigner(KEY_A))
    data = encode_job(_job())
    with pytest.raises(TaskDecodeError, match="does not match any configured key"):
        decode_job(mangle(data))


def test_rotation_accepts_old_keys_and_signs_with_the_new_one() -> None:
    job = _job()
    configure_envelope(signer=EnvelopeSigner(KEY_A))
    old = encode_job(job)
    rotated = EnvelopeSigner(KEY_B, [KEY_A])
    configure_envelope(signer=rotated)
    assert rotated.key_ids == (key_id(KEY_B), key_id(KEY_A))
    assert decode_job(old).id == job.id
    assert json.loads(encode_job(job))["sig"].startswith(f"{key_id(KEY_B)}.")


def test_signer_rejects_empty_keys_and_never_shows_a_key() -> None:
    with pytest.raises(ValueError, match="signing key is empty"):
        EnvelopeSigner("")
    with pytest.raises(ValueError, match="signing key is empty"):
        EnvelopeSigner(KEY_A, [b""])
    assert KEY_A not in repr(EnvelopeSigner(KEY_A))
    assert key_id(KEY_A) == key_id(KEY_A.encode())
    assert key_id(KEY_A) != key_id(KEY_B)


def test_an_oversized_job_is_refused_at_enqueue_with_size_limit_and_fix() -> None:
    assert max_payload_bytes() == DEFAULT_MAX_PAYLOAD_BYTES == 1024 * 1024
    job = Job(name="send_email", args=("x" * int(1.2 * 1024 * 1024),))
    with pytest.raises(TaskValidationError) as caught:
        encode_job(job)
    message = str(caught.value)
    assert message.startswith(f"job {job.id} (send_email) encodes to 1.2 MB (")
    assert "over the limit of 1 MB (1048576 bytes, max_payload_bytes)" in message
    assert "pass large data by reference" in message


def test_the_limit_is_configurable_and_counts_the_signature() -> None:
    configure_envelope(max_payload_bytes=5000)
    assert max_payload_bytes() == 5000
    job = Job(name="t", args=("x" * 700,))
    size = len(encode_job(job))
    assert size < 5000
    configure_envelope(signer=EnvelopeSigner(KEY_A), max_payload_bytes=size + 10)
    with pytest.raises(TaskValidationError, match=r"bytes\), over the limit of"):
        encode_job(job)  # the signature adds 80 bytes
    with pytest.raises(ValueError, match="max_payload_bytes=0 is not positive"):
        configure_envelope(max_payload_bytes=0)


def test_a_delivered_job_is_re_encoded_whatever_its_size() -> None:
    """Retries and requeues re-encode a job that was admitted; they must never fail."""
    configure_envelope(max_payload_bytes=500)
    retried = Job(name="t", args=("x" * 600,), retry_count=1)
    requeued = Job(name="t", args=("x" * 600,), delivery_count=1)
    assert len(encode_job(retried)) > 500
    assert len(encode_job(requeued)) > 500
