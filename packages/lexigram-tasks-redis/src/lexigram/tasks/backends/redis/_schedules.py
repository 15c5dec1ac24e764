"""`RedisSchedulerStore`: cron schedules that survive restarts and are shared.

Keys, under the hash tag ``{<key_prefix>:scheduler}`` (so the scripts run on Redis
Cluster):

- ``jobs``: schedule key -> the record (JSON of `ScheduledJob.to_dict`), as saved;
- ``next_run``: schedule key -> next fire time, so recording it is one field write;
- ``state``: ``"<schedule key>:<field>"`` -> JSON value of a state field written
  since the record was saved (paused, last run and outcome), one hash field each, so a
  scheduler recording a fire and a command pausing the schedule never undo each other.

`load_jobs` merges ``next_run`` and ``state`` back into each record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from lexigram.contracts.tasks import json_for_storage
from lexigram.tasks.backends.redis._base import RedisStore, loads
from lexigram.tasks.backends.redis._connection import DEFAULT_URL, LuaScript, RedisConnector

STATE_FIELDS = ("enabled", "last_run", "last_outcome", "last_error", "last_job_id")
"""Record fields kept in the ``state`` hash (``next_run`` has a hash of its own)."""

# KEYS: records, next_run. ARGV: id, next_run. Only an existing schedule is updated.
_UPDATE_NEXT_RUN = LuaScript(
    "scheduler_next_run",
    """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
""",
)

# KEYS: records, next_run, state. ARGV: id, next_run ('' = unchanged), then pairs of
# state field and JSON value. Only an existing schedule is updated.
_UPDATE_FIELDS = LuaScript(
    "scheduler_update_fields",
    """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[3], ARGV[1] .. ':' .. ARGV[i], ARGV[i + 1])
end
return 1
""",
)


def _state_fields(job_id: str) -> list[str]:
    return [f"{job_id}:{name}" for name in STATE_FIELDS]


class RedisSchedulerStore(RedisStore):
    """`SchedulerStoreProtocol` on Redis: schedules survive restarts and are shared.

    Records (the dicts of `ScheduledJob.to_dict`) live in one hash; `next_run` and the
    state fields (see the module docstring) are kept beside them so that each update
    is one atomic write, and `load_jobs` merges them back into each record.

    Args:
        url: Redis URL (when no `connector` is given).
        key_prefix: Namespace ``{<key_prefix>:scheduler}``.
        connector: Shared connection owner.
        client: Existing redis-py asyncio client.
    """

    _store = "scheduler"

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        key_prefix: str = "lexigram",
        connector: RedisConnector | None = None,
        client: Any | None = None,
    ) -> None:
        super().__init__(url, key_prefix=key_prefix, connector=connector, client=client)
        self._records = self.namespace.key("jobs")
        self._next_run = self.namespace.key("next_run")
        self._state = self.namespace.key("state")

    async def save_job(self, job_id: str, job: Mapping[str, Any]) -> None:
        """Store (or replace) a schedule; its state is the record's from now on."""
        record = dict(job)
        data = json_for_storage(record, what=f"schedule {job_id}")
        next_run = record.get("next_run")

        async def run(client: Any) -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hset(self._records, job_id, data)
                if isinstance(next_run, int | float):
                    pipe.hset(self._next_run, job_id, repr(float(next_run)))
                else:
                    pipe.hdel(self._next_run, job_id)
                pipe.hdel(self._state, *_state_fields(job_id))
                await pipe.execute()

        await self._call("save_job", run)

    async def load_jobs(self) -> dict[str, dict[str, Any]]:
        """Return every stored schedule by id, with its latest ``next_run`` and state."""

        async def run(client: Any) -> list[dict[bytes, bytes]]:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hgetall(self._records)
                pipe.hgetall(self._next_run)
                pipe.hgetall(self._state)
                return list(await pipe.execute())

        records, next_runs, states = await self._call("load_jobs", run)
        jobs: dict[str, dict[str, Any]] = {}
        for raw_id, raw in records.items():
            record = dict(loads(raw))
            next_run = next_runs.get(raw_id)
            if next_run is not None:
                record["next_run"] = float(next_run)
            jobs[raw_id.decode()] = record
        for raw_field, raw_value in states.items():
            # Field names hold no ':', so the last one separates the schedule key.
            job_id, _, name = raw_field.decode().rpartition(":")
            if job_id in jobs and name in STATE_FIELDS:
                jobs[job_id][name] = loads(raw_value)
        return jobs

    async def update_next_run(self, job_id: str, next_run: float) -> None:
        """Record a schedule's next fire time (ignored for an unknown schedule)."""
        keys = (self._records, self._next_run)
        args = (job_id, repr(float(next_run)))
        await self._call("update_next_run", lambda c: _UPDATE_NEXT_RUN(c, keys, args))

    async def update_fields(self, job_id: str, fields: Mapping[str, Any]) -> None:
        """Change state fields of a schedule, leaving the rest (ignored for an unknown id).

        Args:
            job_id: The schedule's store key.
            fields: ``next_run`` and any of `STATE_FIELDS` (others are ignored).
        """
        next_run = fields.get("next_run")
        args: list[str] = [job_id, "" if next_run is None else repr(float(next_run))]
        for name in STATE_FIELDS:
            if name in fields:
                args.extend((name, json.dumps(fields[name])))
        keys = (self._records, self._next_run, self._state)
        await self._call("update_fields", lambda c: _UPDATE_FIELDS(c, keys, tuple(args)))

    async def delete_job(self, job_id: str) -> None:
        """Remove a schedule."""

        async def run(client: Any) -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hdel(self._records, job_id)
                pipe.hdel(self._next_run, job_id)
                pipe.hdel(self._state, *_state_fields(job_id))
                await pipe.execute()

        await self._call("delete_job", run)
