"""Terminal output: rich consoles, logging set-up, tables and JSON.

Interactive terminals get colour, live status lines and progress bars; pipes, files
and CI logs get plain lines (rich detects the difference, and ``NO_COLOR`` /
``TERM=dumb`` are honoured by rich itself), which are never wrapped or cut to fit a
width (see `stdout_console`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO, cast

import click

from lexigram.tasks._outage import CONNECTION_ERRORS, describe_failure

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
"""Values ``--log-level`` accepts."""

PLAIN_LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

LOG_FORMATS = ("auto", "plain", "json")
"""Values ``--log-format`` accepts: auto (rich on a terminal, plain lines otherwise)."""

LOG_FORMAT_ENV = "LEXIGRAM_TASKS_LOG_FORMAT"
"""Environment variable naming the log format (what ``--log-format`` sets, so the
worker processes a supervisor starts log the same way)."""

# Attributes every LogRecord has: the JSON formatter writes the others as fields.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, process, message, and the extras.

    ``process`` is ``host:pid``, the name `inspect` and the dashboard give the process
    (a worker id such as ``worker-1`` repeats in every process). Extras are what a
    caller passed as ``extra={...}`` (the worker's per-job lines carry ``task``,
    ``job_id``, ``attempt``, ``duration_ms``); an exception comes as ``exc_info`` (the
    formatted traceback). Values that are not JSON become their ``str``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._host = socket.gethostname()

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "process": f"{self._host}:{record.process}",
            "message": record.getMessage(),
        }
        data.update(
            (key, value)
            for key, value in vars(record).items()
            if key not in _RECORD_FIELDS and not key.startswith("_")
        )
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


# The client libraries whose own records about a lost connection carry a traceback (asyncpg's
# pool logs one each second while the server is away): the backends report the outage
# themselves, once, so those records keep one line.
_CLIENT_LOGGERS = frozenset(("asyncpg", "aio_pika", "aiormq", "redis"))


class OneLineClientOutages(logging.Formatter):
    """Formats with `inner`, a client library's lost-connection traceback as one line.

    A record from one of `_CLIENT_LOGGERS` whose exception is a `ConnectionError` or a
    `TimeoutError` is formatted from a copy that ends with ``(<ExceptionType>: <message>)``
    instead of the traceback; every other record goes to `inner` unchanged.
    """

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        exc = record.exc_info[1] if record.exc_info else None
        library = record.name.partition(".")[0]
        if isinstance(exc, CONNECTION_ERRORS) and library in _CLIENT_LOGGERS:
            fields = dict(vars(record), exc_info=None, exc_text=None, args=None)
            fields["msg"] = f"{record.getMessage()} ({describe_failure(exc)})"
            record = logging.makeLogRecord(fields)
        return self.inner.format(record)


# The handler this module installed, replaced (not stacked) when a command sets up again.
_installed: list[logging.Handler] = []
_DISCOVERY_LOGGER = "lexigram.tasks._backends"


# rich is imported only where it draws (tables, live status, log lines on a terminal):
# a worker whose stderr is a pipe or a file (a service, a container, a benchmark) never
# loads it, which is a good part of its start-up time.


PIPED_WIDTH = 10_000
"""Width of the stdout console when stdout is not a terminal (and ``COLUMNS`` is unset)."""

# Spaces that end a line: what rich pads a line with up to the console's width.
_LINE_END_SPACES = re.compile(r" +(?=\n)")


class _TrimmedLines:
    """A text stream writing to `stream` without the spaces that end each line.

    Rich pads some renderables (a traceback's `Syntax`) to the width it renders at: with
    `PIPED_WIDTH`, thousands of spaces a line. Every other attribute is the stream's own
    (encoding, fileno, isatty, flush).
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(_LINE_END_SPACES.sub("", text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def stdout_console() -> Console:
    """A console on the current stdout (looked up now, so test runners can capture it).

    On a terminal, rich's own: as wide as the terminal, wrapping what is longer. When
    stdout is a pipe or a file (``| grep``, ``> out.txt``) nothing is wrapped or cut to
    a width, so an id or a line stays whole for the next program: lines are as long as
    their text (rich's soft wrap, which also keeps a table's title on one line) and
    tables as wide as their cells (up to `PIPED_WIDTH` columns), without trailing
    spaces. An explicit ``COLUMNS`` keeps its width (and wrapping) there too.
    """
    from rich.console import Console  # noqa: PLC0415 - see above

    console = Console(file=sys.stdout, soft_wrap=False)
    if console.is_terminal or os.environ.get("COLUMNS", "").isdigit():
        return console
    trimmed = cast("TextIO", _TrimmedLines(sys.stdout))
    return Console(file=trimmed, width=PIPED_WIDTH, soft_wrap=True)


def stderr_console() -> Console:
    """A console on the current stderr."""
    from rich.console import Console  # noqa: PLC0415 - see above

    return Console(file=sys.stderr, soft_wrap=False)


def may_be_terminal(stream: TextIO) -> bool:
    """Whether rich could treat `stream` as a terminal (False means it certainly would not).

    rich calls a stream a terminal when it is a TTY or when ``TTY_COMPATIBLE`` or
    ``FORCE_COLOR`` says so; with none of these it never does. Only when this returns
    True is rich loaded to decide, so the answer stays rich's own.
    """
    if os.environ.get("TTY_COMPATIBLE") is not None or os.environ.get("FORCE_COLOR") is not None:
        return True
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except ValueError:  # a closed stream, as rich treats it
        return False


def terminal_console() -> Console | None:
    """A console on stderr when it is a terminal (as rich sees it), else None."""
    if not may_be_terminal(sys.stderr):
        return None
    console = stderr_console()
    return console if console.is_terminal else None


def setup_logging(level: str, console: Console | None = None) -> None:
    """Send log records to stderr: through rich on a terminal, as plain lines otherwise.

    ``LEXIGRAM_TASKS_LOG_FORMAT`` (set by ``--log-format``) chooses: ``json`` writes one
    JSON object per record, ``plain`` plain lines even on a terminal.

    The previous logging set-up comes back when the command ends (its click context
    closes), so a program that runs commands in-process (tests, embedding) keeps its own.

    Args:
        level: One of `LOG_LEVELS`.
        console: The console a live display uses, so log lines print above it.
    """
    root = logging.getLogger()
    discovery = logging.getLogger(_DISCOVERY_LOGGER)
    for old in _installed:
        root.removeHandler(old)
    _installed.clear()
    log_format = os.environ.get(LOG_FORMAT_ENV, "auto").lower()
    if console is None and log_format == "auto":
        console = terminal_console()
    stream = console.file if console is not None else sys.stderr
    handler: logging.Handler
    if log_format == "json":
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonLogFormatter())
    elif console is not None and console.is_terminal and log_format != "plain":
        from rich.logging import RichHandler  # noqa: PLC0415 - a terminal only

        handler = RichHandler(console=console, show_path=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter(PLAIN_LOG_FORMAT))
    handler.setFormatter(OneLineClientOutages(handler.formatter or logging.Formatter()))
    previous = (root.level, discovery.level)
    _installed.append(handler)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Discovery says "using the in-memory version" for each store a backend lacks; the
    # commands report what they use themselves, so that is noise unless debugging.
    discovery.setLevel(logging.DEBUG if level.lower() == "debug" else logging.WARNING)

    def restore() -> None:
        root.removeHandler(handler)
        if handler in _installed:
            _installed.remove(handler)
        root.setLevel(previous[0])
        discovery.setLevel(previous[1])

    context = click.get_current_context(silent=True)
    if context is not None:
        context.call_on_close(restore)


def echo_json(data: Any) -> None:
    """Print `data` as indented JSON on stdout (for scripts: no colour, no wrapping)."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """Build a rich table with `columns` (numeric-looking columns are right-aligned)."""
    from rich.table import Table  # noqa: PLC0415 - see stdout_console

    result = Table(title=title, title_justify="left", header_style="bold")
    materialised = [[_cell(value) for value in row] for row in rows]
    for index, name in enumerate(columns):
        numeric = bool(materialised) and all(
            _looks_numeric(row[index]) for row in materialised if index < len(row)
        )
        result.add_column(name, justify="right" if numeric else "left")
    for row in materialised:
        result.add_row(*row)
    return result


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def _looks_numeric(text: str) -> bool:
    return text.replace(",", "").replace(".", "").replace("-", "").replace("%", "").isdigit()


def when(timestamp: float | None) -> str:
    """Format an epoch time as local ``YYYY-MM-DD HH:MM:SS`` plus how long ago."""
    if not timestamp:
        return "-"
    moment = datetime.fromtimestamp(timestamp, tz=UTC).astimezone()
    return f"{moment:%Y-%m-%d %H:%M:%S} ({ago(timestamp)})"


def ago(timestamp: float) -> str:
    """Say how long ago (or how far ahead) `timestamp` is, e.g. ``3m ago``, ``in 12s``."""
    delta = time.time() - timestamp
    future = delta < 0
    seconds = abs(delta)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            text = f"{int(seconds // size)}{unit}"
            break
    else:
        text = f"{int(seconds)}s"
    return f"in {text}" if future else f"{text} ago"


def mapping_rows(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Key/value rows for a two-column detail table."""
    return [(key, _cell(value)) for key, value in data.items()]
