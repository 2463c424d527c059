"""Refusals per API reach the console (issue 18's overview): a worker counts the requests it answered
itself (401 without a key, 403 with a wrong one, 429 over the quota) per API, status and hour, sends
them with its usage batches, and the console's overview shows them next to the metered requests."""

from __future__ import annotations

import re

import httpx

from tests.integration.harness import ADMIN_TOKEN, Cluster, wait_until
from tests.integration.plans_support import build_gateway


def _signed_in(cp_url: str) -> httpx.Client:
    c = httpx.Client(base_url=cp_url, timeout=10.0)
    form = c.get("/console/signin")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf, form.text
    r = c.post("/console/signin", data={"token": ADMIN_TOKEN, "csrf": csrf.group(1)}, follow_redirects=True)
    assert r.status_code == 200 and "Overview" in r.text, r.text
    return c


def _row(html: str, api: str) -> str:
    match = re.search(r"<tr><td>" + re.escape(api) + r"</td>(.*?)</tr>", html, re.S)
    return match.group(1) if match else ""


def test_refusals_per_api_in_the_console_overview(module_cluster: Cluster) -> None:
    cp = module_cluster.control_plane(name="cp-refusals")
    gw = build_gateway(cp, [], module_cluster.echo("refusals-echo"))
    w = module_cluster.worker(cp, name="refusals-worker", env={"TOLLGATE_USAGE_FLUSH_INTERVAL": "0.2"})
    gw.workers = [w]
    gw.sync()
    plan = gw.plan(quota={"limit": 2, "period": "DAY"})
    _, _, key = gw.customer(plan["id"])

    statuses = [
        httpx.get(f"{w.url}/shop/other", timeout=5.0).status_code,  # no key
        httpx.get(f"{w.url}/shop/other", headers={"x-api-key": "tg_wrong"}, timeout=5.0).status_code,
        *[gw.get("/shop/other", key).status_code for _ in range(4)],  # 2 admitted, then the quota
        httpx.get(f"{w.url}/nowhere", timeout=5.0).status_code,  # matches no API: not counted per API
    ]
    assert statuses == [401, 403, 200, 200, 429, 429, 404]

    console = _signed_in(cp.url)

    def shown() -> str:
        row = _row(console.get("/console/").text, "shop")
        return row if "401: 1, 403: 1, 429: 2" in row else ""

    row = wait_until(shown, timeout=20, what="refusals in the overview")
    console.close()
    cells = re.findall(r"<td>(.*?)</td>", row)
    assert cells[:3] == ["2", "0", "4"]  # metered 2, upstream errors 0, refused 4
