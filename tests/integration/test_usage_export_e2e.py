"""Usage export against counted traffic: a real control plane, a worker, an echo backend and a lab
backend that answers 404 or never; known numbers of requests per customer and route, some answered
4xx by the backend, some 504 by the gateway, one whose client leaves (499), some refused by a plan's
quota (429), by authentication (403) or the grant (403).  Once the worker's usage is flushed, the
export's totals per customer, route and status class are exactly what was sent and admitted, in
every form (API CSV / JSON Lines, per day and per hour, ``tollgate usage export`` to a file and to
stdout), and they agree with the daily report the quotas use and with what the backends received."""

from __future__ import annotations

import csv
import io
import json
import socket
import struct
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.integration.cli_support import tg
from tests.integration.harness import Cluster, ControlPlane, Worker, create, wait_until

FAST_METERING = {"TOLLGATE_USAGE_FLUSH_INTERVAL": "0.2"}
Key = tuple[str, str, str]  # (customer id, route id, status class)


def _export(cp: ControlPlane, **params: str) -> httpx.Response:
    today = datetime.now(UTC).date()
    query = {"start": (today - timedelta(days=1)).isoformat(), "end": today.isoformat(), **params}
    r = cp.get(f"/v1/usage/export?{httpx.QueryParams(query)}")
    assert r.status_code == 200, r.text
    return r


def _totals(rows: list[dict[str, Any]]) -> Counter[Key]:
    out: Counter[Key] = Counter()
    for row in rows:
        out[(row["customer_id"], row["route_id"], row["status_class"])] += int(row["requests"])
    return out


def _jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _flushed(worker: Worker) -> bool:
    usage = worker.status()["limiter"]["usage"]
    return usage["pending_batches"] == 0 and usage["unsent_counts"] == 0


