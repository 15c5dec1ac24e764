"""`ProgressTracker` (one job, written to a store) and `InMemoryProgressTracker` (pub/sub)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncGenerator
from typing import Any

from lexigram.contracts.tasks import (
    ProgressInfo,
    ProgressSnapshot,
    ProgressStatus,
    ProgressStoreProtocol,
    ProgressTrackerProtocol,
    ResultStoreProtocol,
    snapshot_from_result,
)

_TERMINAL = (ProgressStatus.COMPLETE, ProgressStatus.FAILED)


class ProgressTracker:
    """Track and report one job's progress; injected into task handlers.

    Each call updates the `info` snapshot (percentage and an ETA from the rate so far),
    saves it to the progress store, and, when a `ProgressTrackerProtocol` is attached,
    broadcasts it to that tracker's subscribers. An `async def` handler gets one by
    declaring a parameter annotated `ProgressTracker`; a `def` handler, which runs in a
    thread and cannot await, gets the blocking form, `SyncProgressTracker`.

    Args:
        job_id: The job whose progress this is.
        store: Where to save `ProgressInfo` (None keeps it in `info` only).
        tracker: A live tracker to broadcast snapshots to (optional).

    Example:
        async def export(rows: list[int], progress: ProgressTracker) -> None:
            for i, row in enumerate(rows, start=1):
                await write(row)
                await progress.update(i, len(rows), f"Row {i}")
    """

    def __init__(
        self,
        job_id: str,
        store: ProgressStoreProtocol | None = None,
        *,
        tracker: ProgressTrackerProtocol | None = None,
    ) -> None:
        self.job_id = job_id
        self.store = store
        self.tracker = tracker
        now = time.time()
        self._info = ProgressInfo(job_id=job_id, started_at=now, updated_at=now)
        self._finished = False

    def __repr__(self) -> str:
        return f"ProgressTracker(job_id={self.job_id!r}, percentage={self._info.percentage:.1f})"

    @property
    def info(self) -> ProgressInfo:
        """Return the current `ProgressInfo` snapshot."""
        return self._info

    @property
    def finished(self) -> bool:
        """True once `complete` or `fail` has been called."""
        return self._finished

    async def update(self, current: int, total: int, message: str = "", **metadata: Any) -> None:
        """Update progress; computes the percentage and the estimated time remaining.

        Args:
            current: Current progress count.
            total: Total items to process (0 = unknown).
            message: Human-readable status message.
            **metadata: Additional metadata merged into `info.metadata`.
        """
        info = self._info
        now = time.time()
        info.current = current
        info.total = total
        info.percentage = min(100.0, current / total * 100.0) if total > 0 else 0.0
        info.message = message
        info.updated_at = now
        info.estimated_remaining_seconds = _eta(info, now)
        info.metadata.update(metadata)
        info.metadata["status"] = ProgressStatus.RUNNING.value
        self._finished = False
        await self._save()
        if self.tracker is not None:
            await self.tracker.update(self.job_id, current, total, message)

    async def complete(self, message: str = "Complete") -> None:
        """Mark progress as complete: current = total, 100%, no time remaining."""
        info = self._info
        if info.total <= 0:
            info.total = max(info.current, 1)
        info.current = info.total
        info.percentage = 100.0
        info.message = message
        info.updated_at = time.time()
        info.estimated_remaining_seconds = 0.0
        info.metadata["status"] = ProgressStatus.COMPLETE.value
        self._finished = True
        await self._save()
        if self.tracker is not None:
            await self.tracker.complete(self.job_id, message)

    async def fail(self, message: str) -> None:
        """Mark progress as failed with `message`."""
        info = self._info
        info.message = message
        info.updated_at = time.time()
        info.estimated_remaining_seconds = None
        info.metadata["status"] = ProgressStatus.FAILED.value
        self._finished = True
        await self._save()
        if self.tracker is not None:
            await self.tracker.fail(self.job_id, message)

    async def _save(self) -> None:
        if self.store is not None:
            await self.store.save(self._info)


def _eta(info: ProgressInfo, now: float) -> float | None:
    if info.total <= 0 or info.current <= 0:
        return None
    if info.current >= info.total:
        return 0.0
    elapsed = now - info.started_at
    if elapsed <= 0:
        return None
    return (info.total - info.current) / (info.current / elapsed)


class InMemoryProgressTracker:
    """In-memory `ProgressTrackerProtocol`: latest snapshot per task plus live fan-out.

    Every `update`, `complete` or `fail` stores the new snapshot and puts it on the
    queue of each subscriber of that task; the state change and the fan-out happen
    without an await in between, so concurrent callers never interleave half-updates.
    A subscription ends when the task reaches COMPLETE or FAILED; subscribing after
    that yields the terminal snapshot once. Terminal snapshots of the most recent
    `max_finished` tasks are kept for late subscribers; older ones are forgotten.

    A worker publishes nothing for a job that never reported progress; with `results`
    set, `get` and `subscribe` answer for such a job from its stored result (see
    `snapshot_from_result`).

    Args:
        max_finished: Finished tasks whose terminal snapshot is kept.
        results: The result store the workers write to (optional).

    Example:
        tracker = InMemoryProgressTracker()
        async for snap in tracker.subscribe("job-42"):
            print(f"{snap.percent:.1f}% - {snap.message}")
    """

    def __init__(
        self, *, max_finished: int = 10000, results: ResultStoreProtocol | None = None
    ) -> None:
        self._max_finished = max_finished
        self._results = results
        self._snapshots: dict[str, ProgressSnapshot] = {}
        self._subscribers: dict[str, set[asyncio.Queue[ProgressSnapshot]]] = {}
        self._finished: deque[str] = deque()

    def __repr__(self) -> str:
        return f"InMemoryProgressTracker(tasks={len(self._snapshots)})"

    async def update(self, task_id: str, current: int, total: int, message: str = "") -> None:
        """Record incremental progress and broadcast it to all subscribers.

        Args:
            task_id: Unique identifier for the task.
            current: Units completed so far.
            total: Total units to process (0 means unknown).
            message: Optional human-readable status line.
        """
        self._publish(
            ProgressSnapshot(
                task_id=task_id,
                current=current,
                total=total,
                status=ProgressStatus.RUNNING,
                message=message,
            )
        )

    async def complete(self, task_id: str, result: str = "") -> None:
        """Mark a task as completed (current = total) and close all subscriptions.

        Args:
            task_id: Unique identifier for the task.
            result: Optional human-readable completion message.
        """
        previous = self._snapshots.get(task_id)
        total = previous.total if previous is not None else 0
        if total <= 0:
            total = previous.current if previous is not None else 0
        self._publish(
            ProgressSnapshot(
                task_id=task_id,
                current=total,
                total=total,
                status=ProgressStatus.COMPLETE,
                message=result,
            )
        )

    async def fail(self, task_id: str, error: str) -> None:
        """Mark a task as failed and close all subscriptions.

        Args:
            task_id: Unique identifier for the task.
            error: Description of the failure.
        """
        previous = self._snapshots.get(task_id)
        self._publish(
            ProgressSnapshot(
                task_id=task_id,
                current=previous.current if previous is not None else 0,
                total=previous.total if previous is not None else 0,
                status=ProgressStatus.FAILED,
                message=previous.message if previous is not None else "",
                error=error,
            )
        )

    async def get(self, task_id: str) -> ProgressSnapshot | None:
        """Return the most recent snapshot, or None if the task has not been seen.

        A task with no snapshot whose result is stored (see `results`) gets the
        terminal snapshot of that result.
        """
        found = self._snapshots.get(task_id)
        if found is None and self._results is not None:
            result = await self._results.get(task_id)
            if result is not None:
                return snapshot_from_result(task_id, result)
        return found

    async def subscribe(self, task_id: str) -> AsyncGenerator[ProgressSnapshot, None]:
        """Yield the task's current snapshot (if any), then one snapshot per change.

        Call it without await: ``async for snap in tracker.subscribe(task_id)``. The
        generator stops after yielding a COMPLETE or FAILED snapshot; if the task had
        already finished, that terminal snapshot is yielded once.

        Args:
            task_id: Unique identifier for the task to observe.

        Yields:
            Progress snapshots, ending with the terminal one.
        """
        current = self._snapshots.get(task_id)
        if current is not None and current.status in _TERMINAL:
            yield current
            return
        inbox: asyncio.Queue[ProgressSnapshot] = asyncio.Queue()
        self._subscribers.setdefault(task_id, set()).add(inbox)
        # Until the task publishes a snapshot, its stored result may end it instead (a
        # task that reports no progress publishes none).
        ended: asyncio.Future[ProgressSnapshot] | None = None
        if current is None and self._results is not None:
            ended = asyncio.ensure_future(self._ended(task_id))
        try:
            if current is not None:
                yield current
            while True:
                if ended is None:
                    snapshot = await inbox.get()
                else:
                    snapshot = await _first(inbox, ended)
                    if snapshot.status not in _TERMINAL:  # it reports progress itself
                        ended.cancel()
                        ended = None
                yield snapshot
                if snapshot.status in _TERMINAL:
                    return
        finally:
            if ended is not None:
                ended.cancel()
            self._unsubscribe(task_id, inbox)

    def _unsubscribe(self, task_id: str, inbox: asyncio.Queue[ProgressSnapshot]) -> None:
        subscribers = self._subscribers.get(task_id)
        if subscribers is not None:
            subscribers.discard(inbox)
            if not subscribers:
                del self._subscribers[task_id]

    async def _ended(self, task_id: str) -> ProgressSnapshot:
        """The terminal snapshot of `task_id`'s stored result, once there is one."""
        results = self._results
        while results is not None:
            result = await results.wait(task_id, timeout=3600.0)
            if result is not None:
                return snapshot_from_result(task_id, result)
        raise asyncio.CancelledError  # never reached: only started with a result store

    def _publish(self, snapshot: ProgressSnapshot) -> None:
        task_id = snapshot.task_id
        self._snapshots[task_id] = snapshot
        for inbox in self._subscribers.get(task_id, ()):
            inbox.put_nowait(snapshot)
        if snapshot.status in _TERMINAL:
            self._finished.append(task_id)
            self._forget_old()

    def _forget_old(self) -> None:
        while len(self._finished) > self._max_finished:
            task_id = self._finished.popleft()
            snapshot = self._snapshots.get(task_id)
            # The id may have been restarted since (a retried job): keep live state.
            if snapshot is not None and snapshot.status in _TERMINAL:
                del self._snapshots[task_id]


async def _first(
    inbox: asyncio.Queue[ProgressSnapshot], ended: asyncio.Future[ProgressSnapshot]
) -> ProgressSnapshot:
    """The next published snapshot or, if the result comes first, the result's one."""
    if not inbox.empty():
        return inbox.get_nowait()
    getter = asyncio.ensure_future(inbox.get())
    try:
        await asyncio.wait((getter, ended), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not getter.done():
            getter.cancel()
    if getter.done() and not getter.cancelled():
        return getter.result()
    return ended.result()
