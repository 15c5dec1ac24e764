from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest

from lexigram.contracts.tasks import TaskValidationError
from lexigram.tasks import scheduled
from lexigram.tasks.scheduling import CronExpression
from lexigram.tasks.scheduling._cron import validate_cron


def _ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


def test_cron_get_next_weekdays_at_nine() -> None:
    cron = CronExpression("0 9 * * 1-5")
    # Friday 2024-03-01 10:00 UTC -> next weekday 09:00 is Monday 2024-03-04.
    assert cron.get_next(_ts(2024, 3, 1, 10, 0)) == _ts(2024, 3, 4, 9, 0)


def test_cron_get_prev_is_strictly_before() -> None:
    cron = CronExpression("*/15 * * * *")
    base = _ts(2024, 3, 1, 10, 30)
    assert cron.get_prev(base) == _ts(2024, 3, 1, 10, 15)
    assert cron.get_next(base) == _ts(2024, 3, 1, 10, 45)


def test_cron_defaults_base_time_to_now() -> None:
    cron = CronExpression("* * * * *")
    now = datetime.now(UTC).timestamp()
    assert now < cron.get_next() <= now + 60
    assert now - 60 <= cron.get_prev() <= now


def test_cron_six_fields_have_leading_seconds() -> None:
    cron = CronExpression("*/10 * * * * *")
    assert cron.get_next(_ts(2024, 1, 1, 0, 0) + 3) == _ts(2024, 1, 1, 0, 0) + 10
    every_second = CronExpression("* * * * * *")
    assert every_second.get_next(100.0) == 101.0


def test_cron_aliases_are_accepted() -> None:
    assert CronExpression("@daily").get_next(_ts(2024, 1, 1, 5)) == _ts(2024, 1, 2)
    assert CronExpression("@hourly").get_next(_ts(2024, 1, 1, 5, 1)) == _ts(2024, 1, 1, 6)


def test_cron_croniter_extensions_are_accepted() -> None:
    # Last day of the month and the third Friday, checked by croniter.
    assert CronExpression("0 0 L * *").get_next(_ts(2024, 2, 10)) == _ts(2024, 2, 29)
    assert CronExpression("0 0 * * 5#3").get_next(_ts(2024, 3, 1)) == _ts(2024, 3, 15)
    assert CronExpression("0 0 1 jul *").get_next(_ts(2024, 3, 1)) == _ts(2024, 7, 1)


def test_cron_timezone_evaluates_wall_clock_time() -> None:
    cron = CronExpression("0 9 * * *", timezone="America/New_York")
    # 09:00 in New York is 14:00 UTC in winter (EST) and 13:00 UTC in summer (EDT).
    assert cron.get_next(_ts(2024, 1, 15, 0, 0)) == _ts(2024, 1, 15, 14, 0)
    assert cron.get_next(_ts(2024, 7, 15, 0, 0)) == _ts(2024, 7, 15, 13, 0)


def test_cron_latest_at_or_before_includes_the_moment_itself() -> None:
    cron = CronExpression("0 * * * *")
    on_the_hour = _ts(2024, 1, 1, 5)
    assert cron.latest_at_or_before(on_the_hour) == on_the_hour
    assert cron.latest_at_or_before(on_the_hour + 0.5) == on_the_hour
    assert cron.latest_at_or_before(on_the_hour - 1) == _ts(2024, 1, 1, 4)


def test_cron_equality_and_repr() -> None:
    assert CronExpression("0  9 * * *") == CronExpression("0 9 * * *")
    assert CronExpression("0 9 * * *") != CronExpression("0 9 * * *", timezone="Europe/Paris")
    assert len({CronExpression("0 9 * * *"), CronExpression("0 9 * * *")}) == 1
    assert repr(CronExpression("0 9 * * *")) == "CronExpression('0 9 * * *', timezone='UTC')"


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("61 * * * *", "minute field '61' is out of range 0-59"),
        ("* 24 * * *", "hour field '24' is out of range 0-23"),
        ("* * 0 * *", "day-of-month field '0' is out of range 1-31"),
        ("* * 32 * *", "day-of-month field '32' is out of range 1-31"),
        ("* * * 13 *", "month field '13' is out of range 1-12"),
        ("* * * * 8", "day-of-week field '8' is out of range 0-7"),
        ("1-70 * * * *", "minute field '1-70' is out of range 0-59"),
        ("60 * * * * *", "second field '60' is out of range 0-59"),
        ("abc * * * *", "minute field 'abc' is not a number"),
        ("* * * jux *", "month field 'jux' is not a number or a name"),
        ("*/0 * * * *", "minute field '*/0' has step '0'"),
        ("? * * * *", "'?' is only allowed in day fields"),
        ("* * *", "it has 3 field(s), expected 5, 6"),
        ("* * * * * * * *", "it has 8 field(s)"),
    ],
)
def test_cron_invalid_expression_names_the_field(expression: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="is invalid") as info:
        CronExpression(expression)
    message = str(info.value)
    assert message.startswith(f"Cron expression {expression!r} is invalid: ")
    assert fragment in message
    assert message.endswith(".")
    assert "Use five fields" in message


