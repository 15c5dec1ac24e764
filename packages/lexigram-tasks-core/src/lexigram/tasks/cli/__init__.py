"""The ``lexigram-tasks`` command line: worker, scheduler, enqueue, inspect, dlq, demo.

``main`` is the console script's entry point (``lexigram-tasks = "lexigram.tasks.cli:main"``)
and ``cli`` the click group, for embedding or for click's test runner. Every user error
(a bad APP, bad JSON, an unknown backend, a server that does not answer) ends as one
line on stderr with exit code 2; ``--debug`` adds the traceback.

Example:
    $ lexigram-tasks demo
    $ lexigram-tasks worker myapp.tasks --backend redis://localhost:6379/0 --concurrency 50
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from lexigram.tasks.cli._errors import (
    CLIError,
    HardStop,
    aborted,
    debug_requested,
    holding_backend_errors,
    report,
)

# name -> (module, attribute, one-line help). Commands are imported when used, so that
# `worker` (and each supervised worker process) does not pay for the demo's imports.
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "worker": ("_worker", "worker_command", "Run task handlers on queues until stopped."),
    "scheduler": ("_scheduler", "scheduler_command", "Run the cron schedules of an APP."),
    "enqueue": ("_enqueue", "enqueue_command", "Enqueue a job and print its id."),
    "inspect": ("_inspect", "inspect_command", "Show queues, workers, schedules, DLQ size."),
    "schedule": ("_schedule", "schedule_group", "List, pause, resume, remove or run schedules."),
    "dlq": ("_dlq", "dlq_group", "List, show, retry or purge dead-lettered jobs."),
    "job": ("_job", "job_group", "Show a job's status or result, or wait for it."),
    "workflow": ("_workflow", "workflow_group", "Show a queue-driven workflow's steps."),
    "dashboard": ("_dashboard", "dashboard_command", "Serve the web dashboard (127.0.0.1)."),
    "demo": ("_demo", "demo_command", "See everything work in a few seconds (no setup)."),
}

EPILOG = """\b
Examples:
  lexigram-tasks demo                          see everything work, in memory
  lexigram-tasks worker myapp.tasks -b redis://localhost:6379/0
  lexigram-tasks enqueue send_email --args '["ada@example.com"]' -b redis://localhost:6379/0
  lexigram-tasks inspect -b redis://localhost:6379/0
  lexigram-tasks dlq list -b redis://localhost:6379/0

Configuration: --config app.yaml (its `tasks` section) and LEX_TASKS__* variables,
e.g. LEX_TASKS__BACKEND__TYPE=redis LEX_TASKS__BACKEND__URL=redis://localhost:6379/0.
"""


def _version_message() -> str:
    from lexigram.tasks import __version__  # noqa: PLC0415 - read when asked
    from lexigram.tasks._backends import available_backends  # noqa: PLC0415

    backends = ", ".join(available_backends()) or "none"
    python = ".".join(str(part) for part in sys.version_info[:3])
    return f"lexigram-tasks {__version__} (Python {python}; backends: {backends})"


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    del param
    if value and not ctx.resilient_parsing:
        click.echo(_version_message())
        ctx.exit()


class _Group(click.Group):
    """The root group: lazy subcommands; every error reported as one line (`_errors`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        del ctx
        return list(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        del ctx
        entry = _COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module, attribute, short_help = entry
        command: click.Command = getattr(
            importlib.import_module(f"lexigram.tasks.cli.{module}"), attribute
        )
        command.short_help = short_help
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The listing uses the one-line helps above: `--help` imports no command.
        del ctx
        with formatter.section("Commands"):
            formatter.write_dl([(name, entry[2]) for name, entry in _COMMANDS.items()])

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        # A finding that a backend cannot be built waits for the command's end: when
        # the command fails with it, its error line is the one report (not two).
        with holding_backend_errors() as held:
            try:
                result = super().main(
                    argv,
                    prog_name or "lexigram-tasks",
                    complete_var,
                    standalone_mode=False,
                    **extra,
                )
            except SystemExit:
                raise
            except click.exceptions.Abort as exc:
                held.release()
                code = aborted(exc, argv, debug=debug_requested(argv))
            except BaseException as exc:
                held.release(exc)
                code = report(exc, argv, debug=debug_requested(argv))
            else:
                code = result if isinstance(result, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


@click.group(
    "lexigram-tasks",
    cls=_Group,
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--version",
    "-V",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and the installed backends, and exit.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks for errors (any command).")
def cli(debug: bool) -> None:
    """Run and manage lexigram-tasks workers, schedules, queues and dead letters."""
    del debug  # read from the argument list by the error handler, before parsing


def main() -> None:
    """Entry point of the ``lexigram-tasks`` console script."""
    try:
        cli.main(prog_name="lexigram-tasks")
    except HardStop as stop:
        # After a second signal: do not wait for handler threads that ignore cancellation.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(stop.code if isinstance(stop.code, int) else 1)


__all__ = ["CLIError", "cli", "main"]
