"""Client TLS fields of existing resources, on SQLite and PostgreSQL: APIs' ``https_only`` and auth ``mtls``
with its trusted CAs, customers' client-certificate identities (normalised, unique), through the admin API
and into the snapshot."""

from __future__ import annotations

from typing import Any

import pytest
import trustme
from cryptography import x509
from fastapi.testclient import TestClient

from data_plane.snapshot import Snapshot
from tests.integration.certificates_support import issue
from tests.integration.control_plane.factories import created, make_api

FP = "ab" * 32


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _snapshot(client: TestClient, cluster_headers: dict[str, str]) -> Snapshot:
    r = client.get("/cluster/v1/snapshot", headers=cluster_headers)
    assert r.status_code == 200, r.text
    return Snapshot.from_json(r.content)


def _msgs(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in response.json()["detail"]]


def test_https_only_and_mtls_round_trip_into_the_snapshot(
    client: TestClient, cluster_headers: dict[str, str], ca: trustme.CA
) -> None:
    bundle = ca.cert_pem.bytes().decode()
    api = make_api(client, "secure", base_path="/s", https_only=True, auth="mtls", mtls_ca_certificates=bundle)
    assert api["https_only"] is True and api["auth"] == "mtls"
    assert api["mtls_ca_certificates"] == bundle
    plain = make_api(client, "plain", base_path="/p")
    assert plain["https_only"] is False and plain["mtls_ca_certificates"] is None
    apis = {a.name: a for a in _snapshot(client, cluster_headers).apis}
    assert apis["secure"].https_only is True and apis["secure"].auth == "mtls"
    assert apis["secure"].auth_settings.mtls_ca_certificates == bundle
    assert apis["plain"].https_only is False and apis["plain"].auth_settings.mtls_ca_certificates is None

    patched = client.patch(f"/v1/apis/{api['id']}", json={"https_only": False, "auth": "none"})
    assert patched.status_code == 200 and patched.json()["https_only"] is False
    assert _snapshot(client, cluster_headers).apis[1].https_only is False


def test_mtls_needs_usable_ca_certificates(client: TestClient, ca: trustme.CA) -> None:
    assert _msgs(client.post("/v1/apis", json={"name": "a", "auth": "mtls"})) == [
        "body.mtls_ca_certificates: auth mtls needs mtls_ca_certificates (PEM CA certificates)"
    ]
    leaf = issue(ca, "client.example.com").cert.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    r = client.post("/v1/apis", json={"name": "a", "auth": "mtls", "mtls_ca_certificates": leaf})
    assert _msgs(r) == [
        "body.mtls_ca_certificates: certificate 1 of mtls_ca_certificates is not a CA certificate "
        "(basicConstraints CA:TRUE)"
    ]
    r = client.post("/v1/apis", json={"name": "a", "auth": "mtls", "mtls_ca_certificates": "garbage"})
    assert _msgs(r) == [
        "body.mtls_ca_certificates: mtls_ca_certificates holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    ]
    api = make_api(client, "a", auth="mtls", mtls_ca_certificates=ca.cert_pem.bytes().decode())
    # clearing the CAs of an mtls API would leave it without trust anchors
    assert _msgs(client.patch(f"/v1/apis/{api['id']}", json={"mtls_ca_certificates": None})) == [
        "body.mtls_ca_certificates: auth mtls needs mtls_ca_certificates (PEM CA certificates)"
    ]


def test_customer_identities_are_normalised_and_reach_the_snapshot(
    client: TestClient, cluster_headers: dict[str, str]
) -> None:
    colons = ":".join(FP[i : i + 2] for i in range(0, 64, 2)).upper()
    subject = "CN=svc.example.com,O=Acme"
    body = created(
        client.post("/v1/customers", json={"name": "acme", "mtls_fingerprints": [colons], "mtls_subjects": [subject]})
    )
    assert body["mtls_fingerprints"] == [FP]
    assert body["mtls_subjects"] == [x509.Name.from_rfc4514_string(subject).rfc4514_string()]
    (customer,) = _snapshot(client, cluster_headers).customers
    assert customer.mtls_fingerprints == (FP,) and customer.mtls_subjects == (body["mtls_subjects"][0],)

    # a PATCH of one list keeps the other; [] clears it
    patched = client.patch(f"/v1/customers/{body['id']}", json={"mtls_fingerprints": []}).json()
    assert patched["mtls_fingerprints"] == [] and patched["mtls_subjects"] == body["mtls_subjects"]
    (customer,) = _snapshot(client, cluster_headers).customers
    assert customer.mtls_fingerprints == () and customer.mtls_subjects == (body["mtls_subjects"][0],)


def test_bad_identities_are_422(client: TestClient) -> None:
    r = client.post("/v1/customers", json={"name": "c", "mtls_fingerprints": ["abc"]})
    assert "is not a SHA-256 fingerprint (64 hex digits, colons allowed)" in _msgs(r)[0]
    r = client.post("/v1/customers", json={"name": "c", "mtls_subjects": ["not a dn"]})
    assert "is not an RFC 4514 distinguished name" in _msgs(r)[0]


def test_an_identity_belongs_to_one_customer(client: TestClient) -> None:
    acme = created(client.post("/v1/customers", json={"name": "acme", "mtls_fingerprints": [FP]}))
    r = client.post("/v1/customers", json={"name": "globex", "mtls_fingerprints": [FP.upper()]})
    assert r.status_code == 409
    assert r.json()["detail"] == f"client certificate fingerprint {FP!r} already identifies customer 'acme'"
    assert client.get("/v1/customers").json()["total"] == 1  # the create was rolled back whole
    globex = created(client.post("/v1/customers", json={"name": "globex", "mtls_subjects": ["CN=g"]}))
    r = client.patch(f"/v1/customers/{acme['id']}", json={"mtls_subjects": ["CN=g"]})
    assert r.status_code == 409 and "customer 'globex'" in r.json()["detail"]
    # once the owner is deleted the identity is free
    assert client.delete(f"/v1/customers/{globex['id']}").status_code == 204
    assert client.patch(f"/v1/customers/{acme['id']}", json={"mtls_subjects": ["CN=g"]}).status_code == 200
