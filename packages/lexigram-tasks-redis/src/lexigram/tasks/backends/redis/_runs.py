"""Queue-driven workflow runs on Redis: one hash per run, joined by Lua scripts.

A run's hash ``{<prefix>:workflows}:run:<id>`` holds ``def`` (the definition as
JSON), ``status``, ``result``, ``error``, ``created``/``updated`` (epoch seconds),
and per step ``s:<stage>:<member>`` (its record as JSON); per stage ``n:<stage>``
counts the recorded steps and ``c:<stage>`` names the member that completed it, and
``j:<stage>`` holds the record of its enqueued jobs (their ids); ``failer`` names the
step that failed the run. Each script reads and writes the one hash, so a join is
atomic whichever worker runs it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from lexigram.contracts.tasks import WorkflowStatus, json_for_storage
from lexigram.tasks.backends.redis._base import RedisStore, loads
from lexigram.tasks.backends.redis._connection import LuaScript

_LIST_BATCH = 500
"""Runs whose status and creation time `list_runs` reads in one pipeline."""


def _run_dict(workflow_id: str, raw: dict[bytes, bytes]) -> dict[str, Any] | None:
    """A run as `load_run` returns it, from its hash (None: no run, or one being deleted)."""
    fields = {name.decode(): value for name, value in raw.items()}
    if "def" not in fields:
        return None
    steps = {name[2:]: loads(value) for name, value in fields.items() if name.startswith("s:")}
    jobs = {name[2:]: loads(value) for name, value in fields.items() if name.startswith("j:")}
    result = fields.get("result")
    error = fields.get("error")
    failer = fields.get("failer")  # the step's field, "s:<stage>:<member>"
    return {
        "workflow_id": workflow_id,
        "definition": loads(fields["def"]),
        "status": fields["status"].decode(),
        "steps": steps,
        "jobs": jobs,
        "result": None if result is None else loads(result),
        "error": None if error is None else error.decode(),
        "created_at": float(fields["created"]),
        "updated_at": float(fields["updated"]),
        "failed_step": None if failer is None else failer.decode()[2:],
    }


# ARGV: definition json, now. Returns 1 when created, 0 when the run exists.
_CREATE = LuaScript(
    "workflow_create",
    """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'def', ARGV[1], 'status', 'running', 'created', ARGV[2],
  'updated', ARGV[2])
return 1
""",
)

# ARGV: stage, member, size, record json, now. Returns the stage's records (in member
# order) to the step that completed the stage and to its repeats, else 0.
_RECORD = LuaScript(
    "workflow_record",
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local stage = ARGV[1]
if redis.call('HSETNX', KEYS[1], 's:' .. stage .. ':' .. ARGV[2], ARGV[4]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'n:' .. stage, 1)
  redis.call('HSET', KEYS[1], 'updated', ARGV[5])
end
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
local size = tonumber(ARGV[3])
if tonumber(redis.call('HGET', KEYS[1], 'n:' .. stage)) < size then return 0 end
redis.call('HSETNX', KEYS[1], 'c:' .. stage, ARGV[2])
if redis.call('HGET', KEYS[1], 'c:' .. stage) ~= ARGV[2] then return 0 end
local out = {}
for i = 0, size - 1 do
  out[i + 1] = redis.call('HGET', KEYS[1], 's:' .. stage .. ':' .. i)
end
return out
""",
)

# ARGV: stage, member, record json, error, now. Returns 1 to the step that failed the run.
_FAIL = LuaScript(
    "workflow_fail",
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local field = 's:' .. ARGV[1] .. ':' .. ARGV[2]
redis.call('HSETNX', KEYS[1], field, ARGV[3])
if redis.call('HGET', KEYS[1], 'status') == 'running' then
  redis.call('HSET', KEYS[1], 'status', 'failed', 'error', ARGV[4], 'failer', field,
    'updated', ARGV[5])
end
if redis.call('HGET', KEYS[1], 'failer') == field then return 1 end
return 0
""",
)

# ARGV: stage, record json. Only into an existing run: a run deleted meanwhile must not
# come back as a hash without a definition.
_JOBS = LuaScript(
    "workflow_jobs",
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'j:' .. ARGV[1], ARGV[2])
return 1
""",
)

# ARGV: result json, now.
_FINISH = LuaScript(
    "workflow_finish",
    """
if redis.call('HGET', KEYS[1], 'status') == 'running' then
  redis.call('HSET', KEYS[1], 'status', 'completed', 'result', ARGV[1], 'updated', ARGV[2])
end
return 1
""",
)


