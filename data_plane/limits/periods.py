"""Quota periods in UTC: DAY, WEEK (starts Monday) and MONTH (starts on the 1st), all at 00:00 UTC;
and a customer's billing cycle (:class:`Cycle`): the same periods starting at an anchor in a time zone.

Pure functions of a unix time, so the limiter, the quota headers and the tests share one definition
of "the current period" and can inject any clock.  Period ids (``period_id``) name a period in
counter keys; they depend only on the period kind and its start, never on the plan, so changing a
customer's plan keeps the usage counted so far in the current period.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

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


# ---------------------------------------------------------------------------- billing cycles


class Cycle:
    """A customer's billing cycle (issue 17): quota periods that start at the anchor's wall-clock
    time in its time zone instead of at 00:00 UTC.

    * DAY: every day at the anchor's time of day;
    * WEEK: every week on the anchor's weekday at its time;
    * MONTH: every month on the anchor's day of month at its time; a day the month does not have
      (the 31st in April) is the month's last day.

    ``since`` (epoch seconds, 0: none) is when this anchor was set: the cycle that contains it starts
    there, not at its boundary before, so a new anchor starts a fresh cycle from the moment it was set
    and nothing counted under the old one is counted again.  Local times are resolved with
    ``zoneinfo`` (``fold=0``): an anchor time a DST change skips is taken in the offset before the
    change.  Period ids name the cycle's start instant (``M1700000000``): counters of different
    anchors never meet.
    """

    __slots__ = ("zone", "anchor", "since", "_cache")

    def __init__(self, anchor: int, zone: str, since: int = 0) -> None:
        self.zone: tzinfo = ZoneInfo(zone) if zone else UTC
        self.anchor = datetime.fromtimestamp(anchor, self.zone)  # the anchor's wall clock in its zone
        self.since = since
        self._cache: dict[str, tuple[int, int, str]] = {}

    def current(self, period: str, now: float) -> tuple[int, int, str]:
        """``(start, end, period_id)`` of the cycle period containing ``now`` (cached until it ends)."""
        c = self._cache.get(period)
        if c is None or not (c[0] <= now < c[1]):
            start, end = self.bounds(period, now)
            c = self._cache[period] = (start, end, "%s%d" % (period[0], start))  # noqa: UP031
        return c

    def bounds(self, period: str, now: float) -> tuple[int, int]:
        _check(period)
        local = datetime.fromtimestamp(now, self.zone)
        start = self._boundary(period, local, 0)
        if start > now:
            start = self._boundary(period, local, -1)
        end = self._boundary(period, datetime.fromtimestamp(start, self.zone), 1)
        if end <= start:  # (a DST fold can only move a boundary by an hour, never past the next one)
            end = start + _DAY_SECONDS
        if self.since and start < self.since <= now:
            start = self.since
        return start, end

    def _boundary(self, period: str, local: datetime, step: int) -> int:
        """The period boundary on or before ``local``'s day (step 0), the one before it (-1) or after (1)."""
        a = self.anchor
        if period == DAY:
            day = local.date() + timedelta(days=step)
        elif period == WEEK:
            day = local.date() - timedelta(days=(local.weekday() - a.weekday()) % 7) + timedelta(days=7 * step)
        else:
            month = local.year * 12 + local.month - 1 + step
            year, month0 = divmod(month, 12)
            last = calendar.monthrange(year, month0 + 1)[1]
            day = datetime(year, month0 + 1, min(a.day, last)).date()
        moment = datetime(day.year, day.month, day.day, a.hour, a.minute, a.second, tzinfo=self.zone)
        return int(moment.timestamp())


def customer_period(period: str, now: float, cycle: Cycle | None) -> tuple[int, int]:
    """(start, end) of the customer's current quota period: its cycle's, else the UTC calendar's."""
    if cycle is None:
        return period_start(period, now), period_end(period, now)
    return cycle.bounds(period, now)
