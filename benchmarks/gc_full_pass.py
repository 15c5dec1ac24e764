"""What one full pass of the cyclic collector costs in a RabbitMQ worker, with and without freezing.

Imports what the documented worker has loaded once it runs on RabbitMQ with Redis stores
(the CLI's worker, both backends and their clients), then makes ``--passes`` full
collections, after ``gc.freeze()`` when ``--frozen`` is given. Run it under callgrind
with 0 and with N passes: the difference divided by N is the instructions of one pass,
free of the machine's load (see README.md):

    valgrind --tool=callgrind --callgrind-out-file=/dev/null PYTHON gc_full_pass.py --passes 10

(PYTHON: the RabbitMQ benchmark environment's, ``benchmarks/.venv-rabbitmq/bin/python``.)
"""

from __future__ import annotations

import argparse
import gc


def main() -> None:
    """Load the worker's modules, then collect as asked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=0, help="full collections to make")
    parser.add_argument("--frozen", action="store_true", help="gc.freeze() first")
    args = parser.parse_args()
    # What the worker command imports on its way to running (imported here, not at the
    # top, so that the measured process is this list and nothing else).
    import aio_pika  # noqa: F401, PLC0415
    import redis.asyncio  # noqa: F401, PLC0415

    import lexigram.tasks.backends.rabbitmq  # noqa: PLC0415
    import lexigram.tasks.backends.redis  # noqa: PLC0415
    import lexigram.tasks.cli._runtime  # noqa: PLC0415
    import lexigram.tasks.cli._worker_run  # noqa: F401, PLC0415

    gc.collect()
    print(f"objects the collector tracks: {len(gc.get_objects())}")
    if args.frozen:
        gc.freeze()
    gc.disable()  # only the passes asked for
    for _ in range(args.passes):
        gc.collect()


if __name__ == "__main__":
    main()
