"""Quota periods in UTC: DAY, WEEK (starts Monday) and MONTH (starts on the 1st), all at 00:00 UTC.

Pure functions of a unix time, so the limiter, the quota headers and the tests share one definition
of "the current period" and can inject any clock.  Period ids (``period_id``) name a period in
counter keys; they depend only on the period kind and its start, never on the plan, so changing a
customer's plan keeps the usage counted so far in the current period.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta

DAY = "DAY"
WEEK = "WEEK"
MONTH = "MONTH"
PERIODS = (DAY, WEEK, MONTH)

_DAY_SECONDS = 86400


def _check(period: str) -> None:
    if period not in PERIODS:
        raise ValueError(f"unknown quota period {period!r} (expected one of {', '.join(PERIODS)})")


def period_start(period: str, now: float) -> int:
    """Unix time (seconds) at which the period containing ``now`` started."""
    _check(period)
    day_start = int(now // _DAY_SECONDS) * _DAY_SECONDS
    if period == DAY:
        return day_start
    if period == WEEK:
        # 1970-01-01 was a Thursday: weekday() gives Monday = 0.
        weekday = datetime.fromtimestamp(day_start, UTC).weekday()
        return day_start - weekday * _DAY_SECONDS
    d = datetime.fromtimestamp(day_start, UTC)
    return int(datetime(d.year, d.month, 1, tzinfo=UTC).timestamp())


def period_end(period: str, now: float) -> int:
    """Unix time at which the next period starts (exclusive end of the current one)."""
    start = period_start(period, now)
    if period == DAY:
        return start + _DAY_SECONDS
    if period == WEEK:
        return start + 7 * _DAY_SECONDS
    d = datetime.fromtimestamp(start, UTC)
    return start + calendar.monthrange(d.year, d.month)[1] * _DAY_SECONDS


def seconds_until_next(period: str, now: float) -> float:
    """Seconds from ``now`` until the next period starts (always > 0)."""
    return period_end(period, now) - now


def period_id(period: str, now: float) -> str:
    """A short stable name of the current period: ``D2024-02-29``, ``W2024-02-26`` (its Monday), ``M2024-02``."""
    start = datetime.fromtimestamp(period_start(period, now), UTC)
    if period == MONTH:
        return start.strftime("M%Y-%m")
    return start.strftime(("D" if period == DAY else "W") + "%Y-%m-%d")


def utc_day(now: float) -> str:
    """``YYYY-MM-DD`` of ``now`` in UTC (usage metering's day)."""
    return (datetime(1970, 1, 1) + timedelta(seconds=int(now // 1))).strftime("%Y-%m-%d")


class PeriodCache:
    """``(start, end, period_id)`` of the current period, recomputed only when ``now`` leaves it.

    The hot path asks for the current period on every quota check; datetime arithmetic once per
    period (per process) instead of once per request.
    """

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[str, tuple[int, int, str]] = {}

    def current(self, period: str, now: float) -> tuple[int, int, str]:
        c = self._cache.get(period)
        if c is None or not (c[0] <= now < c[1]):
            c = self._cache[period] = (period_start(period, now), period_end(period, now), period_id(period, now))
        return c
