"""`CronExpression`: cron parsing and iteration on croniter, in a chosen timezone.

Expressions have five fields (minute hour day-of-month month day-of-week), six (a
leading *seconds* field, as in Quartz and Spring: ``"*/10 * * * * *"`` fires every ten
seconds) or seven (leading seconds and a trailing year). The aliases ``@yearly``,
``@annually``, ``@monthly``, ``@weekly``, ``@daily``, ``@midnight`` and ``@hourly`` are
accepted too.

croniter is imported when the first expression is built, not when this module is
imported, so ``import lexigram.tasks`` works without it.
"""

from __future__ import annotations

import importlib
import re
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from lexigram.tasks._timezone import resolve_timezone

if TYPE_CHECKING:
    from types import ModuleType

_INSTALL_HINT: Final = 'pip install "lexigram-tasks-core[cron]"'

_ALIASES: Final = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)

_MONTHS: Final = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
_WEEKDAYS: Final = {
    name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}


class _Field:
    __slots__ = ("high", "low", "name", "names")

    def __init__(self, name: str, low: int, high: int, names: dict[str, int] | None = None) -> None:
        self.name = name
        self.low = low
        self.high = high
        self.names = names or {}


_SECOND = _Field("second", 0, 59)
_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DAY = _Field("day-of-month", 1, 31)
_MONTH = _Field("month", 1, 12, _MONTHS)
# 7 is Sunday as well as 0, as in Vixie cron.
_WEEKDAY = _Field("day-of-week", 0, 7, _WEEKDAYS)
_YEAR = _Field("year", 1970, 2099)

_LAYOUTS: Final = {
    5: (_MINUTE, _HOUR, _DAY, _MONTH, _WEEKDAY),
    6: (_SECOND, _MINUTE, _HOUR, _DAY, _MONTH, _WEEKDAY),
    7: (_SECOND, _MINUTE, _HOUR, _DAY, _MONTH, _WEEKDAY, _YEAR),
}

_USAGE: Final = (
    "Use five fields (minute hour day-of-month month day-of-week), e.g. '*/5 * * * *', "
    "or six with a leading seconds field, e.g. '*/10 * * * * *'."
)

# Extensions croniter understands that this module does not range-check itself:
# 'L' (last), 'W' (nearest weekday), '#' (nth weekday) and 'H' (hashed values).
_EXTENSION: Final = re.compile(r"[lwh#]", re.IGNORECASE)


def load_croniter() -> ModuleType:
    """Import croniter, or raise `ImportError` with the command that installs it.

    Returns:
        The imported ``croniter`` module.

    Raises:
        ImportError: croniter is not installed.
    """
    try:
        return importlib.import_module("croniter")
    except ImportError as exc:
        msg = (
            "Cron scheduling needs the croniter package, which is not installed. "
            f"Install it with: {_INSTALL_HINT} (the lexigram-tasks distribution installs it "
            "by default)."
        )
        raise ImportError(msg, name="croniter") from exc


def _invalid(expression: str, reason: str) -> ValueError:
    return ValueError(f"Cron expression {expression!r} is invalid: {reason}. {_USAGE}")


_AFTER, _BEFORE = "after", "before"


class NoOccurrenceError(ValueError):
    """A cron expression has no occurrence left in the direction asked.

    What an expression with a year field (a one-off, ``"0 0 12 1 1 * 2030"``) gives once
    its last year has passed, or before its first.
    """


def _never_matches(expression: str) -> ValueError:
    return ValueError(
        f"Cron expression {expression!r} never matches a date (such as day 30 or 31 of a "
        "month that has none). Choose a day that month has, or another month."
    )


# The most days each month has (February's leap day included).
_MONTH_DAYS: Final = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _plain_values(text: str, spec: _Field) -> set[int] | None:
    """The values of a field made of numbers, names and ranges; None for anything else.

    Steps, wildcards, ranges that wrap around (``nov-feb``) and croniter's extensions
    give None: only a plain list is judged here, the rest is croniter's (see
    `CronExpression.__init__`).
    """
    values: set[int] = set()
    for part in text.lower().split(","):
        low, dash, high = part.partition("-")
        first = spec.names.get(low, int(low) if low.isdigit() else -1)
        last = spec.names.get(high, int(high) if high.isdigit() else -1) if dash else first
        if first < 0 or last < first:
            return None
        values.update(range(first, last + 1))
    return values


