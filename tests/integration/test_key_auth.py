"""API keys and JWTs through a real worker: who gets in, what the backend sees, rotation, no plaintext anywhere."""

from __future__ import annotations

import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.integration.harness import Backend, Cluster, ControlPlane, Worker, create, tollgate_argv, wait_until

HS_SECRET = "integration-hs256-secret-0123456789abcdef"
EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC_PUBLIC_PEM = (
    EC_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


class Gateway:
    def __init__(self, cp: ControlPlane, worker: Worker, echo: Backend, ids: dict[str, str]) -> None:
        self.cp, self.worker, self.echo, self.ids = cp, worker, echo, ids

    def admin(self) -> httpx.Client:
        return self.cp.admin()

    def sync(self) -> None:
        self.worker.wait_revision(self.cp.revision())

    def customer(self, name: str, apis: list[str], **fields: Any) -> dict[str, Any]:
        with self.admin() as a:
            body = {"name": name, "api_ids": [self.ids[x] for x in apis], **fields}
            return create(a, "/v1/customers", body)

    def key(self, customer_id: str, **body: Any) -> dict[str, Any]:
        with self.admin() as a:
            return create(a, f"/v1/customers/{customer_id}/keys", body)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(f"{self.worker.url}{path}", timeout=5.0, **kw)


@pytest.fixture(scope="module")
def gw(module_cluster: Cluster) -> Gateway:
    echo = module_cluster.echo("auth")
    cp = module_cluster.control_plane()
    ids: dict[str, str] = {}
    with cp.admin() as a:
        up = create(a, "/v1/upstreams", {"name": "svc"})
        create(a, f"/v1/upstreams/{up['id']}/targets", {"host": "127.0.0.1", "port": echo.port})
        for name, extra in (
            ("keyed", {"auth": "api_key"}),
            ("other", {"auth": "api_key"}),
            ("query", {"auth": "api_key", "key_query": "api_key"}),
            ("hs", {"auth": "jwt", "jwt_algorithms": ["HS256"], "jwt_secret": HS_SECRET, "jwt_audience": "shop"}),
            ("es", {"auth": "jwt", "jwt_algorithms": ["ES256"], "jwt_public_key": EC_PUBLIC_PEM}),
        ):
            api = create(a, "/v1/apis", {"name": name, "base_path": f"/{name}", **extra})
            create(a, f"/v1/apis/{api['id']}/routes", {"path": "/{proxy+}", "upstream_id": up["id"]})
            ids[name] = api["id"]
    worker = module_cluster.worker(cp)
    gateway = Gateway(cp, worker, echo, ids)
    gateway.sync()
    return gateway


def test_api_key_admission(gw: Gateway) -> None:
    cust = gw.customer("acme", ["keyed", "query"])
    key = gw.key(cust["id"], name="primary")
    assert key["key"].startswith(key["prefix"] + "_") and key["status"] == "active"
    gw.sync()

    r = gw.get("/keyed/x")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("ApiKey")
    assert set(r.json()) == {"message", "request_id"}
    r = gw.get("/keyed/x", headers={"x-api-key": "tg_nope_" + "x" * 40})
    assert r.status_code == 403 and "tg_nope" not in r.text

    r = gw.get("/keyed/x?q=1", headers={"x-api-key": key["key"], "x-customer-id": "spoofed", "x-key-prefix": "evil"})
    assert r.status_code == 200, r.text
    seen = r.json()
    assert [v for k, v in seen["header_list"] if k == "x-customer-id"] == [cust["id"]]
    assert [v for k, v in seen["header_list"] if k == "x-key-prefix"] == [key["prefix"]]
    assert "x-api-key" not in seen["headers"] and key["key"] not in r.text
    assert seen["query"] == "q=1"

    # Granted to "keyed" and "query" only.
    assert gw.get("/other/x", headers={"x-api-key": key["key"]}).status_code == 403

    # Query-parameter variant: the key leaves the query before forwarding.
    r = gw.get(f"/query/x?a=1&api_key={key['key']}&b=2")
    assert r.status_code == 200, r.text
    assert r.json()["query"] == "a=1&b=2" and key["key"] not in r.text
    assert gw.get("/query/x", headers={"x-api-key": key["key"]}).status_code == 401

    # Last use comes back with the worker's heartbeat.
    def last_used() -> Any:
        with gw.admin() as a:
            return a.get(f"/v1/customers/{cust['id']}/keys/{key['id']}").json()["last_used_at"]

    assert wait_until(last_used, timeout=15, what="last_used_at from the heartbeat")


def test_revoked_expired_and_suspended(gw: Gateway) -> None:
    cust = gw.customer("revokee", ["keyed"])
    revoked, expiring = (
        gw.key(cust["id"]),
        gw.key(cust["id"], expires_at=(datetime.now(UTC) + timedelta(seconds=5)).isoformat()),
    )
    other = gw.customer("suspendee", ["keyed"])
    other_key = gw.key(other["id"])
    gw.sync()
    for k in (revoked, expiring, other_key):
        assert gw.get("/keyed/x", headers={"x-api-key": k["key"]}).status_code == 200

    with gw.admin() as a:
        assert a.delete(f"/v1/customers/{cust['id']}/keys/{revoked['id']}").status_code == 204
        assert a.patch(f"/v1/customers/{other['id']}", json={"status": "suspended"}).status_code == 200
    gw.sync()  # both writes (two revisions): waiting for the first one's effect is not enough
    assert gw.get("/keyed/x", headers={"x-api-key": revoked["key"]}).status_code == 403
    r = gw.get("/keyed/x", headers={"x-api-key": other_key["key"]})
    assert r.status_code == 403 and r.json()["message"] == "customer is suspended"
    wait_until(
        lambda: gw.get("/keyed/x", headers={"x-api-key": expiring["key"]}).status_code == 403, timeout=10, what="expiry"
    )
    with gw.admin() as a:
        statuses = {k["id"]: k["status"] for k in a.get(f"/v1/customers/{cust['id']}/keys").json()["items"]}
    assert statuses == {revoked["id"]: "revoked", expiring["id"]: "expired"}


def test_rotation_grace_period(gw: Gateway) -> None:
    cust = gw.customer("rotator", ["keyed"])
    old = gw.key(cust["id"])
    with gw.admin() as a:
        r = a.post(f"/v1/customers/{cust['id']}/keys/{old['id']}/rotate", json={"grace_seconds": 2})
        assert r.status_code == 201, r.text
        new = r.json()
    assert new["key"] != old["key"]
    gw.sync()
    assert gw.get("/keyed/x", headers={"x-api-key": old["key"]}).status_code == 200
    assert gw.get("/keyed/x", headers={"x-api-key": new["key"]}).status_code == 200
    wait_until(
        lambda: gw.get("/keyed/x", headers={"x-api-key": old["key"]}).status_code == 403, timeout=5, what="grace end"
    )
    assert gw.get("/keyed/x", headers={"x-api-key": new["key"]}).status_code == 200


def test_imported_keys(gw: Gateway) -> None:
    cust = gw.customer("importer", ["keyed"])
    value = "legacy-gateway-key-0123456789"
    imported = gw.key(cust["id"], key=value)
    assert imported["key"] == value and imported["prefix"] == value[:6]
    with gw.admin() as a:
        assert a.post(f"/v1/customers/{cust['id']}/keys", json={"key": value}).status_code == 409
        assert a.post(f"/v1/customers/{cust['id']}/keys", json={"key": "short"}).status_code == 422
    gw.sync()
    assert gw.get("/keyed/x", headers={"x-api-key": value}).status_code == 200


def test_no_plaintext_key_in_database_snapshot_or_export(gw: Gateway) -> None:
    cust = gw.customer("secretive", ["keyed"])
    key = gw.key(cust["id"])["key"]
    gw.sync()
    db_file = Path(gw.cp.env["TOLLGATE_DATABASE_URL"].removeprefix("sqlite:///"))
    blobs = [p.read_bytes() for p in db_file.parent.glob("tollgate.db*")]
    assert blobs and all(key.encode() not in b for b in blobs)
    snap = httpx.get(
        f"{gw.cp.url}/cluster/v1/snapshot", headers={"authorization": f"Bearer {gw.cp.cluster_token}"}, timeout=5
    )
    assert snap.status_code == 200 and b"key_hash" in snap.content and key.encode() not in snap.content
    out = subprocess.run(
        tollgate_argv("snapshot", "export"),
        env={**os.environ, "TOLLGATE_ADMIN_URL": gw.cp.url, "TOLLGATE_ADMIN_TOKEN": gw.cp.admin_token},
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert b"key_hash" in out.stdout and key.encode() not in out.stdout


def _hs(claims: dict[str, Any], secret: str = HS_SECRET) -> dict[str, str]:
    return {"authorization": "Bearer " + jwt.encode(claims, secret, algorithm="HS256")}


def test_jwt(gw: Gateway) -> None:
    cust = gw.customer("jwt-user", ["hs", "es"])
    gw.sync()
    exp = int(time.time()) + 300
    good = {"sub": cust["id"], "exp": exp, "aud": "shop"}
    r = gw.get("/hs/x", headers=_hs(good))
    assert r.status_code == 200, r.text
    assert r.json()["headers"]["x-customer-id"] == cust["id"] and "authorization" not in r.json()["headers"]

    assert gw.get("/hs/x").status_code == 401
    for claims, secret, status in (
        ({**good, "exp": int(time.time()) - 60}, HS_SECRET, 403),  # expired
        (good, "a-different-secret-0123456789abcdef0", 403),  # bad signature
        ({**good, "aud": "elsewhere"}, HS_SECRET, 403),  # wrong audience
        ({**good, "sub": "no-such-customer"}, HS_SECRET, 403),  # unknown customer
    ):
        assert gw.get("/hs/x", headers=_hs(claims, secret)).status_code == status, claims

    es_token = jwt.encode({"sub": cust["id"], "exp": exp}, EC_KEY, algorithm="ES256")
    assert gw.get("/es/x", headers={"authorization": f"Bearer {es_token}"}).status_code == 200
    other = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode({"sub": cust["id"], "exp": exp}, other, algorithm="ES256")
    assert gw.get("/es/x", headers={"authorization": f"Bearer {forged}"}).status_code == 403
    # An HS256 token can never pass on an ES256 api (no algorithm confusion).
    assert gw.get("/es/x", headers=_hs({"sub": cust["id"], "exp": exp})).status_code == 403
