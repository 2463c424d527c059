"""The sign-in rate limit's window and the SVG chart, with an injected clock."""

from __future__ import annotations

import re

from control_plane.web.auth import SignInLimiter
from control_plane.web.charts import bar_chart


def test_limiter_refuses_past_the_budget_and_recovers_after_the_window() -> None:
    now = [100.0]
    limiter = SignInLimiter(3, clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b")  # per client
    assert 1 <= limiter.retry_after("a") <= 61
    now[0] += 60.5
    assert limiter.allow("a")


def test_chart_has_one_bar_per_point_a_quota_line_and_a_description() -> None:
    svg = str(bar_chart([("2026-12-01", 3), ("2026-12-02", 7)], title="t <x>", limit=10, limit_label="daily quota"))
    assert svg.count('class="bar"') == 2
    assert 'data-value="7"' in svg and 'class="limit"' in svg
    assert re.search(r'aria-labelledby="(c\w+)-t \1-d"', svg) and ">t &lt;x&gt;</title>" in svg
    assert "10 requests over 2 periods; daily quota 10" in svg
    assert str(bar_chart([], title="other")).split('id="')[1] != svg.split('id="')[1]  # ids differ per chart
    assert "http://" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")
