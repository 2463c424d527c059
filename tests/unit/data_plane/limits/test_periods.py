"""Quota periods in UTC: starts, ends, ids and seconds to the next period at the edges."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from data_plane.limits.periods import (
    DAY,
    MONTH,
    WEEK,
    PeriodCache,
    period_end,
    period_id,
    period_start,
    seconds_until_next,
    utc_day,
)


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def test_day_boundaries() -> None:
    now = ts(2024, 3, 10, 18, 0, 0)
    assert period_start(DAY, now) == ts(2024, 3, 10)
    assert period_end(DAY, now) == ts(2024, 3, 11)
    assert seconds_until_next(DAY, now) == 6 * 3600
    assert period_id(DAY, now) == "D2024-03-10"
    # the last second of a day still belongs to it; midnight starts the next one
    assert period_id(DAY, ts(2024, 3, 10, 23, 59, 59)) == "D2024-03-10"
    assert seconds_until_next(DAY, ts(2024, 3, 10, 23, 59, 59)) == 1
    assert period_id(DAY, ts(2024, 3, 11)) == "D2024-03-11"


def test_week_starts_monday_at_midnight_utc() -> None:
    sunday_last_second = ts(2024, 3, 17, 23, 59, 59)  # a Sunday
    monday = ts(2024, 3, 18)
    assert datetime.fromtimestamp(monday, UTC).weekday() == 0
    assert period_start(WEEK, sunday_last_second) == ts(2024, 3, 11)
    assert period_end(WEEK, sunday_last_second) == monday
    assert seconds_until_next(WEEK, sunday_last_second) == 1
    assert period_start(WEEK, monday) == monday
    assert period_id(WEEK, sunday_last_second) == "W2024-03-11"
    assert period_id(WEEK, monday) == "W2024-03-18"
    # a Thursday (the weekday of the unix epoch) maps to its own week's Monday
    assert period_start(WEEK, ts(1970, 1, 1, 12)) == ts(1969, 12, 29)


@pytest.mark.parametrize(
    ("last_second", "next_start", "month_days"),
    [
        ((2024, 1, 31, 23, 59, 59), (2024, 2, 1), 31),  # Jan 31 -> Feb 1
        ((2024, 2, 29, 23, 59, 59), (2024, 3, 1), 29),  # leap year February
        ((2023, 2, 28, 23, 59, 59), (2023, 3, 1), 28),  # common year February
        ((2023, 12, 31, 23, 59, 59), (2024, 1, 1), 31),  # Dec 31 -> Jan 1 (year changes)
    ],
)
def test_month_edges(last_second: tuple[int, ...], next_start: tuple[int, ...], month_days: int) -> None:
    now = ts(*last_second)
    nxt = ts(*next_start)
    assert period_end(MONTH, now) == nxt
    assert seconds_until_next(MONTH, now) == 1
    assert period_end(MONTH, now) - period_start(MONTH, now) == month_days * 86400
    assert period_start(MONTH, nxt) == nxt
    assert period_id(MONTH, now) != period_id(MONTH, nxt)
    assert period_id(MONTH, nxt) == f"M{next_start[0]:04d}-{next_start[1]:02d}"


def test_feb_28_in_a_leap_year_is_not_the_end_of_the_month() -> None:
    now = ts(2024, 2, 28, 23, 59, 59)
    assert period_id(MONTH, now) == period_id(MONTH, now + 1) == "M2024-02"
    assert period_id(DAY, now + 1) == "D2024-02-29"


def test_fractional_time_and_unknown_period() -> None:
    assert seconds_until_next(DAY, ts(2024, 3, 10, 23, 59, 59) + 0.25) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="unknown quota period"):
        period_start("YEAR", 0.0)


def test_utc_day_and_period_cache() -> None:
    assert utc_day(ts(2024, 2, 29, 23, 59, 59)) == "2024-02-29"
    assert utc_day(ts(2024, 3, 1)) == "2024-03-01"
    cache = PeriodCache()
    assert cache.current(DAY, ts(2024, 3, 10, 12)) == (ts(2024, 3, 10), ts(2024, 3, 11), "D2024-03-10")
    assert cache.current(DAY, ts(2024, 3, 11))[2] == "D2024-03-11"  # recomputed on leaving the period