def _has_a_date(fields: tuple[str, ...]) -> bool:
    """False when the day-of-month and month fields name no day any month has.

    Only a day-of-week of any day (``*`` or ``?``) leaves the day to the day-of-month
    field alone; otherwise cron runs on either, and some weekday always comes.
    """
    layout = _LAYOUTS[len(fields)]
    by_name = {spec.name: text for spec, text in zip(layout, fields, strict=True)}
    if by_name[_WEEKDAY.name] not in ("*", "?"):
        return True
    days = _plain_values(by_name[_DAY.name], _DAY)
    if days is None:
        return True
    months = _plain_values(by_name[_MONTH.name], _MONTH) or range(1, 13)
    return any(min(days) <= _MONTH_DAYS[month - 1] for month in months)


def _check_value(expression: str, spec: _Field, token: str, part: str) -> None:
    if token.lower() in spec.names:
        return
    if not token.isdigit():
        if token and _EXTENSION.search(token):
            return  # croniter validates its extensions itself (see `CronExpression.__init__`)
        shown = f"{part!r}" if token == part else f"{part!r} has {token!r}, which"
        reason = f"{spec.name} field {shown} is not a number"
        if spec.names:
            reason += " or a name such as " + repr(next(iter(spec.names)))
        raise _invalid(expression, reason)
    value = int(token)
    if not spec.low <= value <= spec.high:
        reason = f"{spec.name} field {part!r} is out of range {spec.low}-{spec.high}"
        raise _invalid(expression, reason)


def _check_part(expression: str, spec: _Field, part: str) -> None:
    base, slash, step = part.partition("/")
    if slash and (not step.isdigit() or int(step) == 0):
        reason = f"{spec.name} field {part!r} has step {step!r}; a step is a whole number >= 1"
        raise _invalid(expression, reason)
    if base in ("*", "?"):
        if base == "?" and spec not in (_DAY, _WEEKDAY):
            reason = f"{spec.name} field {part!r}: '?' is only allowed in day fields"
            raise _invalid(expression, reason)
        return
    if not base:
        raise _invalid(expression, f"{spec.name} field {part!r} is empty")
    if base[0] in "hH":
        return  # hashed values ('H', 'H(0-29)') are croniter's to check
    low, dash, high = base.partition("-")
    _check_value(expression, spec, low, part)
    if dash:
        _check_value(expression, spec, high, part)


def validate_cron(expression: str) -> tuple[str, ...]:
    """Check an expression field by field and return its fields.

    Args:
        expression: The cron expression.

    Returns:
        The whitespace-separated fields (or the alias, alone).

    Raises:
        ValueError: The expression is malformed (the message names the bad field and
            value), or its day and month fields name no date (30 February).
    """
    if not expression.strip():
        msg = f"Cron expression {expression!r} is empty. {_USAGE}"
        raise ValueError(msg)
    fields = tuple(expression.split())
    if len(fields) == 1 and fields[0].lower() in _ALIASES:
        return fields
    layout = _LAYOUTS.get(len(fields))
    if layout is None:
        reason = (
            f"it has {len(fields)} field(s), expected 5, 6 (leading seconds) or 7 "
            "(leading seconds, trailing year)"
        )
        raise _invalid(expression, reason)
    for spec, text in zip(layout, fields, strict=True):
        for part in text.split(","):
            _check_part(expression, spec, part)
    if not _has_a_date(fields):
        raise _never_matches(expression)
    return fields


