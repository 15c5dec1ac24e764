"""`Prefetch`: the jobs a worker leases ahead of its free slots, and how many it may.

A worker that leased only as many jobs as it had free slots made every freed slot wait for
the next `dequeue_batch` round trip: when a round of jobs ends together, each slot stays
empty for that trip. So a worker also leases the jobs it expects to start within its
`prefetch_window` (`budget`): as many as it finished in its last window of that length.
Short jobs are held ahead and start as soon as a slot frees; long ones (a job held is a job
no other worker can take) are barely held, if at all.

Held jobs are `Running` entries in the worker's in-flight table with no task yet, so the
lease keeper and the heartbeat keep their leases like a running job's.
"""

from __future__ import annotations

from collections import deque

from lexigram.contracts.tasks import Job
from lexigram.tasks.execution._running import Running


class Prefetch:
    """The line of jobs held ahead of a worker's free slots, in the order they start.

    Args:
        in_flight: The worker's table of leased jobs (job id -> `Running`); held jobs
            are entered there too.
        slots: The worker's `max_concurrent_tasks`: the most jobs it holds ahead.
        window: Seconds of work to hold ahead (`prefetch_window`); 0 holds none.
    """

    __slots__ = ("_done_then", "_in_flight", "_then", "line", "rate", "slots", "window")

    def __init__(self, in_flight: dict[str, Running], slots: int, window: float) -> None:
        self._in_flight = in_flight
        self.line: deque[Running] = deque()
        self.slots = slots
        self.window = window
        self.rate = 0.0  # jobs finished per second over the last window measured
        self._then = 0.0  # loop time of the window's start, and jobs finished by then
        self._done_then = 0

    def budget(self, now: float, done: int) -> int:
        """How many jobs to hold: those expected to start within the window.

        The jobs the worker finished in its last whole window (measured at the worker's
        passes, from a count it keeps anyway: nothing per job), or in the time it took to
        finish `slots` jobs if that was shorter; at most `slots`, and none before either.

        Args:
            now: The loop's time.
            done: Jobs the worker has finished so far.
        """
        window = self.window
        elapsed = now - self._then
        finished = done - self._done_then
        # A whole window, or a slot's worth of jobs (a first round that ends together).
        if elapsed >= window or (finished >= self.slots and elapsed > 0.0):
            self.rate = finished / elapsed
            self._then = now
            self._done_then = done
        expected = self.rate * window
        return self.slots if expected >= self.slots else int(expected)

    def wanted(self, free: int, now: float, done: int) -> int:
        """How many jobs to lease now, with `free` slots that no job holds."""
        if not self.window:
            return free
        ahead = len(self.line)
        budget = self.budget(now, done)
        if free > 0:
            return free + budget - ahead
        # Full: top the line up in batches (once half of it has started), not a job at a
        # time, so that each refill is one round trip for many jobs.
        return budget - ahead if ahead * 2 <= budget else 0

    def hold(self, job: Job, now: float) -> None:
        """Hold a leased job until a slot frees."""
        entry = Running(job, now)
        self._in_flight[job.id] = entry
        self.line.append(entry)

    def drop(self, entry: Running) -> bool:
        """Take `entry` out of the line (it starts out of turn); False if it is not held."""
        try:
            self.line.remove(entry)
        except ValueError:
            return False
        return True

    def take_all(self) -> list[Job]:
        """Empty the line and the in-flight table of held jobs; their jobs (to give back)."""
        jobs: list[Job] = []
        while self.line:
            entry = self.line.popleft()
            if self._in_flight.get(entry.job.id) is entry:
                del self._in_flight[entry.job.id]
            jobs.append(entry.job)
        return jobs
