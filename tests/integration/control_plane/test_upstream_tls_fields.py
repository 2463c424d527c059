"""TLS to targets in the control plane, on SQLite and PostgreSQL: a target's ``scheme`` and an
upstream's ``tls_verify``, ``ca_certificates`` (validated with ``cryptography``: 422 otherwise) and
``sni``, carried to the workers in the snapshot, exported and applied back without a change."""

from __future__ import annotations

import time
from typing import Any

import pytest
import trustme
from fastapi.testclient import TestClient

from data_plane.snapshot import Snapshot
from tests.integration.control_plane.factories import make_target, make_upstream, revision

CA = trustme.CA()
CA_PEM = CA.cert_pem.bytes().decode()
OTHER_PEM = trustme.CA().cert_pem.bytes().decode()


def _errors(response: Any) -> list[tuple[str, str]]:
    assert response.status_code == 422, response.text
    return [(str(err["loc"][-1]), err["msg"]) for err in response.json()["detail"]]


def _snapshot(client: TestClient, cluster_headers: dict[str, str]) -> Snapshot:
    """The published snapshot of the current revision (the publisher rebuilds after a write: under
    load the first answer can still be the previous one)."""
    want = revision(client)
    deadline = time.monotonic() + 10
    while True:
        r = client.get("/cluster/v1/snapshot", params={"wait": 0}, headers=cluster_headers)
        assert r.status_code == 200, r.text
        snap = Snapshot.from_json(r.content)
        if snap.revision >= want or time.monotonic() > deadline:
            assert snap.revision >= want, f"snapshot of revision {want} not published"
            return snap
        time.sleep(0.02)


def test_defaults_patch_and_what_the_workers_get(client: TestClient, cluster_headers: dict[str, str]) -> None:
    up = make_upstream(client, "orders")
    assert (up["tls_verify"], up["ca_certificates"], up["sni"]) == (True, None, None)
    plain = make_target(client, up["id"], host="10.0.0.1", port=80)
    assert plain["scheme"] == "http"
    secure = make_target(client, up["id"], host="api.internal", port=443, scheme="https")
    assert secure["scheme"] == "https"

    patched = client.patch(
        f"/v1/upstreams/{up['id']}", json={"ca_certificates": CA_PEM + OTHER_PEM, "sni": "API.Example.com"}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["ca_certificates"] == CA_PEM + OTHER_PEM
    assert patched.json()["sni"] == "api.example.com"  # host names are case-insensitive: stored lower case
    lab = make_upstream(client, "lab", tls_verify=False)

    snap = _snapshot(client, cluster_headers)
    by_name = {u.name: u for u in snap.upstreams}
    orders = by_name["orders"]
    assert {(t.host, t.scheme) for t in orders.targets} == {("10.0.0.1", "http"), ("api.internal", "https")}
    assert (orders.tls_verify, orders.ca_certificates, orders.sni) == (True, CA_PEM + OTHER_PEM, "api.example.com")
    assert by_name["lab"].tls_verify is False

    # null goes back to the defaults, which leave the hashed content (older cache files keep their hash)
    client.patch(f"/v1/upstreams/{up['id']}", json={"ca_certificates": None, "sni": None})
    client.patch(f"/v1/upstreams/{lab['id']}", json={"tls_verify": True})
    client.patch(f"/v1/upstreams/{up['id']}/targets/{secure['id']}", json={"scheme": "http"})
    wire = {u["name"]: u for u in _snapshot(client, cluster_headers).to_dict()["upstreams"]}
    for u in wire.values():
        assert not {"tls_verify", "ca_certificates", "sni"} & set(u), u
        assert all("scheme" not in t for t in u["targets"])


NOT_PEM = "hello"
GARBLED = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
KEY = CA.issue_cert("x.test").private_key_pem.bytes().decode()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (NOT_PEM, "not a PEM bundle of X.509 certificates"),
        (GARBLED, "not a PEM bundle of X.509 certificates"),
        (KEY, "CA certificates only, not a private key"),
        (CA_PEM + KEY, "CA certificates only, not a private key"),
    ],
)
def test_bad_ca_certificates_are_422_with_a_clear_message(client: TestClient, value: str, message: str) -> None:
    [(field, msg)] = _errors(client.post("/v1/upstreams", json={"name": "x", "ca_certificates": value}))
    assert field == "ca_certificates" and message in msg
    up = make_upstream(client, "y")
    [(field, msg)] = _errors(client.patch(f"/v1/upstreams/{up['id']}", json={"ca_certificates": value}))
    assert field == "ca_certificates" and message in msg
    r = client.post("/v1/upstreams", json={"name": "z", "ca_certificates": value})
    assert "PRIVATE KEY" not in r.text  # the refused input is never echoed
    assert client.get(f"/v1/upstreams/{up['id']}").json()["ca_certificates"] is None


@pytest.mark.parametrize("value", ["", "-bad.example", "a..b", "10.0.0.1", "[::1]", "host name", "x" * 64 + ".test"])
def test_bad_sni_is_422(client: TestClient, value: str) -> None:
    assert [f for f, _ in _errors(client.post("/v1/upstreams", json={"name": "x", "sni": value}))] == ["sni"]


def test_bad_scheme_is_422(client: TestClient) -> None:
    up = make_upstream(client, "orders")
    r = client.post(f"/v1/upstreams/{up['id']}/targets", json={"host": "h", "port": 443, "scheme": "ftp"})
    assert [f for f, _ in _errors(r)] == ["scheme"]


def _apply(client: TestClient, doc: dict[str, Any]) -> Any:
    return client.post("/v1/config/apply", json={"config": doc})


def test_declarative_round_trip(client: TestClient) -> None:
    doc = {
        "upstreams": [
            {
                "name": "secure",
                "ca_certificates": CA_PEM,
                "sni": "api.example.com",
                "targets": [{"host": "10.0.0.1", "port": 443, "scheme": "https"}],
            },
            {"name": "lab", "tls_verify": False, "targets": [{"host": "10.0.0.2", "port": 8443, "scheme": "https"}]},
            {"name": "plain", "targets": [{"host": "10.0.0.3", "port": 80}]},
        ]
    }
    assert _apply(client, doc).status_code == 200
    exported = client.get("/v1/config/export").json()
    ups = {u["name"]: u for u in exported["upstreams"]}
    assert (ups["secure"]["ca_certificates"], ups["secure"]["sni"]) == (CA_PEM, "api.example.com")
    assert ups["lab"]["tls_verify"] is False and ups["plain"]["tls_verify"] is True
    assert [t["scheme"] for t in ups["secure"]["targets"]] == ["https"]
    assert [t["scheme"] for t in ups["plain"]["targets"]] == ["http"]

    rev = revision(client)
    for same in (doc, exported):  # the file again, and the export: nothing to do
        body = _apply(client, same).json()
        assert body["changed"] is False and body["changes"] == [], body
    assert revision(client) == rev

    doc["upstreams"][0]["targets"][0]["scheme"] = "http"
    doc["upstreams"][1]["tls_verify"] = True
    body = _apply(client, doc).json()
    assert sorted((c["address"], tuple(c["fields"])) for c in body["changes"]) == [
        ("upstream lab", ("tls_verify",)),
        ("upstream secure / target 10.0.0.1:443", ("scheme",)),
    ]

    doc["upstreams"][0]["ca_certificates"] = "not pem"
    [error] = _apply(client, doc).json()["detail"]
    assert error["loc"] == ["body", "config", "upstreams", 0, "ca_certificates"]
