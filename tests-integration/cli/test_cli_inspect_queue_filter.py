"""`inspect --queue NAME` lists the workers of the queues named, not every registered worker.

Workers of other queues, or of another backend keeping its registrations in the same
store (a RabbitMQ worker whose stores are this Redis database), are left out once queues
are named; without `--queue` every registered worker is listed, as before.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from click.testing import CliRunner

from lexigram.tasks import TaskConfig
from lexigram.tasks.admin import WORKER_KEY_PREFIX
from lexigram.tasks.cli import cli
from lexigram.tasks.cli._context import open_stores, release_backend, resolve_spec


def _record(worker_id: str, queues: list[str]) -> str:
    now = time.time()
    return json.dumps(
        {
            "id": worker_id,
            "queues": queues,
            "processed": 0,
            "in_flight": 0,
            "concurrency": 1,
            "started_at": now,
            "seen_at": now,
        }
    )


async def _register(url: str) -> None:
    spec = resolve_spec(TaskConfig.model_validate({"backend": {"url": url}}), None)
    stores = open_stores(spec, "cache")
    try:
        await stores.cache.set(WORKER_KEY_PREFIX + "a:1", _record("a:1", ["emails"]), ttl=60)
        await stores.cache.set(WORKER_KEY_PREFIX + "b:2", _record("b:2", ["reports"]), ttl=60)
    finally:
        await stores.close()
        await release_backend(spec)


def _worker_ids(*args: str) -> list[str]:
    result = CliRunner().invoke(cli, ["inspect", "--json", *args])
    assert result.exit_code == 0, result.output
    return sorted(w["id"] for w in json.loads(result.stdout)["workers"])


def test_named_queues_list_their_own_workers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    asyncio.run(_register(url))
    assert _worker_ids("-b", url) == ["a:1", "b:2"]
    assert _worker_ids("-b", url, "-q", "emails") == ["a:1"]
    assert _worker_ids("-b", url, "-q", "emails", "-q", "reports") == ["a:1", "b:2"]
    assert _worker_ids("-b", url, "-q", "nobody") == []
