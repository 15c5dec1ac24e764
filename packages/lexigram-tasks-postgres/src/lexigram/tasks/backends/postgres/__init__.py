"""PostgreSQL backend of lexigram-tasks (asyncpg)."""

from __future__ import annotations

from lexigram.tasks.backends.postgres._config import DEFAULT_SCHEMA, PostgresTaskConfig
from lexigram.tasks.backends.postgres._queue import PostgresTaskQueue
from lexigram.tasks.backends.postgres._schema import migrate

__all__ = ["DEFAULT_SCHEMA", "PostgresTaskConfig", "PostgresTaskQueue", "migrate"]
