"""Nothing configured means the same as `TaskConfig()`: the plain records agree with the models.

A worker with nothing configured runs from `WorkerSettings` and the constants (so that it
never imports pydantic); everything else reads the pydantic models. These tests keep the
two readings of "the defaults" equal, field by field.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from lexigram.contracts.tasks import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    configure_envelope,
    envelope_signer,
    max_payload_bytes,
)
from lexigram.tasks import _producer
from lexigram.tasks._worker_settings import (
    RETRY_DEFAULTS,
    WORKER_DEFAULTS,
    RetrySettings,
    WorkerSettings,
)
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.cli._context import read_config, resolve_spec
from lexigram.tasks.cli._worker import WorkerOptions
from lexigram.tasks.cli._worker_run import _worker_config
from lexigram.tasks.config import RetryConfig, TaskConfig, TaskWorkerConfig
from lexigram.tasks.di._stack import (
    apply_process_settings,
    config_name,
    rate_limit_bucket,
    worker_settings,
)
from lexigram.tasks.execution import TaskWorker, WorkerPool


def _as_dict(record: Any) -> dict[str, Any]:
    """A `WorkerSettings`/`RetrySettings` or a model, as plain values (nested too)."""
    if isinstance(record, WorkerSettings | RetrySettings):
        return {k: _as_dict(v) if isinstance(v, tuple) else v for k, v in record._asdict().items()}
    return dict(record.model_dump())


def test_worker_settings_have_the_models_fields_and_defaults() -> None:
    assert set(WorkerSettings._fields) == set(TaskWorkerConfig.model_fields)
    assert set(RetrySettings._fields) == set(RetryConfig.model_fields)
    assert _as_dict(WORKER_DEFAULTS) == _as_dict(TaskWorkerConfig())
    assert _as_dict(RETRY_DEFAULTS) == _as_dict(RetryConfig())


def test_the_unconfigured_worker_settings_are_the_default_configs() -> None:
    assert worker_settings(None) is WORKER_DEFAULTS
    assert _as_dict(worker_settings(None)) == _as_dict(TaskConfig().effective_worker())


def test_the_unconfigured_names_and_limits_are_the_default_configs() -> None:
    default = TaskConfig()
    assert config_name(None) == default.name
    assert rate_limit_bucket(None) == rate_limit_bucket(default)
    assert default.rate_limit.enabled is False  # so None builds no global rate limiter


@pytest.fixture
def restored_process_settings() -> Iterator[None]:
    yield
    apply_process_settings(None)


@pytest.mark.usefixtures("restored_process_settings")
def test_the_unconfigured_process_settings_are_the_default_configs() -> None:
    configured = TaskConfig.from_dict(
        {"security": {"max_payload_bytes": 1234}, "backend": {"enqueue_timeout": 9.0}}
    )
    apply_process_settings(configured)
    assert (max_payload_bytes(), _producer._enqueue_timeout) == (1234, 9.0)

    apply_process_settings(None)  # the defaults, as a command with nothing configured
    unconfigured = (envelope_signer(), max_payload_bytes(), _producer._enqueue_timeout)
    apply_process_settings(TaskConfig())
    defaults = (envelope_signer(), max_payload_bytes(), _producer._enqueue_timeout)
    assert unconfigured == defaults == (None, DEFAULT_MAX_PAYLOAD_BYTES, 5.0)
    configure_envelope()


@pytest.mark.parametrize(
    ("backend", "queue"),
    [(None, None), ("memory", "other"), ("memory://", None)],
)
def test_an_unconfigured_spec_is_the_default_configs(
    backend: str | None, queue: str | None
) -> None:
    assert resolve_spec(None, backend, queue) == resolve_spec(TaskConfig(), backend, queue)


def test_nothing_configured_reads_no_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in __import__("os").environ if n.startswith("LEX_TASKS__")]:
        monkeypatch.delenv(name)
    assert read_config(None, None) is None
    monkeypatch.setenv("LEX_TASKS__WORKER__MAX_CONCURRENT_TASKS", "3")
    config = read_config(None, None)
    assert config is not None
    assert config.worker.max_concurrent_tasks == 3


def test_command_line_overrides_apply_to_either_kind_of_settings() -> None:
    options = WorkerOptions(
        app="app",
        backend=None,
        config_path=None,
        queues=(),
        concurrency=7,
        workers=1,
        shutdown_timeout=2.0,
        log_level="info",
        reload=False,
        burst=False,
        connect_timeout=5.0,
        debug=False,
        log_jobs=True,
    )
    plain = _worker_config(options, WORKER_DEFAULTS)
    model = _worker_config(options, TaskWorkerConfig())
    assert isinstance(plain, WorkerSettings)
    assert isinstance(model, TaskWorkerConfig)
    assert _as_dict(plain) == _as_dict(model)
    assert (plain.max_concurrent_tasks, plain.shutdown_timeout, plain.log_jobs) == (7, 2.0, True)


def test_a_worker_runs_with_either_kind_of_settings() -> None:
    queue = MemoryTaskQueue()
    plain = TaskWorker("w1", queue, {}, WORKER_DEFAULTS._replace(max_concurrent_tasks=3))
    assert plain.config.max_concurrent_tasks == 3
    assert isinstance(TaskWorker("w2", queue, {}).config, TaskWorkerConfig)  # as before
    pool = WorkerPool(queue, {}, size=1, config=WORKER_DEFAULTS)
    assert pool.config is WORKER_DEFAULTS
