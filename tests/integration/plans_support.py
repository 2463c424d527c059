"""Helpers for the usage-plan end-to-end tests: a gateway with one keyed API, and a raw-socket burst
that puts many requests on the wire before reading any answer (so a throttle sees them together)."""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.integration.harness import Backend, ControlPlane, Worker, create, wait_until


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def _read_reply(sock: socket.socket) -> Reply:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(int(lines[0].split()[1]), headers, body)


def burst(requests: list[tuple[int, str, str]]) -> list[Reply]:
    """(port, path, api key) each on its own connection: connect all, send all, then read all."""
    socks = [(socket.create_connection(("127.0.0.1", port), timeout=20), path, key) for port, path, key in requests]
    try:
        for sock, path, key in socks:
            sock.sendall(f"GET {path} HTTP/1.1\r\nhost: t\r\nx-api-key: {key}\r\nconnection: close\r\n\r\n".encode())
        return [_read_reply(sock) for sock, _, _ in socks]
    finally:
        for sock, _, _ in socks:
            sock.close()


def seconds_to_utc_midnight() -> float:
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() + 86400
    return midnight - now.timestamp()


@dataclass
class PlanGateway:
    cp: ControlPlane
    workers: list[Worker]
    echo: Backend
    apis: dict[str, str] = field(default_factory=dict)  # name -> id

    def admin(self) -> httpx.Client:
        return self.cp.admin()

    def sync(self) -> None:
        rev = self.cp.revision()
        for w in self.workers:
            w.wait_revision(rev)

    def plan(self, apis: list[str] | None = None, **body: Any) -> dict[str, Any]:
        entries = [{"api_id": self.apis[a]} for a in (apis or ["shop"])]
        with self.admin() as a:
            return create(a, "/v1/usage-plans", {"name": f"plan-{uuid.uuid4().hex[:12]}", "apis": entries, **body})

    def customer(self, plan_id: str | None = None, direct: tuple[str, ...] = ()) -> tuple[str, str, str]:
        """A new customer (optionally subscribed, optionally with direct grants): (customer id, key id, key)."""
        with self.admin() as a:
            body = {"name": f"cust-{uuid.uuid4().hex[:12]}", "api_ids": [self.apis[x] for x in direct]}
            c = create(a, "/v1/customers", body)
            if plan_id is not None:
                r = a.put(f"/v1/customers/{c['id']}/plan", json={"plan_id": plan_id})
                assert r.status_code == 200, r.text
            k = create(a, f"/v1/customers/{c['id']}/keys", {})
        self.sync()
        return c["id"], k["id"], k["key"]

    def get(self, path: str, key: str, worker: int = 0) -> httpx.Response:
        return httpx.get(f"{self.workers[worker].url}{path}", headers={"x-api-key": key}, timeout=10.0)

    def usage_today(self, customer_id: str) -> int:
        day = datetime.now(UTC).date().isoformat()
        with self.admin() as a:
            r = a.get(f"/v1/customers/{customer_id}/usage", params={"start": day, "end": day})
            assert r.status_code == 200, r.text
            return int(r.json()["days"][0]["requests"])

    def wait_usage(self, customer_id: str, expected: int, timeout: float = 30.0) -> None:
        wait_until(lambda: self.usage_today(customer_id) == expected, timeout=timeout, what=f"usage == {expected}")
        assert self.usage_today(customer_id) == expected


def build_gateway(cp: ControlPlane, workers: list[Worker], echo: Backend) -> PlanGateway:
    """APIs: ``shop`` (/shop: routes /items/{id} GET and /other) and ``quiet`` (/quiet, headers hidden)."""
    gw = PlanGateway(cp, workers, echo)
    with cp.admin() as a:
        up = create(a, "/v1/upstreams", {"name": "svc"})
        create(a, f"/v1/upstreams/{up['id']}/targets", {"host": "127.0.0.1", "port": echo.port})
        for name, extra in (("shop", {}), ("quiet", {"rate_limit_headers": False})):
            api = create(a, "/v1/apis", {"name": name, "base_path": f"/{name}", "auth": "api_key", **extra})
            gw.apis[name] = api["id"]
            create(
                a, f"/v1/apis/{api['id']}/routes", {"path": "/items/{id}", "methods": ["GET"], "upstream_id": up["id"]}
            )
            create(a, f"/v1/apis/{api['id']}/routes", {"path": "/other", "upstream_id": up["id"]})
    gw.sync()
    return gw
