"""What the bare in-memory worker costs per job, deterministically: CPU instructions.

One child run = N no-op jobs enqueued on a `MemoryTaskQueue`, then drained by one
`TaskWorker` (concurrency 100, results in an `InMemoryResultStore`: the path of
``memory_drain.py``'s lexigram child); the process ends with ``os._exit`` as soon as
the N-th result is stored, so the worker's teardown is not counted. The parent runs
four children under callgrind (N = 12,000 and 2,000, with and without the drain) and
prints, per job, the instructions of the drain (enqueue subtracted) and of the enqueue.
Instruction counts do not move with the machine's load, so two trees can be compared
on a busy machine: point ``--python`` at another checkout's venv.

``--opcodes`` counts Python bytecodes per job instead (a ``sys.settrace`` opcode tracer
on the drain only, 4,500 minus 1,500 jobs) and lists the functions that execute most.

Usage:
    .venv/bin/python benchmarks/memory_drain_cost.py [--python OTHER/.venv/bin/python]
    .venv/bin/python benchmarks/memory_drain_cost.py --opcodes
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

import memory_drain

CONCURRENCY = 100


def _opcode_tracer(opcodes: collections.Counter[str]) -> Any:
    """A `sys.settrace` function counting the bytecodes each function executes."""

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        code = frame.f_code
        where = f"{Path(code.co_filename).name}:{code.co_name}"

        def count(frame: FrameType, event: str, arg: Any) -> Any:
            if event == "opcode":
                opcodes[where] += 1
            return count

        return count

    return trace


def _child(mode: str, jobs: int) -> None:
    """Enqueue `jobs` no-op jobs; unless `mode` is "enqueue", drain them; then exit."""
    opcodes: collections.Counter[str] = collections.Counter()
    trace = _opcode_tracer(opcodes)

    async def main() -> None:
        _, worker, done = await memory_drain.lexigram_drain(jobs, CONCURRENCY)
        if mode == "enqueue" or jobs == 0:
            os._exit(0)
        if mode == "opcodes":
            sys.settrace(trace)
        await worker.start()
        await done.wait()
        sys.settrace(None)
        if mode == "opcodes":
            print(f"TOTAL {sum(opcodes.values())}")
            for where, count in opcodes.most_common(40):
                print(f"{count} {where}")
        sys.stdout.flush()
        os._exit(0)

    asyncio.run(main())


def _instructions(python: str, mode: str, jobs: int) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "callgrind.out"
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        command += [python, __file__, "--child", mode, str(jobs)]
        subprocess.run(command, check=True, capture_output=True)  # noqa: S603
        found = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
        if found is None:
            msg = f"callgrind wrote no total for {mode} {jobs}"
            raise RuntimeError(msg)
        return int(found.group(1))


def _opcodes(python: str, jobs: int) -> tuple[int, dict[str, int]]:
    done = subprocess.run(  # noqa: S603
        [python, __file__, "--child", "opcodes", str(jobs)],
        check=True,
        capture_output=True,
        text=True,
    )
    lines = done.stdout.splitlines()
    per_function = {}
    for line in lines[1:]:
        count, where = line.split(" ", 1)
        per_function[where] = int(count)
    return int(lines[0].split()[1]), per_function


def main() -> None:
    """Run the children (under callgrind unless --opcodes) and print the per-job cost."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="the interpreter (venv) to run")
    parser.add_argument("--opcodes", action="store_true", help="count Python bytecodes instead")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]))
        return
    # Compiled bytecode on disk for every module, as users have it (and the same for
    # every child, so no child pays for compiling).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONHASHSEED"] = "0"  # the same dict layouts in every child
    subprocess.run([args.python, __file__, "--child", "enqueue", "10"], check=True)  # noqa: S603
    if args.opcodes:
        small, _ = _opcodes(args.python, 1_500)
        large, functions = _opcodes(args.python, 4_500)
        print(f"Python bytecodes per drained job: {(large - small) / 3_000:.0f}")
        print("(functions by bytecodes executed in the 4,500-job drain)")
        for where, count in list(functions.items())[:25]:
            print(f"  {count / 4_500:8.1f}  {where}")
        return
    started = time.perf_counter()
    drain_large = _instructions(args.python, "drain", 12_000)
    drain_small = _instructions(args.python, "drain", 2_000)
    enqueue_large = _instructions(args.python, "enqueue", 12_000)
    enqueue_small = _instructions(args.python, "enqueue", 2_000)
    drained = (drain_large - drain_small - (enqueue_large - enqueue_small)) / 10_000
    enqueued = (enqueue_large - enqueue_small) / 10_000
    print(f"interpreter: {args.python}")
    print(f"drain:   {drained:,.0f} instructions per job (12,000 - 2,000 jobs, enqueue subtracted)")
    print(f"enqueue: {enqueued:,.0f} instructions per job")
    print(f"({time.perf_counter() - started:.0f} s under callgrind)")


if __name__ == "__main__":
    main()
