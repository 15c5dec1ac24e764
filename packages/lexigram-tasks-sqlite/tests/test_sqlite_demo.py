"""`lexigram-tasks demo` on a SQLite file: it checks itself, so exit code 0 is a pass."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from lexigram.tasks.cli import cli

SUMMARY_ROWS = (
    "jobs succeeded",
    "dead-lettered (DLQ)",
    "3/3 reached 100 %",
    "cron (every second)",
    "rate-limited queue (5/s)",
    "workflow: chord",
)


def test_demo_on_sqlite_runs_and_leaves_no_job(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/demo.db"
    result = CliRunner().invoke(cli, ["demo", "--backend", url])
    assert result.exit_code == 0, result.output
    assert "check failed" not in result.stderr
    assert "on the sqlite" in result.stdout
    for row in SUMMARY_ROWS:
        assert row in result.stdout, row
    found = re.search(r"Queues (lexigram-demo-[0-9a-f]{8}),", result.stdout)
    assert found is not None, result.stdout
    queue = found.group(1)
    names = [queue, f"{queue}-reports", f"{queue}-partners"]
    args = ["inspect", "--backend", url, "--json"] + [a for n in names for a in ("-q", n)]
    inspected = CliRunner().invoke(cli, args)
    assert inspected.exit_code == 0, inspected.output
    assert [q["total"] for q in json.loads(inspected.stdout)["queues"]] == [0, 0, 0]
