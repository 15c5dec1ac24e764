"""Core behaviour checked with the first-party backends installed (their URL schemes, config
fields and type names); core's own unit session installs core alone."""

from __future__ import annotations

import pytest

from lexigram.tasks.cli._context import parse_backend


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("redis://localhost:6379/0", ("redis", "redis://localhost:6379/0")),
        ("rediss://h:6380", ("redis", "rediss://h:6380")),
        ("amqp://guest:guest@h/", ("rabbitmq", "amqp://guest:guest@h/")),
        ("amqps://h/", ("rabbitmq", "amqps://h/")),
        ("postgresql://h/db", ("postgres", "postgresql://h/db")),
        ("postgres://h/db", ("postgres", "postgres://h/db")),
        ("memory", ("memory", None)),
        ("Redis", ("redis", None)),
        ("memory://", ("memory", "memory://")),
    ],
)
def test_parse_backend_maps_schemes_and_names(value: str, expected: tuple[str, str | None]) -> None:
    assert parse_backend(value) == expected
