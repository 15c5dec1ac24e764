"""Another process on the same SQLite file, driven line by line (run as a script, not collected).

Usage: python sqlite_peer.py PATH QUEUE. It opens the file, prints ``ready``, then for
each command line on stdin does one thing and prints one line:

- ``enqueue NAME`` enqueues a job and prints the epoch time taken just before;
- ``result JOB_ID`` stores a successful result for JOB_ID and prints the time;
- ``progress TASK_ID CURRENT TOTAL`` records progress (``done TASK_ID`` completes it);
- ``lock KEY`` takes the lock on KEY (``unlock KEY`` releases it) and prints the time;
- ``quit`` closes everything.
"""

from __future__ import annotations

import asyncio
import sys
import time

from lexigram.contracts.tasks import Job, JobResult
from lexigram.tasks.backends.sqlite import (
    SQLiteLockManager,
    SQLiteProgressTracker,
    SQLiteResultStore,
    SQLiteTaskQueue,
)


async def main(path: str, queue_name: str) -> None:
    queue = SQLiteTaskQueue(path, queue_name=queue_name)
    results = SQLiteResultStore(path)
    tracker = SQLiteProgressTracker(path)
    locks = SQLiteLockManager(path)
    held = {}
    await queue.count(queue_name)  # open the file before saying ready
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "quit":
            break
        command, args = line[0], line[1:]
        at = time.time()
        if command == "enqueue":
            await queue.enqueue(Job(name=args[0]))
        elif command == "result":
            await results.store(args[0], JobResult.ok(data="from the peer"))
        elif command == "progress":
            await tracker.update(args[0], int(args[1]), int(args[2]))
        elif command == "done":
            await tracker.complete(args[0])
        elif command == "lock":
            held[args[0]] = locks.acquire(args[0], timeout=30.0)
            assert await held[args[0]].acquire()
        elif command == "unlock":
            await held.pop(args[0]).release()
        sys.stdout.write(f"{at!r}\n")
        sys.stdout.flush()
    for closable in (queue, results, tracker, locks):
        await closable.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
