"""Runs the fault-injection harness (``tests-chaos/run.py``) with small numbers.

Each test runs the harness as a subprocess, which starts its own broker on a free loopback
port in the test's temporary directory (never the shared services), and checks the harness's
one table: every row 0 lost, 0 unexplained duplicates, 0 stuck.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parents[2] / "tests-chaos" / "run.py"
ROW_FIELDS = 10  # backend, scenario, acked, lost, dup ok, dup bad, stuck, dlq, recovery, result


def _rows(output: str) -> dict[tuple[str, str], list[str]]:
    rows = {}
    for line in output.splitlines():
        cells = line.split()
        if len(cells) == ROW_FIELDS and cells[-1] in {"ok", "FAIL"}:
            rows[cells[0], cells[1]] = cells
    return rows


def _run_chaos(tmp_path: Path, backend: str, scenarios: str, jobs: int) -> None:
    command = [
        sys.executable, str(RUNNER), "--short", "--backends", backend, "--scenarios", scenarios,
        "--jobs", str(jobs), "--workdir", str(tmp_path),
    ]  # fmt: skip
    # Our interpreter on our own script, with arguments from this file.
    done = subprocess.run(command, capture_output=True, text=True, timeout=110, check=False)  # noqa: S603
    output = done.stdout + done.stderr
    rows = _rows(output)
    for scenario in scenarios.split(","):
        assert (backend, scenario) in rows, f"no {backend}/{scenario} row:\n{output}"
        _, _, acked, lost, _, dup_bad, stuck, _, _, result = rows[backend, scenario]
        assert int(acked) == jobs, output
        assert (lost, dup_bad, stuck, result) == ("0", "0", "0", "ok"), output
    assert done.returncode == 0, output


@pytest.fixture
def run_chaos(tmp_path: Path) -> Callable[[str, str, int], None]:
    """Run the harness on `backend` for the comma-separated `scenarios` with `jobs` jobs."""

    def run(backend: str, scenarios: str, jobs: int) -> None:
        _run_chaos(tmp_path, backend, scenarios, jobs)

    return run