@pytest.mark.parametrize("expression", ["* * 30 2 *", "0 0 31 2 *"])
def test_cron_impossible_date_is_rejected_as_never_matching(expression: str) -> None:
    with pytest.raises(ValueError, match="never matches a date") as info:
        CronExpression(expression)
    assert str(info.value).startswith(f"Cron expression {expression!r} never matches a date")
    assert "five fields" not in str(info.value)  # its fields are well formed


@pytest.mark.parametrize(
    "expression", ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 30-31 feb *", "0 0 0 30 2 * *"]
)
def test_impossible_dates_are_found_without_croniter(expression: str) -> None:
    """`validate_cron` (what `@scheduled` checks at import) finds them itself."""
    with pytest.raises(ValueError, match="never matches a date"):
        validate_cron(expression)


@pytest.mark.parametrize(
    "expression",
    [
        "0 0 29 2 *",
        "0 0 31 * *",
        "0 0 31 jan-feb *",
        "0 0 30 2 1",
        "0 0 */30 2 *",
        "0 0 L 2 *",
        "0 0 1 5-3 *",  # a month range that wraps around the year: croniter's to judge
        "0 0 31 nov-feb *",
    ],
)
def test_dates_some_month_has_pass_both_checks(expression: str) -> None:
    validate_cron(expression)
    CronExpression(expression)


def test_scheduled_refuses_an_impossible_date_when_the_module_is_imported() -> None:
    with pytest.raises(TaskValidationError, match="never matches a date"):

        @scheduled("0 9 30 2 *")
        async def never() -> None:
            return None


def test_cron_empty_expression_is_rejected() -> None:
    with pytest.raises(ValueError, match="is empty"):
        CronExpression("   ")


def test_cron_unknown_timezone_is_rejected() -> None:
    with pytest.raises(ValueError, match="Timezone 'Mars/Olympus' is not a known IANA timezone"):
        CronExpression("* * * * *", timezone="Mars/Olympus")


def test_cron_without_croniter_raises_import_error_with_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A None entry in sys.modules makes `import croniter` fail as if it were absent.
    monkeypatch.setitem(sys.modules, "croniter", None)
    with pytest.raises(ImportError, match=r'pip install "lexigram-tasks-core\[cron\]"') as info:
        CronExpression("* * * * *")
    assert info.value.name == "croniter"


def test_cron_module_import_does_not_import_croniter() -> None:
    code = (
        "import sys, lexigram.tasks.scheduling, lexigram.tasks.workflows\n"
        "assert 'croniter' not in sys.modules, 'croniter imported eagerly'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)  # noqa: S603 - fixed code


_PARIS = "Europe/Paris"  # clocks go back from 03:00 to 02:00 on 2026-10-25


def _paris(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_a_time_of_day_fires_once_on_the_day_the_clocks_go_back() -> None:
    # 02:30 happens twice that night (+02:00, then +01:00): cron runs such a job once.
    cron = CronExpression("30 2 * * *", timezone=_PARIS)
    first = cron.get_next(_paris("2026-10-24T12:00:00+02:00"))
    assert first == _paris("2026-10-25T02:30:00+02:00")
    assert cron.get_next(first) == _paris("2026-10-26T02:30:00+01:00")
    assert cron.get_prev(_paris("2026-10-26T00:00:00+01:00")) == first
    assert CronExpression("0 30 2 * * *", timezone=_PARIS).get_next(first) == _paris(
        "2026-10-26T02:30:00+01:00"
    )


def test_a_schedule_that_repeats_within_the_hour_runs_through_both_passes() -> None:
    cron = CronExpression("*/30 * * * *", timezone=_PARIS)
    moment, seen = _paris("2026-10-25T01:50:00+02:00"), []
    for _ in range(4):
        moment = cron.get_next(moment)
        seen.append(moment)
    assert seen == [
        _paris("2026-10-25T02:00:00+02:00"),
        _paris("2026-10-25T02:30:00+02:00"),
        _paris("2026-10-25T02:00:00+01:00"),
        _paris("2026-10-25T02:30:00+01:00"),
    ]
