"""One-line error reporting for the command line.

Every failure a user can cause (a bad APP, bad JSON, an unknown backend, a server that
does not answer, a config mistake) ends as ONE line on stderr saying what is wrong and
what to do, with exit code 2. A traceback is shown only with ``--debug`` (or
``LEXIGRAM_TASKS_DEBUG=1``); a bug of ours (an unexpected exception) exits 1 and says
how to get the traceback.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

import click

# Nothing of the library is imported here at module level: `lexigram-tasks --help` and
# the one-line error path load only click (the contracts come in when a message needs
# them; an error type of a module never imported cannot have been raised).

USAGE_EXIT_CODE = 2
"""Exit code of every user error: bad input, bad config, unreachable backend."""

BUG_EXIT_CODE = 1
"""Exit code of an unexpected exception (a bug, reported with a hint to use --debug)."""

INTERRUPTED_EXIT_CODE = 130
"""Exit code after Ctrl-C in a command that does not drain (shell convention), or after
a "no" to a confirmation."""

NO_ANSWER_MESSAGE = (
    "Could not read an answer to the confirmation (standard input ended). "
    "Pass --yes to go ahead without being asked."
)
"""What a command that asks for confirmation says when stdin has no answer to give."""

DEBUG_ENV_VAR = "LEXIGRAM_TASKS_DEBUG"
"""Environment variable that turns on ``--debug`` for every command."""


HARD_STOP_EXIT_CODE = 1
"""Exit code of a worker stopped by a second signal (running jobs were cancelled)."""


class HardStop(SystemExit):
    """Raised after a second signal, or with handler threads still running after a drain.

    `main` then exits without waiting for those threads (Python cannot stop them).
    """


class CLIError(Exception):
    """Raised for a user error that the CLI reports as one line with exit code 2.

    Args:
        message: What is wrong (with the offending value) and what to do, ending with a
            full stop.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def debug_requested(args: Sequence[str]) -> bool:
    """Return whether ``--debug`` is among `args` (before ``--``) or set in the environment."""
    if os.environ.get(DEBUG_ENV_VAR, "").strip().lower() in {"1", "true", "yes", "on"}:
        return True
    for arg in args:
        if arg == "--":
            return False
        if arg == "--debug":
            return True
    return False


def one_line(text: str) -> str:
    """Collapse `text` to one line with secrets masked (URLs keep host, lose password)."""
    from lexigram.contracts.tasks import mask_url  # noqa: PLC0415 - see the imports above

    return " ".join(mask_url(str(text)).split())


def message_for(exc: BaseException) -> str:
    """Return the user-facing message of a known error type, or "" for an unexpected one."""
    if isinstance(exc, CLIError):
        return exc.message
    # The shared operations' error; looked up, not imported, so that `--help` and
    # `worker` do not load them (an exception of a module never imported cannot occur).
    operations = sys.modules.get("lexigram.tasks.admin._errors")
    if operations is not None and isinstance(exc, operations.OperationError):
        return str(exc.message)
    errors = sys.modules.get("lexigram.contracts.tasks._errors")
    if errors is not None and isinstance(exc, errors.TaskQueueError):
        text = exc.message
        if exc.hint and exc.hint not in text:
            text = f"{text} {exc.hint}"
        # A config error lists one problem per line; keep the lines, mask each.
        return "\n".join(one_line(line) for line in text.splitlines() if line.strip())
    return ""


def _command_path(args: Sequence[str]) -> str:
    words = [arg for arg in args if not arg.startswith("-")][:2]
    sub = words[0] if words else ""
    return f"lexigram-tasks {sub}".strip()


def report(exc: BaseException, args: Sequence[str], *, debug: bool) -> int:
    """Print `exc` the CLI way and return the exit code to use.

    Args:
        exc: The exception that ended the command.
        args: The command-line arguments (to name the command in usage hints).
        debug: Print the traceback too.

    Returns:
        2 for user errors, 1 for unexpected exceptions.
    """
    if isinstance(exc, click.UsageError):
        command = exc.ctx.command_path if exc.ctx is not None else _command_path(args)
        text = one_line(exc.format_message()).rstrip(".")
        click.echo(f"error: {text}. Run '{command} --help' for usage.", err=True)
        return USAGE_EXIT_CODE
    message = message_for(exc)
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    if message:
        click.echo(f"error: {message}", err=True)
        return USAGE_EXIT_CODE
    detail = one_line(f"{type(exc).__name__}: {exc}").rstrip(".")
    advice = "Please report it" if debug else "Re-run with --debug for the traceback and report it"
    click.echo(f"error: unexpected {detail}. {advice} with the command you ran.", err=True)
    return BUG_EXIT_CODE


def aborted(exc: click.exceptions.Abort, args: Sequence[str], *, debug: bool) -> int:
    """Report a `click.Abort` and return the exit code to use.

    click raises `Abort` for a "no" to ``click.confirm(..., abort=True)``, for Ctrl-C and
    for the end of standard input while it waits for an answer (stdin a pipe, a file or
    ``/dev/null``, without ``--yes``). The first two print ``error: interrupted.`` and
    exit 130; the end of input is a usage error (one line, exit 2) telling to pass
    ``--yes``, for every command that asks.

    Args:
        exc: The `Abort` that ended the command.
        args: The command-line arguments (as for `report`).
        debug: Print the traceback too.
    """
    # click raises Abort "from None" in the `except EOFError` of its prompt: the EOFError
    # stays the Abort's context.
    if isinstance(exc.__context__, EOFError):
        click.echo()  # end the line of the prompt, which waited for an answer
        error = CLIError(NO_ANSWER_MESSAGE)
        error.__cause__ = exc
        return report(error, args, debug=debug)
    click.echo("error: interrupted.", err=True)
    return INTERRUPTED_EXIT_CODE
