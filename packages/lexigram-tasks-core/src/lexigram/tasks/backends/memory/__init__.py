"""The in-memory backend: `MemoryTaskQueue` and the `backend` entry-point object.

Core registers it under the entry-point group ``lexigram.tasks.backends`` as
``memory = "lexigram.tasks.backends.memory:backend"``, the same way a third-party
backend registers itself. It offers only `create_queue`: core's in-memory stores are
what every backend without its own store factories gets anyway.

Files: ``_backend.py`` (the entry-point object), ``_options.py`` (its options),
``_queue.py`` (the queue) and the queue's parts: ``_jobs.py`` (a job's envelope, copy
and restored object), ``_idempotency.py`` (held keys), ``_wakeups.py`` (waiting
consumers), ``_cancellations.py`` (cancellation announcements), ``_lease_keeper.py``
(leases a worker's keeper thread renews). A memory queue has no connection and no
stores of its own.
"""

from __future__ import annotations

from lexigram.tasks.backends.memory._backend import MemoryBackend, backend, create_queue
from lexigram.tasks.backends.memory._options import MemoryOptions
from lexigram.tasks.backends.memory._queue import MemoryTaskQueue

__all__ = ["MemoryBackend", "MemoryOptions", "MemoryTaskQueue", "backend", "create_queue"]
