"""Options shared by several commands, and the JSON parameter type."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from lexigram.tasks.cli._output import LOG_FORMAT_ENV, LOG_FORMATS, LOG_LEVELS
from lexigram.tasks.constants import DEFAULT_CONNECT_TIMEOUT

F = TypeVar("F", bound=Callable[..., Any])

# click 8.2+ makes ParamType generic for type checkers; older releases cannot subscript it.
if TYPE_CHECKING:
    ParamBase = click.ParamType[Any, Any]
else:
    ParamBase = click.ParamType


class FiniteFloatRange(click.FloatRange):
    """A `click.FloatRange` that refuses ``nan`` and ``inf``.

    Both pass a plain range's bounds (a comparison with NaN is false), and then fail
    later with a message about something else: a delay of ``nan`` ran the job at once.
    """

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number. Give a number such as 1.5", param, ctx)
        return number


def _not_json(token: str) -> Any:
    msg = f"{token} is not a JSON number"
    raise ValueError(msg)


def _finite_float(token: str) -> float:
    number = float(token)
    if not math.isfinite(number):
        msg = f"{token} is out of a number's range"
        raise ValueError(msg)
    return number


def backend_option(func: F) -> F:
    """``--backend URL-or-type``."""
    return click.option(
        "--backend",
        "-b",
        metavar="URL|TYPE",
        help=(
            "Backend URL (its scheme picks the backend, e.g. redis://host:6379/0) or an "
            "installed backend's type name. Default: the config's backend."
        ),
    )(func)


def _non_empty_path(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    # An empty value (`--config "$UNSET"`) would read as "nothing configured" in some
    # commands and as the current directory in others: neither is what was asked.
    if value == "":
        msg = "is empty: give the path of a YAML config file, or leave the option out."
        raise click.BadParameter(msg, param=param)
    return value


def config_option(func: F) -> F:
    """``--config PATH`` (YAML; LEX_TASKS__* variables override it)."""
    return click.option(
        "--config",
        "config_path",
        metavar="PATH",
        type=click.Path(dir_okay=False),
        callback=_non_empty_path,
        help="YAML config file (its `tasks` section); LEX_TASKS__* variables override it.",
    )(func)


def connect_timeout_option(func: F) -> F:
    """``--connect-timeout SECONDS``."""
    return click.option(
        "--connect-timeout",
        type=FiniteFloatRange(min=0.1),
        default=DEFAULT_CONNECT_TIMEOUT,
        show_default=True,
        metavar="SECONDS",
        help=(
            "How long to wait for the backend's first answer before giving up (set as the "
            "backend's own connect timeout unless the config sets one)."
        ),
    )(func)


def debug_option(func: F) -> F:
    """``--debug``: tracebacks on errors, debug logging."""
    return click.option(
        "--debug",
        is_flag=True,
        help="Show tracebacks for errors and log at debug level.",
    )(func)


def log_level_option(default: str) -> Callable[[F], F]:
    """``--log-level LEVEL`` with the given default, and ``--log-format``."""

    def decorate(func: F) -> F:
        func = click.option(
            "--log-format",
            type=click.Choice(LOG_FORMATS, case_sensitive=False),
            default=None,
            expose_value=False,
            callback=_set_log_format,
            help="Log lines as rich text on a terminal and plain elsewhere (auto), "
            "always plain, or one JSON object per line (json). [default: auto]",
        )(func)
        return click.option(
            "--log-level",
            type=click.Choice(LOG_LEVELS, case_sensitive=False),
            default=default,
            show_default=True,
            help="Logging threshold (logs go to stderr).",
        )(func)

    return decorate


def _set_log_format(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Put ``--log-format`` in the environment for the command (and the processes it starts)."""
    del param
    if value is None:
        return
    previous = os.environ.get(LOG_FORMAT_ENV)
    os.environ[LOG_FORMAT_ENV] = value.lower()

    def restore() -> None:
        if previous is None:
            os.environ.pop(LOG_FORMAT_ENV, None)
        else:
            os.environ[LOG_FORMAT_ENV] = previous

    ctx.call_on_close(restore)


def json_option(func: F) -> F:
    """``--json``: machine-readable output."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of tables."
    )(func)


_STDIN_READER = "lexigram.tasks.stdin_reader"
"""`click.Context.meta` key: the parameter that reads standard input (``-``)."""


class JSONParam(ParamBase):
    """A JSON value of one expected shape (a list for ``--args``, an object for ``--kwargs``).

    The value is the JSON itself, ``@PATH`` for a file that holds it, or ``-`` to read it
    from standard input (argument lists too large for a command line).

    Args:
        expected: The Python type the JSON must decode to (`list` or `dict`).
        example: An example shown in the error message.
    """

    name = "json"

    def __init__(self, expected: type, example: str) -> None:
        self.expected = expected
        self.example = example

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Decode `value`, failing with a message that shows what was wrong and an example."""
        if isinstance(value, self.expected):
            return value
        what = "a JSON array" if self.expected is list else "a JSON object"
        text, source = self._read(str(value), param, ctx)
        try:
            # NaN, Infinity and numbers past a float's range are not JSON (Python's json
            # reads them anyway; the job's envelope would then refuse them as arguments).
            decoded = json.loads(text, parse_constant=_not_json, parse_float=_finite_float)
        except ValueError as exc:
            self.fail(
                f"{source} is not valid JSON ({exc}). Pass {what}, e.g. {self.example} "
                "(quote it for the shell), @FILE or - (standard input)",
                param,
                ctx,
            )
        if not isinstance(decoded, self.expected):
            self.fail(f"{source} is JSON but not {what}. Pass e.g. {self.example}", param, ctx)
        return decoded

    def _read(
        self, value: str, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, str]:
        """The JSON text of `value` (itself, a file's or stdin's) and how to name its source."""
        if value == "-":
            if ctx is not None:
                # Standard input can be read once: a second '-' would read nothing.
                this = param.opts[0] if param is not None and param.opts else "-"
                reader = ctx.meta.setdefault(_STDIN_READER, this)
                if reader != this:
                    self.fail(
                        f"standard input is read once, and {reader} reads it already. Give "
                        "one of them as '-' and the other inline or as @FILE",
                        param,
                        ctx,
                    )
            return sys.stdin.read(), "standard input"
        if not value.startswith("@"):
            return value, repr(value)
        path = value[1:]
        try:
            with open(path, encoding="utf-8") as file:  # noqa: PTH123 - a path from the user
                return file.read(), f"file {path!r}"
        except OSError as exc:
            self.fail(
                f"cannot read {path!r} ({exc.strerror or exc}). Check the path after @", param, ctx
            )
        except UnicodeDecodeError as exc:
            self.fail(
                f"file {path!r} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at "
                f"offset {exc.start}). Save it as UTF-8 JSON",
                param,
                ctx,
            )
