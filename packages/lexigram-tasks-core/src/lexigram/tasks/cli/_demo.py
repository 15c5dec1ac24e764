"""``lexigram-tasks demo``: the whole product in one process, in a few seconds.

With no options it runs on the embedded memory backend (nothing to set up); with
``--backend redis://...`` (or ``postgresql://``, ``amqp://``) the very same run goes
through that server, on queues of its own that are cleaned up afterwards.
"""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console, Group
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from lexigram.tasks.cli._context import describe, load_config, resolve_spec
from lexigram.tasks.cli._demo_report import PARTNER_RATE, DemoReport, DemoSettings
from lexigram.tasks.cli._demo_run import Demo, DemoView
from lexigram.tasks.cli._event_loop import run_async
from lexigram.tasks.cli._options import (
    backend_option,
    config_option,
    connect_timeout_option,
    debug_option,
)
from lexigram.tasks.cli._output import setup_logging, stdout_console

EPILOG = """\b
Examples:
  lexigram-tasks demo                                   # in memory, nothing to set up
  lexigram-tasks demo --backend redis://localhost:6379/0
  lexigram-tasks demo --backend postgresql://localhost/app --jobs 200
  lexigram-tasks demo --backend amqp://guest:guest@localhost:5672/
"""


class _PlainView(DemoView):
    """Stage lines only: for pipes, files and CI logs."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def stage(self, text: str) -> None:
        self.console.print(f"demo: {text}", highlight=False)


class _LiveView(DemoView):
    """Progress bars on a terminal, driven by the demo's events and progress updates."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description:<34}"),
            BarColumn(bar_width=32),
            MofNCompleteColumn(),
            TextColumn("{task.percentage:>5.0f}%"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._bars: dict[str, TaskID] = {}

    def __enter__(self) -> _LiveView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def stage(self, text: str) -> None:
        self.progress.console.print(f"[dim]>[/dim] {text}", highlight=False)

    def add_bar(self, key: str, label: str, total: int) -> None:
        self._bars[key] = self.progress.add_task(label, total=total)

    def update_bar(self, key: str, completed: float, total: float | None = None) -> None:
        bar = self._bars.get(key)
        if bar is None:
            return
        if total is not None:
            self.progress.update(bar, completed=completed, total=total)
        else:
            self.progress.update(bar, completed=completed)


@click.command("demo", epilog=EPILOG)
@backend_option
@click.option(
    "--jobs",
    "-n",
    type=click.IntRange(min=10, max=5000),
    default=60,
    show_default=True,
    help="Jobs in the main batch.",
)
@config_option
@connect_timeout_option
@debug_option
def demo_command(
    *,
    backend: str | None,
    jobs: int,
    config_path: str | None,
    connect_timeout: float,
    debug: bool,
) -> None:
    """Run a small shop's background tasks and summarise what happened.

    A batch of jobs with priorities (a few fail: some are retried, some dead-lettered),
    reports with live progress bars, a cron job firing every second, a chain / group /
    chord workflow and a rate-limited queue: all on one backend, in about five seconds.
    """
    setup_logging("debug" if debug else "critical")
    config = load_config(config_path) if config_path else _default_config()
    spec = resolve_spec(config, backend, connect_timeout=connect_timeout)
    console = stdout_console()
    label = describe(spec)
    console.print(f"[bold]lexigram-tasks demo[/bold] on the [cyan]{label}[/cyan] backend")
    settings = DemoSettings(jobs=jobs)
    if console.is_terminal:
        with _LiveView(console) as view:
            report = run_async(Demo(spec, settings, view, connect_timeout).run(label))
    else:
        report = run_async(Demo(spec, settings, _PlainView(console), connect_timeout).run(label))
    console.print(render_summary(report))
    problems = report.problems(settings)
    if problems:
        for problem in problems:
            click.echo(f"demo: check failed: {problem}.", err=True)
        raise SystemExit(1)


def _default_config() -> Any:
    from lexigram.tasks.config import TaskConfig  # noqa: PLC0415 - only when no file is given

    # The demo ignores LEX_TASKS__* on purpose: it must run anywhere with no setup.
    return TaskConfig()


def render_summary(report: DemoReport) -> Group:
    """The summary table, the dead letters, and what to try next."""
    executed = report.attempts
    rate = executed / report.elapsed if report.elapsed else 0.0
    batch_rate = report.batch_size / report.batch_seconds if report.batch_seconds else 0.0
    summary = Table(title=f"Summary ({report.backend}, {report.elapsed:.1f} s)", show_header=False)
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("jobs succeeded", f"{report.succeeded}")
    summary.add_row("executions", f"{executed} ({rate:.0f}/s overall)")
    summary.add_row(
        "main batch",
        f"{report.batch_size} jobs in {report.batch_seconds:.2f} s ({batch_rate:.0f} jobs/s)",
    )
    if report.start_rank:
        order = "  ".join(
            f"{name} #{rank:.0f}"
            for name, rank in sorted(report.start_rank.items(), key=lambda item: item[1])
        )
        summary.add_row("priority (mean start)", order)
    summary.add_row("retried attempts", f"{report.retried}")
    summary.add_row("dead-lettered (DLQ)", f"{len(report.dead_letters)}")
    if report.reports:
        done = sum(1 for p in report.reports.values() if p >= 100.0)  # noqa: PLR2004
        summary.add_row("progress reports", f"{done}/{len(report.reports)} reached 100 %")
    summary.add_row("cron (every second)", f"{report.cron_fires} runs")
    if report.partner_jobs:
        observed = report.partner_jobs / report.partner_seconds if report.partner_seconds else 0.0
        summary.add_row(
            f"rate-limited queue ({PARTNER_RATE}/s)",
            f"{report.partner_jobs} jobs in {report.partner_seconds:.1f} s ({observed:.1f}/s)",
        )
    for name, (status, result) in report.workflows.items():
        mark = "[green]✓[/green]" if status == "completed" else "[red]✗[/red]"
        summary.add_row(f"workflow: {name}", f"{mark} {status}: {_short(result, 60)}")
    parts: list[Any] = [summary]
    if report.dead_letters:
        dead = Table(title="Dead letters", title_justify="left", header_style="bold")
        dead.add_column("job")
        dead.add_column("task")
        dead.add_column("error")
        for job_id, task, error in report.dead_letters:
            # The whole id: time-ordered ids of one run share their first characters.
            dead.add_row(job_id, task, _short(error, 80))
        parts.append(dead)
    parts.append(
        Text.from_markup(
            "Next: [bold]lexigram-tasks worker --help[/bold] to run your own tasks, "
            "[bold]lexigram-tasks --help[/bold] for every command."
        )
    )
    return Group(*parts)


def _short(value: Any, width: int = 48) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"
