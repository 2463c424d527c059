"""Certificates in the declarative config (``/v1/config/apply`` and ``/export``) on SQLite and PostgreSQL:
compared by name, fingerprint, server names and default; the key goes in and never comes out."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trustme
from fastapi.testclient import TestClient

from tests.integration.certificates_support import Pem, issue
from tests.integration.control_plane.factories import revision


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def pems(ca: trustme.CA) -> dict[str, Pem]:
    return {"a": issue(ca, "a.example.com"), "b": issue(ca, "b.example.com"), "a2": issue(ca, "a.example.com")}


def _apply(client: TestClient, doc: dict[str, Any], **flags: Any) -> Any:
    return client.post("/v1/config/apply", json={"config": doc, **flags})


def _entry(name: str, pem: Pem, snis: list[str], *, key: bool = True, default: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "cert": pem.cert, "snis": snis, "default": default}
    if key:
        entry["key"] = pem.key
    return entry


def _no_key(text: str, *pems: Pem) -> None:
    for pem in pems:
        for line in pem.key_lines:
            assert line not in text


def test_apply_diff_export_round_trip(client: TestClient, pems: dict[str, Pem]) -> None:
    doc = {
        "certificates": [
            _entry("a", pems["a"], ["A.example.com"], default=True),
            _entry("b", pems["b"], ["b.example.com"]),
        ]
    }
    dry = _apply(client, doc, dry_run=True)
    assert dry.status_code == 200, dry.text
    changes = dry.json()["changes"]
    assert [(c["action"], c["address"]) for c in changes] == [("create", "certificate a"), ("create", "certificate b")]
    assert set(changes[0]["after"]) == {"name", "fingerprint", "snis", "default"}
    assert changes[0]["after"]["snis"] == ["a.example.com"]
    _no_key(dry.text, *pems.values())
    before = revision(client)
    applied = _apply(client, doc)
    assert applied.status_code == 200 and applied.json()["changed"] is True
    assert revision(client) == before + 1
    _no_key(applied.text, *pems.values())

    exported = client.get("/v1/config/export")
    _no_key(exported.text, *pems.values())
    certs = exported.json()["certificates"]
    assert [c["name"] for c in certs] == ["a", "b"]
    assert "key" not in certs[0] and certs[0]["cert"].startswith("-----BEGIN CERTIFICATE-----")
    assert certs[0]["default"] is True and certs[1]["snis"] == ["b.example.com"]
    # the export applies as a no-op: no key is needed for a certificate that does not change
    again = _apply(client, exported.json())
    assert again.status_code == 200 and again.json()["changes"] == []
    assert revision(client) == before + 1


def test_renewal_needs_the_key_and_default_moves_in_one_apply(client: TestClient, pems: dict[str, Pem]) -> None:
    _apply(client, {"certificates": [_entry("a", pems["a"], ["a.example.com"], default=True)]})
    renewed = {"certificates": [_entry("a", pems["a2"], ["a.example.com"], key=False, default=True)]}
    r = _apply(client, renewed)
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "config", "certificates", 0]
    assert err["msg"] == (
        "certificate a: replacing the certificate (its fingerprint changes) needs its private key (key_file)"
    )
    dry = _apply(client, {"certificates": [_entry("a", pems["a2"], ["a.example.com"], default=True)]}, dry_run=True)
    (change,) = dry.json()["changes"]
    assert change["action"] == "update" and change["fields"] == ["fingerprint"]
    assert change["before"]["fingerprint"] != change["after"]["fingerprint"]

    # b takes the default from a; b is listed first, so the move must not depend on the order
    doc = {
        "certificates": [
            _entry("b", pems["b"], ["b.example.com"], default=True),
            _entry("a", pems["a2"], ["a.example.com"], default=False),
        ]
    }
    r = _apply(client, doc)
    assert r.status_code == 200, r.text
    by_name = {c["name"]: c for c in client.get("/v1/certificates").json()["items"]}
    assert by_name["b"]["default"] is True and by_name["a"]["default"] is False
    assert _apply(client, doc, dry_run=True).json()["changes"] == []


def test_document_errors(client: TestClient, pems: dict[str, Pem]) -> None:
    two = [_entry("a", pems["a"], [], default=True), _entry("b", pems["b"], [], default=True)]
    r = _apply(client, {"certificates": two})
    assert r.status_code == 422 and "at most one certificate is the default (a, b are)" in r.text
    r = _apply(client, {"certificates": [{"name": "a", "cert_file": "a.crt", "snis": []}]})
    assert r.status_code == 422 and "cert_file is read by `tollgate apply`" in r.text
    r = _apply(client, {"certificates": [_entry("a", pems["a"], ["bad name"])]})
    assert r.status_code == 422 and "is not a host name" in r.text
    _no_key(r.text, pems["a"])
    r = _apply(client, {"certificates": [{**_entry("a", pems["a"], []), "key": pems["b"].key}]})
    assert r.status_code == 422
    assert json.loads(r.text)["detail"][0]["msg"] == (
        "certificate a: key does not match the certificate (the leaf's public key is another one)"
    )
    _no_key(r.text, pems["a"], pems["b"])
    assert client.get("/v1/certificates").json()["total"] == 0
    r = _apply(client, {"certificates": [_entry("a", pems["a"], [], key=False)]})
    assert r.status_code == 422 and "a new certificate needs its private key (key_file)" in r.text