class CronExpression:
    """Wrapper for cron expression parsing, on croniter, in a given timezone.

    Fire times are computed as wall-clock times in `timezone` (daylight-saving changes
    included) and returned as Unix timestamps.

    Example:
        cron = CronExpression("0 9 * * 1-5")  # Weekdays at 9am
        next_run = cron.get_next()

    Args:
        expression: Cron expression string (5 fields, 6 with leading seconds, or an alias).
        timezone: IANA timezone the expression is evaluated in.

    Raises:
        ImportError: croniter is not installed.
        ValueError: The expression or the timezone is invalid.
    """

    __slots__ = ("_croniter", "_fixed_time", "_tz", "expression", "timezone")

    def __init__(self, expression: str, *, timezone: str = "UTC") -> None:
        module = load_croniter()
        fields = validate_cron(expression)
        self.expression = " ".join(fields)
        self.timezone = timezone
        self._tz = resolve_timezone(timezone)
        self._croniter: Any = module.croniter
        # A time of day (no '*' in its second, minute and hour fields) happens once a day:
        # in the hour a daylight-saving change repeats, its second pass is skipped, as
        # cron does. A schedule that repeats within the hour runs through both passes.
        # Its second (when given), minute and hour: the fields before the day of the month;
        # an alias (@hourly, @daily...) counts as repeating.
        clock = fields[: _LAYOUTS[len(fields)].index(_DAY)] if len(fields) in _LAYOUTS else ("*",)
        self._fixed_time = not any(field.startswith("*") for field in clock)
        try:
            # Building one iterator makes croniter check what `validate_cron` let through
            # (L, W, #, H extensions, impossible dates such as 30 February).
            self._iterator(time.time()).get_next(float)
        except (ValueError, KeyError, TypeError) as exc:
            if "failed to find next date" in str(exc):
                # Well formed, but no date matches from now (a case `validate_cron`
                # cannot judge, such as 'L' or a year field). A one-off whose moment has
                # passed had one: it is a spent schedule, not a wrong expression.
                if self._had_one():
                    return
                raise _never_matches(expression) from exc
            msg = f"Cron expression {expression!r} is invalid: {exc}. {_USAGE}"
            raise ValueError(msg) from exc

    def _had_one(self) -> bool:
        """Whether the expression matched a moment before now."""
        try:
            self._iterator(time.time()).get_prev(float)
        except (ValueError, KeyError, TypeError):
            return False
        return True

    def _iterator(self, base_time: float) -> Any:
        start = datetime.fromtimestamp(base_time, tz=self._tz)
        return self._croniter(self.expression, start, second_at_beginning=True)

    def get_next(self, base_time: float | None = None) -> float:
        """Get the next execution time strictly after `base_time`.

        Args:
            base_time: Base time as a Unix timestamp (defaults to the current time).

        Returns:
            The next fire time as a Unix timestamp.

        Raises:
            NoOccurrenceError: None is left (a year field whose last year has passed).
        """
        return self._step(base_time, _AFTER)

    def get_prev(self, base_time: float | None = None) -> float:
        """Get the previous execution time strictly before `base_time`.

        Args:
            base_time: Base time as a Unix timestamp (defaults to the current time).

        Returns:
            The previous fire time as a Unix timestamp.

        Raises:
            NoOccurrenceError: There is none before `base_time`.
        """
        return self._step(base_time, _BEFORE)

    def _step(self, base_time: float | None, direction: str) -> float:
        """The occurrence next to `base_time` in `direction`, second passes skipped."""
        base = time.time() if base_time is None else base_time
        iterator = self._iterator(base)
        advance = iterator.get_next if direction == _AFTER else iterator.get_prev
        try:
            moment = float(advance(float))
            while self._second_pass(moment):
                moment = float(advance(float))
        except ValueError as exc:  # croniter's CroniterBadDateError
            raise self._none_left(direction, base) from exc
        return moment

    def _none_left(self, direction: str, base: float) -> NoOccurrenceError:
        moment = datetime.fromtimestamp(base, tz=self._tz).isoformat()
        return NoOccurrenceError(
            f"Cron expression {self.expression!r} has no occurrence {direction} {moment} "
            f"({self.timezone}); its year field allows no other date."
        )

    def _second_pass(self, moment: float) -> bool:
        """Whether `moment` is a time of day's second pass through a repeated hour."""
        return self._fixed_time and datetime.fromtimestamp(moment, tz=self._tz).fold == 1

    def latest_at_or_before(self, moment: float) -> float:
        """Return the latest fire time that is not after `moment`.

        Args:
            moment: A Unix timestamp.

        Returns:
            The fire time, which may equal `moment` when `moment` is itself a fire time.
        """
        # Fire times fall on whole seconds, so "strictly before floor(moment) + 1" is
        # "at or before moment".
        return self.get_prev(float(int(moment) + 1))

    def __repr__(self) -> str:
        return f"CronExpression({self.expression!r}, timezone={self.timezone!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CronExpression):
            return NotImplemented
        return (self.expression, self.timezone) == (other.expression, other.timezone)

    def __hash__(self) -> int:
        return hash((self.expression, self.timezone))
