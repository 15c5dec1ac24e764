"""`ResultStore`: the abstract base of job result stores."""

from __future__ import annotations

from abc import ABC, abstractmethod

from lexigram.contracts.tasks import JobResult


class ResultStore(ABC):
    """Abstract result store backend (implements `ResultStoreProtocol`).

    A worker stores each job's final `JobResult` under the job id; callers read it with
    `get` or block on `wait` until it appears.
    """

    @abstractmethod
    async def store(self, job_id: str, result: JobResult) -> None:
        """Store a job result.

        Args:
            job_id: The job's id.
            result: Its outcome.
        """

    @abstractmethod
    async def get(self, job_id: str) -> JobResult | None:
        """Get a result by job id; None if not found or expired."""

    @abstractmethod
    async def delete(self, job_id: str) -> bool:
        """Delete a result; True if it existed."""

    @abstractmethod
    async def wait(
        self, job_id: str, *, timeout: float = 30.0, poll_interval: float = 0.5
    ) -> JobResult | None:
        """Wait up to `timeout` seconds for a result to appear.

        Args:
            job_id: The job's id.
            timeout: Longest wait in seconds.
            poll_interval: Seconds between checks, for stores that must poll.

        Returns:
            The result, or None when none appeared in time.
        """

    @abstractmethod
    async def cleanup_expired(self) -> int:
        """Remove expired results and return how many were removed."""

    @abstractmethod
    async def get_completed(self, limit: int | None = None) -> list[JobResult]:
        """Return stored successful results, newest first (at most `limit`)."""

    @abstractmethod
    async def get_failed(self, limit: int | None = None) -> list[JobResult]:
        """Return stored failed results, newest first (at most `limit`)."""
