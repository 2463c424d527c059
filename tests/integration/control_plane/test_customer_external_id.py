"""Customers' ``external_id`` (issue 19, item 9): the customer's id in an identity provider, unique, in
the admin API, the declarative document and the snapshot (where a JWT's customer claim may name it)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from data_plane.snapshot import Snapshot
from tests.integration.control_plane.factories import created

IDP_ID = "auth0|64f0c2a9e1b2"


def test_external_id_is_unique_settable_and_clearable(client: TestClient, cluster_headers: dict[str, str]) -> None:
    acme = created(client.post("/v1/customers", json={"name": "acme", "external_id": IDP_ID}))
    assert acme["external_id"] == IDP_ID and client.get(f"/v1/customers/{acme['id']}").json()["external_id"] == IDP_ID
    other = created(client.post("/v1/customers", json={"name": "other"}))
    assert other["external_id"] is None

    taken = client.post("/v1/customers", json={"name": "copy", "external_id": IDP_ID})
    assert taken.status_code == 409 and "external id" in taken.json()["detail"]
    # another customer's Tollgate id is refused too: a JWT claim is looked up as an id first
    assert client.patch(f"/v1/customers/{other['id']}", json={"external_id": acme["id"]}).status_code == 409
    assert client.patch(f"/v1/customers/{other['id']}", json={"external_id": IDP_ID}).status_code == 409
    assert client.patch(f"/v1/customers/{acme['id']}", json={"external_id": IDP_ID}).status_code == 200  # its own
    bad = client.post("/v1/customers", json={"name": "spaces", "external_id": "has spaces"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "external_id"]

    snap = Snapshot.from_json(client.get("/cluster/v1/snapshot", params={"wait": 0}, headers=cluster_headers).content)
    assert {c.id: c.external_id for c in snap.customers} == {acme["id"]: IDP_ID, other["id"]: ""}

    cleared = client.patch(f"/v1/customers/{acme['id']}", json={"external_id": None})
    assert cleared.status_code == 200 and cleared.json()["external_id"] is None
    assert created(client.post("/v1/customers", json={"name": "copy", "external_id": IDP_ID}))["external_id"] == IDP_ID


def test_the_declarative_document_carries_external_id(client: TestClient) -> None:
    doc = {"customers": [{"name": "acme", "external_id": IDP_ID}]}
    r = client.post("/v1/config/apply", json={"config": doc})
    assert r.status_code == 200, r.text
    (customer,) = client.get("/v1/customers").json()["items"]
    assert customer["external_id"] == IDP_ID
    exported = client.get("/v1/config/export").json()
    assert exported["customers"][0]["external_id"] == IDP_ID
    again = client.post("/v1/config/apply", json={"config": exported})
    assert again.status_code == 200 and again.json()["changed"] is False
