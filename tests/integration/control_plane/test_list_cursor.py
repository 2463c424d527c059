"""Admin lists at size (issue 21 item 4): keyset cursors stable under inserts, filters, offsets still work."""

from __future__ import annotations

from fastapi.testclient import TestClient


def _all(client: TestClient, path: str, **params: object) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    page = client.get(path, params={"limit": 3, **params}).json()
    while True:
        out += page["items"]
        if not page["next"]:
            return out
        page = client.get(path, params={"limit": 3, "cursor": page["next"], **params}).json()


def test_following_next_sees_every_row_once_while_rows_are_added(client: TestClient) -> None:
    first = [client.post("/v1/customers", json={"name": f"c{i}"}).json()["id"] for i in range(7)]
    seen: list[str] = []
    page = client.get("/v1/customers", params={"limit": 3}).json()
    assert page["total"] == 7 and page["offset"] == 0 and len(page["items"]) == 3
    added = 0
    while True:
        seen += [item["id"] for item in page["items"]]
        client.post("/v1/customers", json={"name": f"late{added}"})  # inserted between two pages
        added += 1
        if not page["next"]:
            break
        page = client.get("/v1/customers", params={"limit": 3, "cursor": page["next"]}).json()
    assert len(seen) == len(set(seen))  # nothing twice
    assert set(first) <= set(seen)  # nothing skipped


def test_filters_and_offsets(client: TestClient) -> None:
    plan = client.post("/v1/usage-plans", json={"name": "gold"}).json()["id"]
    for i in range(5):
        c = client.post("/v1/customers", json={"name": f"acme-{i}", "email": f"x{i}@acme.test"}).json()
        if i % 2:
            client.put(f"/v1/customers/{c['id']}/plan", json={"plan_id": plan}).raise_for_status()
    client.post("/v1/customers", json={"name": "other"})
    assert len(_all(client, "/v1/customers", name="acme-")) == 5
    assert [c["name"] for c in _all(client, "/v1/customers", email="x3@acme.test")] == ["acme-3"]
    assert sorted(c["name"] for c in _all(client, "/v1/customers", plan_id=plan)) == ["acme-1", "acme-3"]
    by_offset = client.get("/v1/customers", params={"limit": 4, "offset": 4}).json()
    assert [c["name"] for c in by_offset["items"]] == ["acme-4", "other"] and by_offset["total"] == 6
    assert client.get("/v1/customers", params={"cursor": "not-a-cursor"}).status_code == 422


def test_keys_by_prefix_and_status(client: TestClient) -> None:
    cid = client.post("/v1/customers", json={"name": "keys"}).json()["id"]
    keys = [client.post(f"/v1/customers/{cid}/keys", json={}).json() for _ in range(5)]
    client.delete(f"/v1/customers/{cid}/keys/{keys[0]['id']}").raise_for_status()
    path = f"/v1/customers/{cid}/keys"
    assert len(_all(client, path)) == 5
    assert [k["id"] for k in _all(client, path, status="revoked")] == [keys[0]["id"]]
    assert len(_all(client, path, status="active")) == 4
    prefix = keys[2]["prefix"]
    assert keys[2]["id"] in [k["id"] for k in _all(client, path, prefix=prefix)]
