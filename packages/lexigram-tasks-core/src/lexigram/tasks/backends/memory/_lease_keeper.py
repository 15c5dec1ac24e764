"""Lease renewal of the memory queue from another thread, without a lock on its hot path.

The queue's structures belong to its event loop and are not meant to be shared between
threads, so a renewer never changes them. It records, as one tuple it replaces whole
(an atomic store), until when it keeps which ``(job id, token)`` leases. The queue reads
that record only when it finds a lease past its deadline, which on a healthy loop the
heartbeat never lets happen: a loop that was blocked past a lease then extends the
lease instead of handing the job to another consumer, as long as the keeper's thread
renewed it. Renewals read the queue's in-flight table with single ``dict.get`` calls
(atomic under the GIL) to tell which tokens no longer hold their lease.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence


class MemoryLeaseRenewer:
    """A `LeaseRenewerProtocol` for one `MemoryTaskQueue` (see the module docstring)."""

    __slots__ = ("_in_flight", "_keepers", "kept")

    def __init__(self, in_flight: dict[str, tuple[float, str]], keepers: KeptLeases) -> None:
        self._in_flight = in_flight
        self._keepers = keepers
        # (monotonic time the kept leases run until, job id -> token); replaced whole.
        self.kept: tuple[float, dict[str, str]] = (0.0, {})

    async def renew(self, leases: Sequence[tuple[str, str]], seconds: float) -> list[str]:
        """Keep these leases `seconds` from now; return the ids whose token lost its lease."""
        until = time.monotonic() + seconds
        in_flight = self._in_flight
        held: dict[str, str] = {}
        lost: list[str] = []
        for job_id, token in leases:
            lease = in_flight.get(job_id)
            if lease is None or lease[1] != token:
                lost.append(job_id)  # settled, deleted, or delivered again meanwhile
            else:
                held[job_id] = token
        self.kept = (until, held)
        return lost

    async def close(self) -> None:
        """Stop keeping leases: those it kept run out at their last renewal."""
        self._keepers.remove(self)


class KeptLeases:
    """The open renewers of one queue, consulted when a lease is found past its deadline."""

    __slots__ = ("_lock", "renewers")

    def __init__(self) -> None:
        self.renewers: tuple[MemoryLeaseRenewer, ...] = ()
        self._lock = threading.Lock()  # opening and closing only, never the hot path

    def open(self, in_flight: dict[str, tuple[float, str]]) -> MemoryLeaseRenewer:
        renewer = MemoryLeaseRenewer(in_flight, self)
        with self._lock:
            self.renewers = (*self.renewers, renewer)
        return renewer

    def remove(self, renewer: MemoryLeaseRenewer) -> None:
        with self._lock:
            self.renewers = tuple(r for r in self.renewers if r is not renewer)

    def until(self, job_id: str, token: str, now: float) -> float | None:
        """Monotonic time a renewer keeps this lease until, if it keeps it past `now`."""
        for renewer in self.renewers:
            until, held = renewer.kept
            if until > now and held.get(job_id) == token:
                return until
        return None
