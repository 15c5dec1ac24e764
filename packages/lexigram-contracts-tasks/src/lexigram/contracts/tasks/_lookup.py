"""`JobLookupProtocol`: the optional capability to find job ids by prefix."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["JobLookupProtocol", "id_prefix_upper_bound"]


@runtime_checkable
class JobLookupProtocol(Protocol):
    """A queue or result store that can list the job ids starting with a prefix.

    Optional: ``lexigram-tasks job status|result|wait|cancel`` accept a unique prefix of
    a job id when the queue or the result store implements it, and accept only exact
    ids otherwise. Implement it only where the lookup is cheap and bounded (an index
    range, a key scan that stops at `limit`), never as a read of every job.

    Example:
        if isinstance(queue, JobLookupProtocol):
            ids = await queue.find_job_ids("5f0c", limit=6)
    """

    async def find_job_ids(self, prefix: str, limit: int) -> list[str]:
        """Return up to `limit` ids of jobs this object holds that start with `prefix`.

        Args:
            prefix: The start of the id, taken literally (no wildcard characters).
            limit: The most ids to return; the caller asks for one more than it shows.

        Returns:
            The matching ids, in any order, without duplicates.
        """
        ...


def id_prefix_upper_bound(prefix: str) -> str:
    """The least string above every string that starts with `prefix` (code-point order).

    Lets a backend turn a prefix into the index range ``prefix <= id < bound``. (A
    prefix made only of U+10FFFF has no such bound; it gets one more U+10FFFF, good
    enough since job ids are never made of it.)
    """
    stripped = prefix.rstrip(chr(0x10FFFF))
    if not stripped:
        return prefix + chr(0x10FFFF)
    return stripped[:-1] + chr(ord(stripped[-1]) + 1)