class RedisWorkflowRuns(RedisStore):
    """`JobRecordingWorkflowRunStoreProtocol` on Redis: the base of `RedisWorkflowStateStore`.

    It is a `ListingWorkflowRunStoreProtocol` too.
    """

    def _run_key(self, workflow_id: str) -> str:
        return self.namespace.key("run", workflow_id)

    async def create_run(self, workflow_id: str, definition: Mapping[str, Any]) -> bool:
        """Store a new RUNNING run; False when the id exists."""
        keys = (self._run_key(workflow_id),)
        args = (
            json_for_storage(dict(definition), what=f"workflow {workflow_id}"),
            repr(time.time()),
        )
        created = await self._call("create_run", lambda c: _CREATE(c, keys, args))
        return bool(created)

    async def record_step(
        self,
        workflow_id: str,
        stage: int,
        member: int,
        *,
        size: int,
        record: Mapping[str, Any],
    ) -> list[dict[str, Any]] | None:
        """Record a success; the stage's records to the step that completed the stage."""
        keys = (self._run_key(workflow_id),)
        data = json_for_storage(
            dict(record), what=f"step {stage}:{member} of workflow {workflow_id}"
        )
        args = (stage, member, size, data, repr(time.time()))
        answer = await self._call("record_step", lambda c: _RECORD(c, keys, args))
        if not isinstance(answer, list):
            return None
        return [loads(raw) for raw in answer]

    async def record_jobs(self, workflow_id: str, stage: int, record: Mapping[str, Any]) -> None:
        """Keep (or replace) the record of a stage's jobs; no-op when the run is absent."""
        keys = (self._run_key(workflow_id),)
        data = json_for_storage(
            dict(record), what=f"jobs of stage {stage} of workflow {workflow_id}"
        )
        args = (stage, data)
        await self._call("record_jobs", lambda c: _JOBS(c, keys, args))

    async def fail_step(
        self, workflow_id: str, stage: int, member: int, *, record: Mapping[str, Any]
    ) -> bool:
        """Record a failed step; True to the step that failed the run."""
        keys = (self._run_key(workflow_id),)
        data = json_for_storage(
            dict(record), what=f"step {stage}:{member} of workflow {workflow_id}"
        )
        args = (stage, member, data, str(record.get("error") or ""), repr(time.time()))
        return bool(await self._call("fail_step", lambda c: _FAIL(c, keys, args)))

    async def finish_run(self, workflow_id: str, result: Any) -> None:
        """Mark a RUNNING run COMPLETED with its result."""
        keys = (self._run_key(workflow_id),)
        args = (
            json_for_storage(result, what=f"result of workflow {workflow_id}"),
            repr(time.time()),
        )
        await self._call("finish_run", lambda c: _FINISH(c, keys, args))

    async def load_run(self, workflow_id: str) -> dict[str, Any] | None:
        """Return a run, or None; ``failed_step`` names the step that failed it."""
        key = self._run_key(workflow_id)
        raw: dict[bytes, bytes] = await self._call("load_run", lambda c: c.hgetall(key))
        return _run_dict(workflow_id, raw) if raw else None

    async def list_runs(
        self, *, status: WorkflowStatus | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Return at most `limit` runs, newest first, each as `load_run` returns it.

        Runs have no index: each call SCANs the keyspace for the run hashes and reads
        each one's status and creation time, then the whole hash of the `limit` newest.
        A run created by any version is listed; the cost grows with the keyspace.
        """
        if limit < 1:
            return []
        wanted = None if status is None else WorkflowStatus(status).value.encode()
        start = len(self._run_key(""))

        async def read(client: Any) -> list[tuple[str, dict[bytes, bytes]]]:
            keys = [
                key
                async for key in client.scan_iter(
                    match=self.namespace.pattern("run", ""), count=1000
                )
            ]
            found: list[tuple[float, bytes]] = []
            for index in range(0, len(keys), _LIST_BATCH):
                batch = keys[index : index + _LIST_BATCH]
                async with client.pipeline(transaction=False) as pipe:
                    for key in batch:
                        pipe.hmget(key, "status", "created")
                    answers = await pipe.execute()
                for key, (state, created) in zip(batch, answers, strict=True):
                    if created is not None and wanted in (None, state):
                        found.append((float(created), key))
            # Newest first; the run id breaks a tie of creation times.
            found.sort(reverse=True)
            chosen = [key for _, key in found[:limit]]
            if not chosen:
                return []
            async with client.pipeline(transaction=False) as pipe:
                for key in chosen:
                    pipe.hgetall(key)
                hashes = await pipe.execute()
            return [(key.decode()[start:], raw) for key, raw in zip(chosen, hashes, strict=True)]

        runs = (_run_dict(run_id, raw) for run_id, raw in await self._call("list_runs", read))
        return [run for run in runs if run is not None]

    async def delete_run(self, workflow_id: str) -> None:
        """Delete a run (no-op when absent)."""
        key = self._run_key(workflow_id)
        await self._call("delete_run", lambda c: c.delete(key))
