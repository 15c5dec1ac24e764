"""One-line error reporting for the command line.

Every failure a user can cause (a bad APP, bad JSON, an unknown backend, a server that
does not answer, a config mistake) ends as ONE line on stderr saying what is wrong and
what to do, with exit code 2. A traceback is shown only with ``--debug`` (or
``LEXIGRAM_TASKS_DEBUG=1``); a bug of ours (an unexpected exception) exits 1 and says
how to get the traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

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


# Where `report_config_issues` logs the configuration's findings (lexigram.tasks.di._stack).
_FINDINGS_LOGGER = "lexigram.tasks.di._stack"


class BackendErrorHold(logging.Filter):
    """Holds back the logged findings that a configured backend cannot be built.

    `report_config_issues` logs what the configuration's checks find, for library users
    as much as for commands; a *blocking* finding (the backend's type is not installed,
    or its URL's scheme is served by none) is then raised by whoever builds that
    backend. A command that builds it ends with that error as its ``error:`` line, so the
    finding logged before would print the same problem twice. The ``error:`` line is the
    one kept: it is every command's one line for a user error (exit code 2), it names the
    variable a value came from, and a command whose logging is off prints it too.

    So while a command runs, a blocking finding is held instead of logged (`filter`),
    and `release` then drops it when the command's error repeats it, or logs it, where
    and as it would have been, in any other case: the command failed otherwise, or it
    goes on without building that backend (`release` runs as a command starts its event
    loop, and when it ends). Outside the command line nothing is held.
    """

    def __init__(self) -> None:
        super().__init__()
        self.held: list[tuple[logging.LogRecord, list[logging.Handler]]] = []

    def filter(self, record: logging.LogRecord) -> bool:
        """Hold a blocking finding (with the handlers it would reach now); pass the rest."""
        issue = getattr(record, "config_issue", None)
        if issue is None or not getattr(issue, "blocking", False):
            return True
        self.held.append((record, _handlers_of(record.name)))
        return False

    def release(self, error: BaseException | None = None) -> None:
        """Log the held findings, except those that `error`'s message repeats."""
        held, self.held = self.held, []
        said = message_for(error) if error is not None else ""
        for record, handlers in held:
            if said and _repeats(said, getattr(record, "config_issue", None)):
                continue
            for handler in handlers:
                if record.levelno >= handler.level:
                    handler.handle(record)


_hold: BackendErrorHold | None = None


@contextmanager
def holding_backend_errors() -> Iterator[BackendErrorHold]:
    """Hold blocking configuration findings while a command runs (see `BackendErrorHold`).

    The caller releases them, with the error that ended the command if one did.
    """
    global _hold  # noqa: PLW0603 - the running command's, for `release_held`
    hold = BackendErrorHold()
    findings = logging.getLogger(_FINDINGS_LOGGER)
    findings.addFilter(hold)
    outer, _hold = _hold, hold
    try:
        yield hold
    finally:
        _hold = outer
        findings.removeFilter(hold)
        hold.release()  # whatever the caller left: never lost


def release_held() -> None:
    """Log the findings held so far: the command goes on (it starts its event loop).

    A command raises a blocking finding as it resolves its backend, before it runs
    anything; one still held once it runs is about a backend it does not build.
    """
    if _hold is not None:
        _hold.release()


def _repeats(message: str, issue: object) -> bool:
    """Whether the command's error `message` reports `issue` (it names the same field)."""
    prefix = f"{getattr(issue, 'field', '')} = "
    return any(line.startswith(prefix) for line in message.splitlines())


def _handlers_of(name: str) -> list[logging.Handler]:
    """The handlers a record of logger `name` reaches now (as `Logger.callHandlers`)."""
    found: list[logging.Handler] = []
    logger: logging.Logger | None = logging.getLogger(name)
    while logger is not None:
        found.extend(logger.handlers)
        if not logger.propagate:
            break
        logger = logger.parent
    if not found and logging.lastResort is not None:
        found.append(logging.lastResort)
    return found


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
