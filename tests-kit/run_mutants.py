"""Measure the conformance kit: run it against the reference backend and every mutant.

    python tests-kit/run_mutants.py            # all mutants, two at a time
    python tests-kit/run_mutants.py --jobs 1 stale_ack sleep_loop_polling

The unmutated reference must pass the whole kit; each mutant (see `mutants.py`) must
make it fail. Each run is a pytest subprocess with ``KIT_MUTANT`` set, stopping at the
first failing test. Prints one row per run (mutant, caught, first failing test,
seconds) and exits 1 if the reference fails or any mutant survives.
"""

# ruff: noqa: INP001, T201 - a script run by path; printing its table is its job

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mutants import MUTANTS

HERE = Path(__file__).resolve().parent
TEST_MODULE = HERE / "test_reference_kit.py"
_FAILED = re.compile(r"^(?:FAILED|ERROR) \S+::(\w+)", re.MULTILINE)
_PASSED = re.compile(r"(\d+) passed")


@dataclass
class Outcome:
    """One kit run: which mutant, how pytest ended, what failed first, how long it took."""

    mutant: str
    returncode: int
    first_failure: str
    passed: int
    seconds: float

    @property
    def failed(self) -> bool:
        """True when pytest ran and some test failed (exit code 1)."""
        return self.returncode == 1


async def run_kit(mutant: str, *, stop_at_first: bool) -> Outcome:
    """Run the kit module in a subprocess with ``KIT_MUTANT=mutant``."""
    env = {**os.environ, "KIT_MUTANT": mutant}
    args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE"]
    if stop_at_first:
        args.append("-x")
    args.append(str(TEST_MODULE))
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *args,
        cwd=HERE.parent,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    failures = _FAILED.findall(text)
    passed = _PASSED.search(text)
    returncode = process.returncode if process.returncode is not None else -1
    if returncode not in (0, 1):  # a collection error or a crash is never counted as caught
        tail = [line for line in text.splitlines() if line.startswith("E ")][-3:]
        print(f"{mutant or 'reference'}: pytest exited {returncode}: {' / '.join(tail)}")
    return Outcome(
        mutant=mutant,
        returncode=returncode,
        first_failure=failures[0] if failures else "",
        passed=int(passed.group(1)) if passed else 0,
        seconds=time.monotonic() - started,
    )


async def run_all(names: list[str], jobs: int) -> list[Outcome]:
    """Run every mutant in `names`, `jobs` at a time, printing each row as it ends."""
    limit = asyncio.Semaphore(jobs)

    async def one(name: str) -> Outcome:
        async with limit:
            outcome = await run_kit(name, stop_at_first=True)
        caught = "yes" if outcome.failed else "NO" if outcome.returncode == 0 else "error"
        print(f"{name:<32} {caught:<7} {outcome.first_failure:<64} {outcome.seconds:6.1f}")
        return outcome

    return list(await asyncio.gather(*(one(name) for name in names)))


def main(argv: list[str] | None = None) -> int:
    """Run the reference, then the mutants; return the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="kit runs at once (default 2)")
    options = parser.parse_args(argv)
    unknown = sorted(set(options.names) - set(MUTANTS))
    if unknown:
        parser.error(f"unknown mutant(s) {unknown}; known: {', '.join(MUTANTS)}")
    names = options.names or list(MUTANTS)
    started = time.monotonic()
    reference = asyncio.run(run_kit("", stop_at_first=False))
    print(
        f"reference (unmutated): {reference.passed} passed, exit {reference.returncode}, "
        f"{reference.seconds:.1f}s"
    )
    if reference.returncode != 0:
        print(f"the unmutated reference fails the kit ({reference.first_failure})")
        return 1
    print(f"{'mutant':<32} {'caught':<7} {'first failing test':<64} {'secs':>6}")
    outcomes = asyncio.run(run_all(names, max(options.jobs, 1)))
    survivors = [outcome.mutant for outcome in outcomes if not outcome.failed]
    caught = len(outcomes) - len(survivors)
    errors = [outcome.mutant for outcome in outcomes if outcome.returncode not in (0, 1)]
    if errors:
        print(f"not run (pytest could not run the kit): {', '.join(errors)}")
    print(f"{caught} of {len(outcomes)} mutants caught; total {time.monotonic() - started:.0f}s")
    if survivors:
        print(f"survivors: {', '.join(survivors)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