def test_export_totals_equal_the_admitted_requests(cluster: Cluster, tmp_path: Path) -> None:
    echo = cluster.echo("e2e-echo")
    lab = cluster.lab("e2e-lab")
    lab.control(status=404)
    cp = cluster.control_plane()
    worker = cluster.worker(cp, name="export-worker", env=FAST_METERING)

    with cp.admin() as a:
        ok_up = create(a, "/v1/upstreams", {"name": "ok"})
        create(a, f"/v1/upstreams/{ok_up['id']}/targets", {"host": "127.0.0.1", "port": echo.port})
        lab_up = create(a, "/v1/upstreams", {"name": "lab"})
        create(a, f"/v1/upstreams/{lab_up['id']}/targets", {"host": "127.0.0.1", "port": lab.port})
        shop = create(a, "/v1/apis", {"name": "shop", "base_path": "/shop", "auth": "api_key"})
        other = create(a, "/v1/apis", {"name": "other", "base_path": "/other", "auth": "api_key"})
        route = {
            "items": create(
                a,
                f"/v1/apis/{shop['id']}/routes",
                {"path": "/items/{id}", "methods": ["GET"], "upstream_id": ok_up["id"]},
            ),
            "missing": create(a, f"/v1/apis/{shop['id']}/routes", {"path": "/missing", "upstream_id": lab_up["id"]}),
            "stall": create(
                a, f"/v1/apis/{shop['id']}/routes", {"path": "/stall", "upstream_id": lab_up["id"], "read_timeout": 0.3}
            ),
            "ping": create(a, f"/v1/apis/{other['id']}/routes", {"path": "/ping", "upstream_id": ok_up["id"]}),
            "slow": create(a, f"/v1/apis/{shop['id']}/routes", {"path": "/slow", "upstream_id": lab_up["id"]}),
        }
        both = [{"api_id": shop["id"]}, {"api_id": other["id"]}]
        big = create(a, "/v1/usage-plans", {"name": "big", "apis": both})
        small = create(a, "/v1/usage-plans", {"name": "small", "quota": {"limit": 5, "period": "DAY"}, "apis": both})
        ids: dict[str, str] = {}
        keys: dict[str, str] = {}
        for name, plan, direct in (("acme", big, []), ("beta", small, []), ("gamma", None, [other["id"]])):
            c = create(a, "/v1/customers", {"name": name, "api_ids": direct})
            if plan is not None:
                assert a.put(f"/v1/customers/{c['id']}/plan", json={"plan_id": plan["id"]}).status_code == 200
            ids[name] = c["id"]
            keys[name] = create(a, f"/v1/customers/{c['id']}/keys", {})["key"]
    worker.wait_revision(cp.revision())

    sent: Counter[tuple[str, str, int]] = Counter()  # (customer, path, status the client got)
    with httpx.Client(base_url=worker.url, timeout=10.0) as client:

        def call(customer: str, path: str, times: int) -> None:
            for _ in range(times):
                r = client.get(path, headers={"x-api-key": keys.get(customer, "tg_nobody_0000000000000000000000")})
                sent[(customer, path, r.status_code)] += 1

        call("acme", "/shop/items/1", 7)
        call("acme", "/shop/missing", 3)  # the backend's 404
        call("acme", "/other/ping", 4)
        call("acme", "/shop/stall", 2)  # the gateway's 504 after the read timeout
        call("beta", "/shop/items/2", 8)  # quota 5: three refused (429)
        call("gamma", "/other/ping", 2)  # no plan, a direct grant
        call("gamma", "/shop/items/3", 1)  # not granted: 403
        call("nobody", "/shop/items/4", 1)  # unknown key: 403
    assert sent == {
        ("acme", "/shop/items/1", 200): 7,
        ("acme", "/shop/missing", 404): 3,
        ("acme", "/other/ping", 200): 4,
        ("acme", "/shop/stall", 504): 2,
        ("beta", "/shop/items/2", 200): 5,
        ("beta", "/shop/items/2", 429): 3,
        ("gamma", "/other/ping", 200): 2,
        ("gamma", "/shop/items/3", 403): 1,
        ("nobody", "/shop/items/4", 403): 1,
    }
    # a client that leaves (a reset: a FIN alone half-closes, and the answer still goes out) once its
    # request reached the backend: admitted, ended 499
    seen = int(httpx.get(f"{lab.url}/__echo/count", timeout=2.0).json()["seen"])
    with socket.create_connection(("127.0.0.1", worker.port), timeout=5) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(f"GET /shop/slow?ms=5000 HTTP/1.1\r\nhost: t\r\nx-api-key: {keys['acme']}\r\n\r\n".encode())
        wait_until(lambda: httpx.get(f"{lab.url}/__echo/count", timeout=2.0).json()["seen"] > seen, what="lab saw it")

    acme, beta, gamma = ids["acme"], ids["beta"], ids["gamma"]
    expected: Counter[Key] = Counter(
        {
            (acme, route["items"]["id"], "2xx"): 7,
            (acme, route["missing"]["id"], "4xx"): 3,
            (acme, route["ping"]["id"], "2xx"): 4,
            (acme, route["stall"]["id"], "5xx"): 2,
            (acme, route["slow"]["id"], "4xx"): 1,  # 499
            (beta, route["items"]["id"], "2xx"): 5,  # the 429s are not counted
            (gamma, route["ping"]["id"], "2xx"): 2,
        }
    )
    total = sum(expected.values())
    wait_until(
        lambda: sum(_totals(_jsonl(_export(cp, format="jsonl").text)).values()) == total,
        timeout=30.0,
        what=f"the export to reach {total} requests",
    )
    wait_until(lambda: _flushed(worker), timeout=30.0, what="the worker's usage to be delivered")

    by_day = _jsonl(_export(cp, format="jsonl", granularity="day").text)
    assert _totals(by_day) == expected  # nothing more arrived after the total was reached
    plan_of = {acme: big["id"], beta: small["id"], gamma: ""}
    assert all(row["plan_id"] == plan_of[row["customer_id"]] for row in by_day)
    names = {(row["customer_name"], row["api_name"], row["route_path"]) for row in by_day}
    assert ("beta", "shop", "/items/{id}") in names and ("gamma", "other", "/ping") in names
    assert _totals(_csv(_export(cp, format="csv", granularity="hour").text)) == expected

    # what the backends received: every 2xx row went to the echo backend, every 4xx/5xx row to the lab
    assert echo.count() == sum(n for (_, _, klass), n in expected.items() if klass == "2xx")
    # the daily report (what quotas count) agrees per customer
    today = datetime.now(UTC).date()
    for cid in (acme, beta, gamma):
        report = cp.get(f"/v1/customers/{cid}/usage?start={today - timedelta(days=1)}&end={today}").json()
        assert sum(d["requests"] for d in report["days"]) == sum(n for (c, _, _), n in expected.items() if c == cid)

    # the CLI: to a file (CSV, per day) and to stdout (JSON Lines, per hour), for one customer
    out = tmp_path / "usage.csv"
    start = (today - timedelta(days=1)).isoformat()
    result = tg(cp, "usage", "export", "--start", start, "--end", today.isoformat(), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert _totals(_csv(out.read_text())) == expected
    assert not list(tmp_path.glob(".usage.csv.*"))  # no partial file left beside it
    result = tg(
        cp, "usage", "export", "--start", start, "--granularity", "hour", "--format", "jsonl", "--customer", "beta"
    )
    assert result.exit_code == 0, result.output
    assert _totals(_jsonl(result.stdout)) == Counter({(beta, route["items"]["id"], "2xx"): 5})
    bad = tg(cp, "usage", "export", "--start", today.isoformat(), "--end", start)
    assert bad.exit_code == 1 and "end must be after start" in bad.stderr
