"""The ``tasks.security`` section: parsed strictly, applied by every composition root.

`TaskProvider` (through `build_stacks`) and every ``lexigram-tasks`` command (through
`load_config`) make the section the process's envelope settings, so the codec every
backend uses signs, verifies and bounds jobs alike. The worker half is shown on the
memory backend with a real `TaskWorker`: a job whose envelope fails verification reaches
it as a poison job (what every networked backend hands out for a `TaskDecodeError`) and
is dead-lettered without running.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from lexigram.contracts.tasks import (
    Job,
    TaskConfigurationError,
    TaskDecodeError,
    TaskValidationError,
    configure_envelope,
    decode_job,
    encode_job,
    envelope_signer,
    key_id,
    make_poison_job,
    max_payload_bytes,
)
from lexigram.tasks._backends import TaskBackendRegistry
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.cli._context import load_config
from lexigram.tasks.config import RetryConfig, TaskConfig, TaskWorkerConfig
from lexigram.tasks.di._stack import build_stacks
from lexigram.tasks.dlq import DeadLetterQueue
from lexigram.tasks.execution import TaskWorker, TaskWorkerServices
from lexigram.tasks.testing import HookRecorder

KEY = "core test key: 0123456789abcdef0123456789abcdef"
OLD_KEY = "core test old key: fedcba9876543210fedcba98765432"


@pytest.fixture(autouse=True)
def _reset_envelope() -> Iterator[None]:
    configure_envelope()
    yield
    configure_envelope()


def test_the_section_defaults_to_no_key_and_one_mebibyte() -> None:
    section = TaskConfig().security
    assert section.signing_key is None
    assert section.signer() is None
    assert section.max_payload_bytes == 1024 * 1024


def test_the_section_reads_keys_from_a_dict_and_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = TaskConfig.from_dict(
        {"security": {"signing_key": KEY, "verification_keys": [OLD_KEY], "max_payload_bytes": 10}}
    )
    signer = config.security.signer()
    assert signer is not None
    assert signer.key_ids == (key_id(KEY), key_id(OLD_KEY))
    assert signer.accept_unsigned is False
    rollout = TaskConfig.from_dict({"security": {"signing_key": KEY, "accept_unsigned": True}})
    rolling = rollout.security.signer()
    assert rolling is not None
    assert rolling.accept_unsigned is True
    assert KEY not in repr(config)
    monkeypatch.setenv("LEX_TASKS__SECURITY__SIGNING_KEY", KEY)
    from_env = TaskConfig.from_env()
    assert from_env.security.signing_key is not None
    assert from_env.security.signing_key.get_secret_value() == KEY


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"signing_kye": "x"}, "tasks.security.signing_kye = 'x': unknown key. Did you mean"),
        ({"verification_keys": [OLD_KEY]}, "verification_keys is set without signing_key"),
        ({"signing_key": ""}, "a signing key is empty"),
        ({"max_payload_bytes": 0}, "tasks.security.max_payload_bytes = 0: must be > 0"),
        ({"accept_unsigned": True}, "accept_unsigned is set without signing_key"),
    ],
)
def test_bad_security_settings_are_one_clear_line(
    section: dict[str, object], expected: str
) -> None:
    with pytest.raises(TaskConfigurationError) as caught:
        TaskConfig.from_dict({"security": section})
    assert expected in str(caught.value)
    assert KEY not in str(caught.value)


async def test_build_stacks_applies_the_section_to_every_backend() -> None:
    config = TaskConfig.from_dict(
        {
            "security": {"signing_key": KEY, "max_payload_bytes": 2048},
            "scheduler": {"enabled": False},
        }
    )
    stacks, primary = build_stacks(
        config, registry=TaskBackendRegistry.with_defaults(), queue=None, with_scheduler_store=False
    )
    signer = envelope_signer()
    assert signer is not None
    assert signer.key_id == key_id(KEY)
    assert max_payload_bytes() == 2048
    queue = stacks[primary].queue
    big = Job(name="upload", args=("x" * 4096,))
    refused = await queue.enqueue(big)
    assert refused.is_err()
    error = refused.unwrap_err()
    assert isinstance(error, TaskValidationError)
    assert f"job {big.id} (upload) encodes to 4.2 kB" in str(error)
    assert "over the limit of 2 kB (2048 bytes, max_payload_bytes)" in str(error)
    assert await queue.count(config.backend.queue_name) == 0
    for stack in stacks.values():
        await stack.close()


def test_every_command_applies_the_section_when_it_loads_the_config() -> None:
    base = TaskConfig.from_dict({"security": {"signing_key": KEY}})
    assert load_config(None, base) is base
    signer = envelope_signer()
    assert signer is not None
    assert signer.key_id == key_id(KEY)
    load_config(None, TaskConfig())
    assert envelope_signer() is None


async def test_worker_runs_signed_jobs_and_dead_letters_forged_ones_unrun() -> None:
    ran: list[str] = []

    async def guarded(label: str) -> str:
        ran.append(label)
        return label

    unsigned_payload = encode_job(Job(id="forged-1", name="guarded", args=("forged",)))
    TaskConfig.from_dict({"security": {"signing_key": KEY}}).security.apply()
    signed = Job(name="guarded", args=("signed",))
    assert decode_job(encode_job(signed)).args == ("signed",)
    with pytest.raises(TaskDecodeError) as caught:
        decode_job(unsigned_payload)

    queue = MemoryTaskQueue()
    (await queue.enqueue(signed)).unwrap()
    # What every backend does with a payload decode_job refuses: lease a poison job.
    (await queue.enqueue(make_poison_job("forged-1", unsigned_payload, str(caught.value)))).unwrap()
    hooks = HookRecorder()
    dlq = DeadLetterQueue()
    worker = TaskWorker(
        "w-security",
        queue,
        {"guarded": guarded},
        TaskWorkerConfig(retry=RetryConfig(initial_delay=0.01, jitter=0.0), poll_interval=0.02),
        TaskWorkerServices(hooks=hooks, dead_letter_queue=dlq),
    )
    await worker.start()
    try:
        await hooks.wait_until(
            lambda: signed.id in hooks.ids("task.completed") and dlq.get("forged-1") is not None
        )
    finally:
        await worker.stop()
    assert ran == ["signed"]
    record = dlq.get("forged-1")
    assert record is not None
    assert record.metadata["reason"] == "poison"
    assert "job forged-1 (guarded) is not signed" in record.error
    assert "it was not run" in record.error


def test_a_short_signing_key_is_warned_about_never_shown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    short = TaskConfig.from_dict({"security": {"signing_key": "abc"}}).security
    with caplog.at_level(logging.WARNING, logger="lexigram.tasks.config._security"):
        short.apply()
    configure_envelope()
    [record] = caplog.records
    assert "signing_key is 3 bytes long" in record.getMessage()
    assert "abc" not in record.getMessage()
    caplog.clear()
    TaskConfig.from_dict({"security": {"signing_key": KEY}}).security.apply()
    configure_envelope()
    assert not caplog.records
