"""``/v1/certificates`` on SQLite and PostgreSQL: validation, the write-only key (never in a response, the
audit log, the database file), SNI and default rules, the sealed key in the snapshot, the expiry gauge."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from sqlalchemy import select

from control_plane.errors import SecretUnreadable
from control_plane.models import Certificate
from control_plane.secretbox import SecretBox
from control_plane.settings import Settings
from control_plane.snapshots.build import build_snapshot
from data_plane.snapshot import Snapshot
from data_plane.tls.seal import open_sealed
from tests.integration.certificates_support import (
    Pem,
    encrypted_key,
    expired,
    issue,
    leaf_of,
    make_certificate,
    not_yet_valid,
)
from tests.integration.control_plane.conftest import CLUSTER_TOKEN
from tests.integration.control_plane.factories import created


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def pem(ca: trustme.CA) -> Pem:
    return issue(ca, "api.example.com", "*.example.com")


def _no_key(text: str, pem: Pem) -> None:
    """No line of the key's base64 body (64 characters each) appears in ``text``."""
    assert "PRIVATE KEY" not in text
    for line in pem.key_lines:
        assert line not in text


def test_create_shows_the_certificate_and_never_the_key(client: TestClient, pem: Pem) -> None:
    body = make_certificate(client, pem, ["API.example.com", "*.Example.com"], name="main")
    leaf = leaf_of(pem)
    assert body["name"] == "main"
    assert body["snis"] == ["*.example.com", "api.example.com"]  # lower-cased, sorted
    assert body["default"] is False
    assert set(body["sans"]) == {"api.example.com", "*.example.com"}
    assert body["subject"] == leaf.subject.rfc4514_string()
    assert body["issuer"] == leaf.issuer.rfc4514_string()
    assert body["fingerprint_sha256"] == hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert dt.datetime.fromisoformat(body["not_after"]) == leaf.not_valid_after_utc
    assert dt.datetime.fromisoformat(body["not_before"]) == leaf.not_valid_before_utc
    assert "key" not in body and "key_encrypted" not in body
    listed = client.get("/v1/certificates")
    assert listed.json()["total"] == 1 and listed.json()["items"][0]["id"] == body["id"]
    one = client.get(f"/v1/certificates/{body['id']}")
    assert one.status_code == 200 and one.json() == body
    audit = client.get("/v1/audit")
    assert audit.status_code == 200 and body["id"] in audit.text
    for text in (listed.text, one.text, audit.text, client.get("/v1/config/export").text):
        _no_key(text, pem)


def test_name_defaults_to_the_first_server_name(client: TestClient, ca: trustme.CA) -> None:
    body = make_certificate(client, issue(ca, "*.shop.example"), ["*.shop.example"])
    assert body["name"] == "wildcard.shop.example"
    second = make_certificate(client, issue(ca, "x.example"), [])
    assert second["name"] == second["id"]


def test_pagination_like_other_lists(client: TestClient, ca: trustme.CA) -> None:
    for i in range(3):
        make_certificate(client, issue(ca, f"h{i}.example.com"), [f"h{i}.example.com"], name=f"c{i}")
    page = client.get("/v1/certificates", params={"limit": 2, "offset": 1}).json()
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 1)
    assert [c["name"] for c in page["items"]] == ["c1", "c2"]


def _problem(response: Any) -> str:
    assert response.status_code == 422, response.text
    return " | ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in response.json()["detail"])


def test_mismatched_key_is_422_naming_the_key(client: TestClient, ca: trustme.CA, pem: Pem) -> None:
    other = issue(ca, "other.example.com")
    r = client.post("/v1/certificates", json={"cert": pem.cert, "key": other.key, "snis": []})
    assert "body.key: key does not match the certificate" in _problem(r)
    _no_key(r.text, other)
    _no_key(r.text, pem)


