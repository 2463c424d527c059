"""A customer's billing cycle as the worker computes it (a leaf: models and the data plane's periods only,
so the usage, plans, webhook and snapshot services can all use it without import cycles)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from control_plane.models import Customer
from data_plane.limits.periods import Cycle

# The anchor of a cycle given only a time zone: a Monday that is the 1st, at 00:00 (calendar periods in that zone).
_ZONE_ONLY_ANCHOR = (2001, 1, 1)


def cycle_of(customer: Customer) -> Cycle | None:
    """The customer's billing cycle as the worker computes it (None: UTC calendar periods)."""
    if customer.billing_anchor is None and not customer.time_zone:
        return None
    zone = customer.time_zone or ""
    anchor = customer.billing_anchor
    if anchor is None:
        anchor = datetime(*_ZONE_ONLY_ANCHOR, tzinfo=ZoneInfo(zone))
    since = customer.cycle_since
    return Cycle(int(anchor.timestamp()), zone, int(since.timestamp()) if since is not None else 0)
