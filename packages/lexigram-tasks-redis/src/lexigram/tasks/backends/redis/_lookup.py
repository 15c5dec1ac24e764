"""Job ids by prefix (`JobLookupProtocol`) for the Redis queue and result store.

Both walk a cursor with a MATCH pattern (the prefix glob-escaped, then ``*``) and stop
as soon as `limit` distinct ids are in hand: HSCAN over the queue's jobs hash (every
job waiting or in flight is a field of it) and SCAN over the result keys
``{<prefix>:results}:r:<job id>``. A cursor may return an entry twice, hence the set.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from lexigram.tasks.backends.redis._keys import glob_escape

_COUNT = 1000
"""Entries Redis examines per cursor step: large enough to keep round trips few."""


async def _first(found: AsyncIterator[Any], skip: int, limit: int) -> list[str]:
    ids: dict[str, None] = {}
    async for raw in found:
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            continue  # no command could name it (a dequeue renames it: `JobLeaser.read`)
        ids[text[skip:]] = None
        if len(ids) >= limit:
            break
    return list(ids)


async def queued_ids(client: Any, jobs_key: str, prefix: str, limit: int) -> list[str]:
    """Ids (fields of the hash `jobs_key`) starting with `prefix`, at most `limit`."""
    pattern = glob_escape(prefix) + "*"

    async def fields() -> AsyncIterator[Any]:
        async for field, _ in client.hscan_iter(jobs_key, match=pattern, count=_COUNT):
            yield field

    return await _first(fields(), 0, limit)


async def result_ids(client: Any, key_start: str, prefix: str, limit: int) -> list[str]:
    """Ids of result keys ``<key_start><id>`` whose id starts with `prefix`."""
    pattern = glob_escape(key_start + prefix) + "*"
    found = client.scan_iter(match=pattern, count=_COUNT)
    return await _first(found, len(key_start), limit)