def test_wrong_chain_order_is_422(client: TestClient, ca: trustme.CA) -> None:
    intermediate = ca.create_child_ca()
    leaf = intermediate.issue_cert("deep.example.com")
    blobs = [b.bytes().decode() for b in leaf.cert_chain_pems]
    key = leaf.private_key_pem.bytes().decode()
    ok = client.post("/v1/certificates", json={"cert": "".join(blobs), "key": key, "snis": ["deep.example.com"]})
    assert ok.status_code == 201, ok.text
    client.delete(f"/v1/certificates/{ok.json()['id']}")
    reversed_chain = client.post("/v1/certificates", json={"cert": "".join(reversed(blobs)), "key": key})
    assert "key belongs to certificate 2 of cert; the leaf certificate must come first" in _problem(reversed_chain)
    # leaf first but then a certificate that did not issue it (the root instead of the intermediate)
    wrong_issuer = "".join([blobs[0], ca.cert_pem.bytes().decode()])
    r = client.post("/v1/certificates", json={"cert": wrong_issuer, "key": key})
    assert "certificate 2 of cert is not the issuer of certificate 1" in _problem(r)


def test_expired_and_not_yet_valid_are_422(client: TestClient, ca: trustme.CA) -> None:
    old = expired(ca)
    r = client.post("/v1/certificates", json={"cert": old.cert, "key": old.key})
    assert "body.cert: the certificate expired on" in _problem(r)
    soon = not_yet_valid(ca)
    r = client.post("/v1/certificates", json={"cert": soon.cert, "key": soon.key})
    assert "body.cert: the certificate is not valid before" in _problem(r)


def test_encrypted_key_is_refused(client: TestClient, pem: Pem) -> None:
    locked = encrypted_key(pem)
    r = client.post("/v1/certificates", json={"cert": pem.cert, "key": locked})
    assert "key is encrypted (password-protected)" in _problem(r)
    assert locked.splitlines()[1] not in r.text


@pytest.mark.parametrize(
    "sni", ["bad name.example.com", "*.*.example.com", "a*.example.com", "exa_mple.com", "-x.example.com", ""]
)
def test_bad_server_names_are_422(client: TestClient, pem: Pem, sni: str) -> None:
    r = client.post("/v1/certificates", json={"cert": pem.cert, "key": pem.key, "snis": [sni]})
    assert "is not a host name or a *.example.com wildcard" in _problem(r)
    _no_key(r.text, pem)


def test_unreadable_pem_is_422_without_echo(client: TestClient, pem: Pem) -> None:
    r = client.post("/v1/certificates", json={"cert": "not a certificate", "key": pem.key})
    assert "body.cert: cert holds no PEM certificate" in _problem(r)
    broken_key = pem.key.replace(pem.key_lines[1], "A" * len(pem.key_lines[1]))
    r = client.post("/v1/certificates", json={"cert": pem.cert, "key": broken_key})
    assert "body.key: key is not a readable PEM private key" in _problem(r)
    _no_key(r.text, pem)


def test_one_certificate_per_server_name(client: TestClient, ca: trustme.CA, pem: Pem) -> None:
    first = make_certificate(client, pem, ["api.example.com"], name="first")
    other = issue(ca, "api.example.com")
    r = client.post("/v1/certificates", json={"cert": other.cert, "key": other.key, "snis": ["API.example.com"]})
    assert r.status_code == 409
    assert (
        r.json()["detail"] == f"server name 'api.example.com' is already served by certificate 'first' ({first['id']})"
    )
    second = make_certificate(client, other, ["www.example.com"], name="second")
    r = client.patch(f"/v1/certificates/{second['id']}", json={"snis": ["www.example.com", "api.example.com"]})
    assert r.status_code == 409 and "'first'" in r.json()["detail"]
    # the name moves once the first certificate lets it go
    assert client.patch(f"/v1/certificates/{first['id']}", json={"snis": []}).status_code == 200
    r = client.patch(f"/v1/certificates/{second['id']}", json={"snis": ["www.example.com", "api.example.com"]})
    assert r.status_code == 200 and r.json()["snis"] == ["api.example.com", "www.example.com"]
    dup = client.post("/v1/certificates", json={"cert": pem.cert, "key": pem.key, "name": "second"})
    assert dup.status_code == 409 and "certificate name 'second' is already used" in dup.json()["detail"]


