"""The demo on the memory backend: the README's first command, and a self-checking test."""

from __future__ import annotations

from click.testing import CliRunner

from lexigram.contracts.tasks import TaskBackendSpec
from lexigram.tasks.cli import cli
from lexigram.tasks.cli._demo import render_summary
from lexigram.tasks.cli._demo_report import DemoReport, DemoSettings
from lexigram.tasks.cli._demo_run import Demo, DemoView
from lexigram.tasks.cli._output import stdout_console


def test_demo_runs_on_memory_and_prints_the_summary() -> None:
    # Piped, with no width set (the workers of `pytest -n` run with COLUMNS=80).
    result = CliRunner().invoke(cli, ["demo"], env={"COLUMNS": None})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "lexigram-tasks demo on the memory backend" in out
    for row in (
        "Summary (memory",
        "jobs succeeded",
        "main batch",
        "priority (mean start)",
        "retried attempts",
        "dead-lettered (DLQ)",
        "progress reports",
        "3/3 reached 100 %",
        "cron (every second)",
        "rate-limited queue (5/s)",
        "workflow: chain",
        "workflow: group",
        "workflow: chord",
        "Dead letters",
        "MailboxUnavailableError",
        "export_legacy_csv",
    ):
        assert row in out, row
    assert "check failed" not in result.stderr

    # An installed package has no docs/cli.md: the last line points to the help.
    assert out.splitlines()[-1] == (
        "Next: lexigram-tasks worker --help to run your own tasks, "
        "lexigram-tasks --help for every command."
    )
    assert "docs/cli.md" not in out


async def test_demo_report_matches_a_correct_run() -> None:
    settings = DemoSettings(jobs=30, partners=4, cron_fires=1)
    report = await Demo(TaskBackendSpec(type="memory"), settings, DemoView()).run("memory")
    assert report.problems(settings) == []
    assert report.batch_size == 30
    assert len(report.dead_letters) == report.expected_dead_letters == 2
    assert {task for _, task, _ in report.dead_letters} == {"send_receipt", "export_legacy_csv"}
    assert report.retried >= report.expected_retries
    assert report.start_rank["high"] < report.start_rank["normal"] < report.start_rank["low"]
    assert set(report.reports) == {"sales-eu", "sales-us", "sales-apac"}
    assert report.results == report.expected_results
    assert [status for status, _ in report.workflows.values()] == ["completed"] * 3
    assert report.cron_fires >= 1


def test_demo_problems_name_what_went_wrong() -> None:
    settings = DemoSettings(reports=1, cron_fires=2)
    report = DemoReport(
        attempts=10,
        succeeded=9,
        retried=0,
        expected_dead_letters=1,
        expected_retries=2,
        reports={"sales-eu": 50.0},
        cron_fires=1,
        expected_results={"chain": 1.0},
        results={"chain": 2.0},
        start_rank={"high": 30.0, "normal": 10.0, "low": 20.0},
        partner_jobs=10,
        partner_seconds=0.1,
    )
    problems = "\n".join(report.problems(settings))
    assert "0 jobs were dead-lettered, expected 1" in problems
    assert "0 attempts were retried, expected 2" in problems
    assert "9 jobs succeeded, expected 10" in problems
    assert "did not all reach 100 %" in problems
    assert "the cron job ran 1 times, expected 2" in problems
    assert "workflow chain gave 2.0, not 1.0" in problems
    assert "did not start in priority order" in problems
    assert "faster than the 5/s limit allows" in problems


def test_demo_summary_renders_workflow_failures() -> None:
    report = DemoReport(backend="memory", elapsed=1.0, workflows={"chain": ("failed", "x")})
    console = stdout_console()
    with console.capture() as captured:
        console.print(render_summary(report))
    assert "workflow: chain" in captured.get()
    assert "failed" in captured.get()
