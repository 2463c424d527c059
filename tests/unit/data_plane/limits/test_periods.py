"""Quota periods in UTC: starts, ends, ids and seconds to the next period at the edges."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from data_plane.limits.periods import (
    DAY,
    MONTH,
    WEEK,
    Cycle,
    PeriodCache,
    customer_period,
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


# ---------------------------------------------------------------------------- billing cycles (issue 17)

PARIS = ZoneInfo("Europe/Paris")


def _local(ts: int, zone: ZoneInfo = PARIS) -> str:
    return datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M %a")


def test_a_monthly_cycle_starts_on_the_anchor_day_and_the_31st_clamps_to_the_month_end() -> None:
    cycle = Cycle(int(datetime(2026, 1, 31, 9, 0, tzinfo=PARIS).timestamp()), "Europe/Paris")
    cases = {
        datetime(2026, 2, 15, 12, 0): ("2026-01-31 09:00 Sat", "2026-02-28 09:00 Sat"),
        datetime(2026, 3, 1, 8, 59): ("2026-02-28 09:00 Sat", "2026-03-31 09:00 Tue"),  # (DST moved in March)
        datetime(2026, 4, 30, 8, 59): ("2026-03-31 09:00 Tue", "2026-04-30 09:00 Thu"),
        datetime(2026, 4, 30, 9, 0): ("2026-04-30 09:00 Thu", "2026-05-31 09:00 Sun"),
    }
    for when, (start, end) in cases.items():
        lo, hi = cycle.bounds(MONTH, when.replace(tzinfo=PARIS).timestamp())
        assert (_local(lo), _local(hi)) == (start, end), when


def test_weekly_and_daily_cycles_follow_the_anchor_weekday_and_time_across_dst() -> None:
    anchor = int(datetime(2026, 3, 4, 18, 30, tzinfo=PARIS).timestamp())  # a Wednesday
    cycle = Cycle(anchor, "Europe/Paris")
    lo, hi = cycle.bounds(WEEK, datetime(2026, 3, 29, 12, 0, tzinfo=PARIS).timestamp())
    assert (_local(lo), _local(hi)) == ("2026-03-25 18:30 Wed", "2026-04-01 18:30 Wed")
    assert hi - lo == 7 * 86400 - 3600  # the week with the spring-forward hour
    lo, hi = cycle.bounds(DAY, datetime(2026, 3, 29, 18, 0, tzinfo=PARIS).timestamp())
    assert (_local(lo), _local(hi)) == ("2026-03-28 18:30 Sat", "2026-03-29 18:30 Sun") and hi - lo == 23 * 3600


def test_a_new_anchor_starts_its_first_cycle_when_it_was_set() -> None:
    anchor = int(datetime(2026, 1, 15, 0, 0, tzinfo=UTC).timestamp())
    since = int(datetime(2026, 2, 20, 10, 0, tzinfo=UTC).timestamp())
    cycle = Cycle(anchor, "", since)
    lo, hi = cycle.bounds(MONTH, since + 3600)
    assert (lo, _local(hi, ZoneInfo("UTC"))) == (since, "2026-03-15 00:00 Sun")
    later = cycle.bounds(MONTH, hi + 1)
    assert later == (hi, int(datetime(2026, 4, 15, tzinfo=UTC).timestamp()))  # then whole cycles
    start, end, pid = cycle.current(MONTH, since + 3600)
    assert (start, end) == (lo, hi) and pid == f"M{since}"
    assert customer_period(MONTH, since, None) == (period_start(MONTH, since), period_end(MONTH, since))