def test_default_moves_to_the_certificate_that_sets_it(client: TestClient, ca: trustme.CA) -> None:
    a = make_certificate(client, issue(ca, "a.example.com"), ["a.example.com"], name="a", default=True)
    b = make_certificate(client, issue(ca, "b.example.com"), ["b.example.com"], name="b", default=True)
    assert b["default"] is True
    assert client.get(f"/v1/certificates/{a['id']}").json()["default"] is False
    client.patch(f"/v1/certificates/{a['id']}", json={"default": True})
    defaults = [c["name"] for c in client.get("/v1/certificates").json()["items"] if c["default"]]
    assert defaults == ["a"]
    client.patch(f"/v1/certificates/{a['id']}", json={"default": False})
    assert not any(c["default"] for c in client.get("/v1/certificates").json()["items"])


def test_renew_replaces_cert_and_key_together(client: TestClient, ca: trustme.CA, pem: Pem) -> None:
    row = make_certificate(client, pem, ["api.example.com"], name="main")
    renewed = issue(ca, "api.example.com")
    r = client.patch(f"/v1/certificates/{row['id']}", json={"cert": renewed.cert})
    assert "body.key: cert and key are replaced together" in _problem(r)
    r = client.patch(f"/v1/certificates/{row['id']}", json={"cert": renewed.cert, "key": pem.key})
    assert "key does not match the certificate" in _problem(r)
    r = client.patch(f"/v1/certificates/{row['id']}", json={"cert": renewed.cert, "key": renewed.key, "name": "m2"})
    assert r.status_code == 200, r.text
    assert r.json()["fingerprint_sha256"] != row["fingerprint_sha256"] and r.json()["name"] == "m2"
    assert r.json()["snis"] == ["api.example.com"]
    _no_key(r.text, renewed)
    snap = _snapshot(client)
    (cert,) = snap["certificates"]
    assert _same_key(open_sealed(cert["key"], row["id"], CLUSTER_TOKEN), renewed.key)


def test_delete_and_not_found(client: TestClient, pem: Pem) -> None:
    row = make_certificate(client, pem, ["api.example.com"])
    assert client.delete(f"/v1/certificates/{row['id']}").status_code == 204
    for r in (
        client.get(f"/v1/certificates/{row['id']}"),
        client.patch(f"/v1/certificates/{row['id']}", json={"name": "x"}),
        client.delete(f"/v1/certificates/{row['id']}"),
    ):
        assert r.status_code == 404 and r.json() == {"detail": f"certificate {row['id']!r} not found"}
    # its server name is free again
    make_certificate(client, pem, ["api.example.com"])


def test_viewer_reads_but_cannot_write(client: TestClient, pem: Pem) -> None:
    issued = created(client.post("/v1/admin-tokens", json={"name": "v", "role": "viewer"}))
    viewer = {"Authorization": f"Bearer {issued['token']}"}
    make_certificate(client, pem, [])
    assert client.get("/v1/certificates", headers=viewer).json()["total"] == 1
    r = client.post("/v1/certificates", json={"cert": pem.cert, "key": pem.key}, headers=viewer)
    assert r.status_code == 403
    _no_key(r.text, pem)
    assert client.get("/v1/certificates", headers={"Authorization": "Bearer nope"}).status_code == 401


def _snapshot(client: TestClient) -> dict[str, Any]:
    r = client.get("/cluster/v1/snapshot", headers={"Authorization": f"Bearer {CLUSTER_TOKEN}"})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _same_key(opened: bytes, key_pem: str) -> bool:
    a = serialization.load_pem_private_key(opened, password=None)
    b = serialization.load_pem_private_key(key_pem.encode(), password=None)
    der = serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    return a.private_bytes(*der) == b.private_bytes(*der)


