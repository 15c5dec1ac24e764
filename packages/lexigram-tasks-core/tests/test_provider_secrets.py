"""No password appears in any log line, repr or error while an application runs."""

from __future__ import annotations

import asyncio
import logging

import pytest

from lexigram.app import Application, ApplicationStartError
from lexigram.contracts.tasks import Job, TaskConfigurationError
from lexigram.tasks import TaskConfig, TaskProvider

PASSWORD = "hunter2-Zq9x"  # noqa: S105 - the marker the scan looks for

CONFIG_YAML = """\
tasks:
  worker:
    max_concurrent_tasks: 2
  backends:
    - name: primary
      primary: true
      type: memory
      url: "${PRIMARY_URL}"
    - name: audit
      type: memory
      redis_url: "${AUDIT_URL}"
"""


async def test_no_password_in_logs_reprs_or_errors(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("LEX_ENV", "production")  # production makes the config checks speak up
    environ = {
        # The memory backend ignores its URL; a URL with a secret still must not leak.
        "PRIMARY_URL": f"memory://app:{PASSWORD}@cache.internal:6379/0",
        "AUDIT_URL": f"redis://:{PASSWORD}@localhost:6379/1",
    }
    path = tmp_path / "application.yaml"
    path.write_text(CONFIG_YAML, encoding="utf-8")
    texts: list[str] = []

    config = TaskConfig.from_yaml(path, environ=environ)
    texts += [repr(config), str(config), config.model_dump_json(), str(config.to_safe_dict())]
    redis_config = TaskConfig.from_dict(
        {"backend": {"type": "redis", "redis_url": environ["AUDIT_URL"]}}
    )
    texts += [str(issue) for issue in redis_config.validate_for_environment()]
    texts += [repr(issue) for issue in redis_config.validate_for_environment()]

    failed = asyncio.Event()

    async def explode(url: str) -> None:
        failed.set()
        msg = "cannot reach the audit service"
        raise RuntimeError(msg)

    provider = TaskProvider(config=config)
    provider.register_handler("explode", explode)
    async with Application.boot(providers=[provider]) as app:
        texts += [repr(provider), repr(provider.stacks), repr(provider.queues)]
        texts += [repr(stack.spec) for stack in provider.stacks.values()]
        await provider.enqueue_job(Job(name="explode", args=("x",), max_retries=0))
        await asyncio.wait_for(failed.wait(), 5)
        dlq = provider.stacks["primary"].dead_letter_queue
        for _ in range(1000):  # the failure is recorded right after the handler raises
            if await dlq.size():
                break
            await asyncio.sleep(0)
        texts += [repr(await dlq.list_failed())]
        health = await app.health_check()
        texts += [repr(health)]

    # Errors: a strict config with secrets under a wrong key and in a bad value.
    with pytest.raises(TaskConfigurationError) as bad_config:
        TaskConfig.from_dict(
            {
                "backend": {"redis_ulr": environ["PRIMARY_URL"], "postgres_dsn": 42},
                "backends": [{"name": "", "url": environ["AUDIT_URL"]}],
            },
            strict=True,
        )
    texts += [str(bad_config.value), repr(bad_config.value.details)]
    # An unknown backend type next to a secret URL fails at start without the URL.
    typo = TaskConfig.from_dict({"backend": {"type": "rediss", "url": environ["PRIMARY_URL"]}})
    with pytest.raises(ApplicationStartError) as start_error:
        await Application().use(TaskProvider(config=typo)).start()
    texts += [str(start_error.value), str(start_error.value.__cause__)]

    assert caplog.records, "the scan needs log output to look at"
    assert PASSWORD not in caplog.text
    for record in caplog.records:
        assert PASSWORD not in record.getMessage()
    for text in texts:
        assert PASSWORD not in text
    # The masked forms are what users see.
    assert "memory://app:***@cache.internal:6379/0" in str(config.to_safe_dict())
