"""The console and the portal in a real browser: Debian's Chromium driven by Playwright, against a
real control plane and a real worker (tests/integration/harness.py).

One browser for the module (a fresh profile, no network services: --disable-background-networking
and friends), one context per test.  Every request the browser makes is recorded and must go to
the control plane and nowhere else.  Screenshots of the main pages go to tests/output/browser/
(git-ignored).  No browser is downloaded: Chromium is the system's (apt-get install chromium, done
by .ci/run); without it the tests skip, and fail under CI=true.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import create_engine, update

from control_plane.models import WebSession
from tests.helpers import require_service
from tests.integration.harness import ADMIN_TOKEN, Backend, Cluster, ControlPlane, Worker, create, wait_until

CHROMIUM = os.environ.get("TOLLGATE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = Path(__file__).resolve().parents[1] / "output" / "browser"
WAIT_MS = 10_000  # every Playwright wait is bounded by this


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    require_service("Chromium", executable is not None, f"{CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # launch() gives each run a fresh temporary profile (user-data dir), removed on close
        b = p.chromium.launch(executable_path=executable, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def stack(module_cluster: Cluster) -> tuple[ControlPlane, Worker, Backend]:
    cp = module_cluster.control_plane(extra_env={"TOLLGATE_USAGE_COLLECT_INTERVAL": "0.5"})
    backend = module_cluster.echo("shop")
    worker = module_cluster.worker(cp, env={"TOLLGATE_USAGE_FLUSH_INTERVAL": "0.3"})
    return cp, worker, backend


@pytest.fixture
def page(browser: Any, stack: tuple[ControlPlane, Worker, Backend]) -> Iterator[Any]:
    cp = stack[0]
    context = browser.new_context(base_url=cp.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    seen: list[str] = []
    context.on("request", lambda request: seen.append(request.url))
    pg = context.new_page()
    yield pg
    context.close()
    allowed = urlsplit(cp.url).netloc
    foreign = [u for u in seen if not u.startswith("data:") and urlsplit(u).netloc != allowed]
    assert seen and not foreign, f"requests to other hosts than the control plane: {foreign}"


def shot(pg: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def console_sign_in(pg: Any, token: str = ADMIN_TOKEN) -> None:
    pg.goto("/console/")
    assert pg.url.endswith("/console/signin")
    pg.get_by_label("Admin or viewer token").fill(token)
    pg.keyboard.press("Enter")  # the keyboard is enough
    pg.wait_for_url("**/console/")


def synced(cp: ControlPlane, worker: Worker) -> None:
    worker.wait_revision(cp.revision())


def test_operator_builds_an_api_issues_a_key_and_traffic_passes(
    page: Any, stack: tuple[ControlPlane, Worker, Backend]
) -> None:
    cp, worker, backend = stack
    pg = page
    console_sign_in(pg)
    shot(pg, "console-overview")
    pg.get_by_role("link", name="Upstreams").click()
    pg.get_by_label("Name").fill("shop-backend")
    pg.get_by_label("Targets (host:port, one per line)").fill(f"127.0.0.1:{backend.port}")
    pg.get_by_role("button", name="Create upstream").click()
    pg.wait_for_url("**/console/upstreams/*")
    pg.get_by_role("link", name="APIs").click()
    pg.get_by_label("Name").fill("shop")
    pg.get_by_label("Base path").fill("/shop")
    pg.get_by_label("Authentication").select_option("api_key")
    pg.get_by_role("button", name="Create API").click()
    pg.wait_for_url("**/console/apis/*")
    new_route = pg.get_by_role("form", name="New route")
    new_route.get_by_label("Path template").fill("/items")
    new_route.get_by_label("Upstream").select_option(label="shop-backend")
    new_route.get_by_role("button", name="Add route").click()
    assert pg.get_by_role("table", name="Routes").get_by_text("/items").is_visible()
    shot(pg, "console-api")
    # a validation error: the admin API's message, on the form
    new_route.get_by_label("Path template").fill("no-slash")
    new_route.get_by_role("button", name="Add route").click()
    assert "Not saved" in pg.get_by_role("alert").inner_text()

    pg.get_by_role("link", name="Plans").click()
    pg.get_by_label("Name").fill("shop-basic")
    pg.get_by_label("shop", exact=True).check()
    pg.get_by_role("button", name="Create plan").click()
    pg.get_by_role("link", name="Customers").click()
    pg.get_by_label("Name").fill("walk-in")
    pg.get_by_role("button", name="Create customer").click()
    pg.wait_for_url("**/console/customers/*")
    pg.get_by_label("Usage plan").select_option(label="shop-basic")
    pg.get_by_role("button", name="Set plan").click()
    pg.get_by_role("button", name="Issue key").click()
    key = pg.locator("#new-key").inner_text().strip()
    assert pg.get_by_role("button", name="Copy").is_visible()
    shot(pg, "console-customer")

    synced(cp, worker)
    assert httpx.get(f"{worker.url}/shop/items", timeout=5).status_code == 401
    before = backend.count()
    r = httpx.get(f"{worker.url}/shop/items", headers={"x-api-key": key}, timeout=5)
    assert r.status_code == 200 and backend.count() == before + 1
    pg.get_by_role("link", name="Overview").click()
    assert pg.get_by_role("table", name="Workers").get_by_text("yes").is_visible()  # in sync

    def overview_counts_the_request() -> bool:  # flushed by the worker, per API over the last 24 h
        pg.goto("/console/")
        row = pg.get_by_role("table", name="Requests per API").locator("tr", has_text="shop")
        return row.count() == 1 and row.locator("td").nth(1).inner_text() == "1"

    wait_until(overview_counts_the_request, timeout=15, interval=0.5, what="the overview to count the request")
    pg.get_by_role("link", name="Upstreams").click()
    pg.get_by_role("link", name="shop-backend").click()
    upstream_page = pg.url

    def worker_reports_healthy() -> bool:  # the worker's status heartbeat carries its view of each target
        pg.goto(upstream_page)
        return pg.get_by_role("table", name="Targets").get_by_text("worker: healthy").count() == 1

    wait_until(worker_reports_healthy, timeout=15, interval=0.5, what="the worker's view of the target")


def test_customer_portal_key_until_429_and_the_usage_chart(
    page: Any, stack: tuple[ControlPlane, Worker, Backend]
) -> None:
    cp, worker, backend = stack
    with cp.admin() as admin:
        up = create(admin, "/v1/upstreams", {"name": "metered-up"})
        create(admin, f"/v1/upstreams/{up['id']}/targets", {"host": "127.0.0.1", "port": backend.port})
        api = create(admin, "/v1/apis", {"name": "metered", "base_path": "/metered", "auth": "api_key"})
        create(admin, f"/v1/apis/{api['id']}/routes", {"path": "/ping", "upstream_id": up["id"]})
        plan = create(
            admin,
            "/v1/usage-plans",
            {"name": "tiny", "quota": {"limit": 5, "period": "DAY"}, "apis": [{"api_id": api["id"]}]},
        )
        cust = create(admin, "/v1/customers", {"name": "portal-co"})
        assert admin.put(f"/v1/customers/{cust['id']}/plan", json={"plan_id": plan["id"]}).status_code == 200
        other = create(admin, "/v1/customers", {"name": "someone-else"})
        other_key = create(admin, f"/v1/customers/{other['id']}/keys", {})
        invite = create(admin, f"/v1/customers/{cust['id']}/portal-invites", {"key_limit": 2})["url"]
    pg = page
    pg.goto(invite)
    pg.get_by_label("New password (at least 12 characters)").fill("a long portal password")
    pg.get_by_label("Repeat it").fill("a long portal password")
    pg.get_by_role("button", name="Set password and sign in").click()
    pg.wait_for_url("**/portal/")
    pg.get_by_label("Key name (optional)").fill("laptop")
    pg.get_by_role("button", name="Create key").click()
    key = pg.locator("#new-key").inner_text().strip()

    synced(cp, worker)
    codes = []
    for _ in range(10):
        codes.append(httpx.get(f"{worker.url}/metered/ping", headers={"x-api-key": key}, timeout=5).status_code)
        if codes[-1] == 429:
            break
    assert codes == [200] * 5 + [429]

    def chart_shows_five() -> bool:
        pg.goto("/portal/")  # not reload(): that would post the create-key form again
        return pg.locator("#today-requests").inner_text() == "5"

    wait_until(chart_shows_five, timeout=15, interval=0.5, what="the portal's usage to show the 5 requests")
    daily, hourly = pg.locator("svg.chart").all()
    assert daily.locator("rect.bar").last.get_attribute("data-value") == "5"  # today
    assert hourly.locator("rect.bar").last.get_attribute("data-value") == "5"  # this hour
    assert pg.locator("#quota-remaining").inner_text() == "0"
    assert pg.get_by_role("table", name="Your keys").locator("tbody tr").count() == 1
    shot(pg, "portal-home")

    pg.get_by_role("link", name="metered", exact=True).click()
    pg.locator(".swagger-ui .info").wait_for()  # the vendored renderer drew the exported document
    shot(pg, "portal-api-docs")
    sdk = pg.request.get(pg.get_by_role("link", name="Python SDK (zip)").get_attribute("href") or "", timeout=60_000)
    assert sdk.status == 200 and sdk.headers["content-type"] == "application/zip" and sdk.body()[:2] == b"PK"
    # another customer's key and ids: 404, and nothing of them on the page
    pg.goto("/portal/")
    csrf = pg.locator('input[name="csrf"]').first.get_attribute("value")
    r = pg.request.post(f"/portal/keys/{other_key['id']}/revoke", form={"csrf": csrf or ""})
    assert r.status == 404
    assert pg.request.get(f"/portal/apis/{up['id']}").status == 404
    assert "someone-else" not in pg.content()


def test_viewer_cannot_change_anything(page: Any, stack: tuple[ControlPlane, Worker, Backend]) -> None:
    cp = stack[0]
    with cp.admin() as admin:
        viewer = create(admin, "/v1/admin-tokens", {"name": "auditor", "role": "viewer"})["token"]
        up = create(admin, "/v1/upstreams", {"name": "viewer-sees-me"})
    pg = page
    console_sign_in(pg, viewer)
    pg.goto(f"/console/upstreams/{up['id']}")
    assert pg.get_by_text("read-only").is_visible()
    posts = pg.locator('form[method="post"]').evaluate_all("fs => fs.map(f => f.getAttribute('action'))")
    assert posts == ["/console/signout"]
    csrf = pg.locator('form[action="/console/signout"] input[name="csrf"]').get_attribute("value")
    r = pg.request.post(f"/console/upstreams/{up['id']}/delete", form={"csrf": csrf or ""})
    assert r.status == 403
    with cp.admin() as admin:
        assert admin.get(f"/v1/upstreams/{up['id']}").status_code == 200


def test_csrf_and_session_expiry(page: Any, stack: tuple[ControlPlane, Worker, Backend]) -> None:
    cp = stack[0]
    pg = page
    console_sign_in(pg)
    pg.get_by_role("link", name="Customers").click()
    pg.locator('form[action="/console/customers"] input[name="csrf"]').evaluate("i => i.value = 'forged'")
    pg.get_by_label("Name").fill("csrf-victim")
    pg.get_by_role("button", name="Create customer").click()
    assert "CSRF" in pg.content()
    with cp.admin() as admin:
        names = [c["name"] for c in admin.get("/v1/customers", params={"limit": 500}).json()["items"]]
    assert "csrf-victim" not in names
    engine = create_engine(cp.env["TOLLGATE_DATABASE_URL"])
    try:
        with engine.begin() as conn:
            conn.execute(update(WebSession).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    finally:
        engine.dispose()
    pg.goto("/console/customers")
    assert pg.url.endswith("/console/signin")
    pg.goto("/docs")
    pg.locator(".swagger-ui .info").wait_for()  # offline Swagger UI: the request log checks the hosts
    assert re.search(r"Tollgate control plane", pg.content())
    shot(pg, "docs")