def test_snapshot_carries_the_key_sealed_for_the_workers(client: TestClient, pem: Pem) -> None:
    row = make_certificate(client, pem, ["api.example.com", "*.example.com"], default=True)
    r = client.get("/cluster/v1/snapshot", headers={"Authorization": f"Bearer {CLUSTER_TOKEN}"})
    _no_key(r.text, pem)
    (cert,) = r.json()["certificates"]
    assert cert["id"] == row["id"] and cert["snis"] == ["*.example.com", "api.example.com"]
    assert cert["default"] is True
    assert cert["cert"].startswith("-----BEGIN CERTIFICATE-----")
    assert cert["key"].startswith("tgseal1:")
    assert _same_key(open_sealed(cert["key"], row["id"], CLUSTER_TOKEN), pem.key)
    # the hash is stable: an identical rebuild (another replica, a restart) seals to the same bytes
    assert _snapshot(client)["hash"] == r.json()["hash"]
    parsed = Snapshot.from_json(r.content)  # what a worker's parser accepts (types, references, hash)
    assert parsed.certificates[0].key == cert["key"] and parsed.hash == r.json()["hash"]


def test_key_is_encrypted_at_rest(client: TestClient, settings: Settings, pem: Pem) -> None:
    row = make_certificate(client, pem, ["api.example.com"])
    sessions = client.app.state.sessions  # type: ignore[attr-defined]
    with sessions() as session:
        stored = session.execute(select(Certificate.key_encrypted).where(Certificate.id == row["id"])).scalar_one()
    assert stored.startswith("tgenc1:")
    _no_key(stored, pem)
    if settings.is_sqlite:
        client.app.state.engine.dispose()  # type: ignore[attr-defined]
        raw = Path(settings.database_url.removeprefix("sqlite:///"))
        data = b"".join(p.read_bytes() for p in raw.parent.glob(raw.name + "*"))  # the file and its -wal
        assert pem.cert.splitlines()[1].encode() in data  # the file was read: the certificate is in it
        for line in pem.key_lines:
            assert line.encode() not in data


def test_secret_key_file_is_generated_with_mode_0600(client: TestClient, settings: Settings) -> None:
    path = settings.data_dir / "secret-key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(path.read_text().strip()) >= 32


def test_metrics_gauge_counts_seconds_to_expiry(client: TestClient, ca: trustme.CA) -> None:
    not_after = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=10)
    pem = issue(ca, "gauge.example.com", not_after=not_after)
    row = make_certificate(client, pem, ["gauge.example.com"], name="gauge")
    text = client.get("/metrics").text
    line = next(ln for ln in text.splitlines() if ln.startswith("tollgate_certificate_expiry_seconds{"))
    assert f'id="{row["id"]}"' in line and 'name="gauge"' in line
    value = float(line.rsplit(" ", 1)[1])
    assert abs(value - (not_after.timestamp() - time.time())) < 60
    client.delete(f"/v1/certificates/{row['id']}")
    assert "tollgate_certificate_expiry_seconds{" not in client.get("/metrics").text


def test_a_replica_with_another_secret_key_cannot_build_the_snapshot(client: TestClient, pem: Pem) -> None:
    row = make_certificate(client, pem, ["api.example.com"])
    sessions = client.app.state.sessions  # type: ignore[attr-defined]
    with sessions() as session:
        snap = build_snapshot(session, box=client.app.state.secret_box, cluster_token=CLUSTER_TOKEN)  # type: ignore[attr-defined]
        assert [c.id for c in snap.certificates] == [row["id"]]
    with sessions() as session, pytest.raises(SecretUnreadable) as info:
        build_snapshot(session, box=SecretBox("another secret"), cluster_token=CLUSTER_TOKEN)
    assert row["id"] in str(info.value) and "TOLLGATE_SECRET_KEY" in str(info.value)
    with sessions() as session, pytest.raises(ValueError, match="needs the secret box and the cluster token"):
        build_snapshot(session)
