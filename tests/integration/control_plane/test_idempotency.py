"""``Idempotency-Key`` on admin POSTs (Stripe's semantics), ``PUT .../usage/remaining`` and the audit
trail of quota changes, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from control_plane.models import AuditEntry, IdempotencyRecord
from tests.integration.control_plane.factories import created, make_api, make_route, make_upstream, revision

USAGE = "/cluster/v1/usage"


def _customer_with_quota(client: TestClient, limit: int = 100) -> tuple[str, str]:
    up = make_upstream(client)
    api = make_api(client, f"shop-{uuid.uuid4().hex[:6]}", base_path=f"/s{uuid.uuid4().hex[:6]}", auth="api_key")
    make_route(client, api["id"], up["id"], "/{p+}")
    body = {
        "name": f"p-{uuid.uuid4().hex[:6]}",
        "quota": {"limit": limit, "period": "MONTH"},
        "apis": [{"api_id": api["id"]}],
    }
    plan = created(client.post("/v1/usage-plans", json=body))
    cust = created(client.post("/v1/customers", json={"name": f"c-{uuid.uuid4().hex[:6]}"}))
    assert client.put(f"/v1/customers/{cust['id']}/plan", json={"plan_id": plan["id"]}).status_code == 200
    return cust["id"], api["id"]


def _sessions(client: TestClient) -> Any:
    return client.app.state.sessions  # type: ignore[attr-defined]


def test_a_retried_grant_is_applied_once_and_the_first_answer_replayed(client: TestClient) -> None:
    cust, _ = _customer_with_quota(client)
    key = {"Idempotency-Key": f"grant-{uuid.uuid4()}"}
    first = client.post(f"/v1/customers/{cust}/usage/adjust", json={"extra": 50}, headers=key)
    assert first.status_code == 200 and first.json()["extra"] == 50
    rev = revision(client)
    again = client.post(f"/v1/customers/{cust}/usage/adjust", json={"extra": 50}, headers=key)
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert revision(client) == rev  # nothing ran the second time
    other = client.post(f"/v1/customers/{cust}/usage/adjust", json={"extra": 50}, headers={"Idempotency-Key": "k2"})
    assert other.json()["extra"] == 100  # a new key is a new grant
    plain = client.post(f"/v1/customers/{cust}/usage/adjust", json={"extra": 1})
    assert plain.json()["extra"] == 101  # without the header nothing changes from before


def test_the_same_key_with_another_body_or_path_is_422(client: TestClient) -> None:
    cust, _ = _customer_with_quota(client)
    key = {"Idempotency-Key": "reused"}
    assert client.post(f"/v1/customers/{cust}/usage/adjust", json={"extra": 5}, headers=key).status_code == 200
    r = client.post(f"/v1/customers/{cust}/usage/adjust", json={"extra": 6}, headers=key)
    assert r.status_code == 422 and "another request" in r.json()["detail"][0]["msg"]
    assert r.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    r = client.post("/v1/customers", json={"name": "x"}, headers=key)
    assert r.status_code == 422
    assert client.post("/v1/customers", json={"name": "y"}, headers={"Idempotency-Key": "bad\tkey"}).status_code == 422


def test_creates_replay_with_their_location_and_failures_are_kept_too(client: TestClient) -> None:
    key = {"Idempotency-Key": f"create-{uuid.uuid4()}"}
    first = client.post("/v1/customers", json={"name": "once"}, headers=key)
    again = client.post("/v1/customers", json={"name": "once"}, headers=key)
    assert first.status_code == again.status_code == 201 and first.json()["id"] == again.json()["id"]
    assert len([c for c in client.get("/v1/customers").json()["items"] if c["name"] == "once"]) == 1
    bad = {"Idempotency-Key": "bad-body"}
    assert client.post("/v1/customers", json={"nope": 1}, headers=bad).status_code == 422
    assert client.post("/v1/customers", json={"nope": 1}, headers=bad).headers.get("idempotent-replayed") == "true"


def test_keys_are_per_admin_token(client: TestClient) -> None:
    token = created(client.post("/v1/admin-tokens", json={"name": "ci", "role": "admin"}))["token"]
    key = "shared-name"
    mine = client.post("/v1/customers", json={"name": "mine"}, headers={"Idempotency-Key": key})
    theirs = client.post(
        "/v1/customers", json={"name": "theirs"}, headers={"Idempotency-Key": key, "Authorization": f"Bearer {token}"}
    )
    assert mine.status_code == theirs.status_code == 201 and mine.json()["id"] != theirs.json()["id"]
    no_auth = client.post("/v1/customers", json={"name": "z"}, headers={"Idempotency-Key": "k", "Authorization": ""})
    assert no_auth.status_code == 401


def test_in_progress_lost_answers_and_abandoned_attempts(client: TestClient) -> None:
    import hashlib

    from tests.integration.control_plane.conftest import ADMIN_TOKEN

    owner = hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()
    cust, _ = _customer_with_quota(client)
    path = f"/v1/customers/{cust}/usage/adjust"
    fingerprint = hashlib.sha256(b"\0".join((path.encode(), b"", b'{"extra":7}'))).hexdigest()
    now = datetime.now(UTC)
    with _sessions(client)() as s:
        s.add(IdempotencyRecord(scope=owner, key="running", fingerprint=fingerprint, created_at=now))
        s.add(IdempotencyRecord(scope=owner, key="lost", fingerprint=fingerprint, created_at=now, committed=True))
        s.add(IdempotencyRecord(scope=owner, key="died", fingerprint=fingerprint, created_at=now - timedelta(hours=1)))
        s.add(IdempotencyRecord(scope=owner, key="expired", fingerprint="0" * 64, created_at=now - timedelta(days=2)))
        s.commit()
    body = b'{"extra":7}'
    headers = {"content-type": "application/json"}
    r = client.post(path, content=body, headers={**headers, "Idempotency-Key": "running"})
    assert r.status_code == 409 and "in progress" in r.json()["detail"]
    r = client.post(path, content=body, headers={**headers, "Idempotency-Key": "lost"})
    assert r.status_code == 409 and "applied" in r.json()["detail"]
    r = client.post(path, content=body, headers={**headers, "Idempotency-Key": "died"})
    assert r.status_code == 200 and r.json()["extra"] == 7  # died before committing: this one runs
    r = client.post(path, content=body, headers={**headers, "Idempotency-Key": "expired"})
    assert r.status_code == 200 and r.json()["extra"] == 14  # older than 24 h: forgotten, a new request
    with _sessions(client)() as s:
        assert s.get(IdempotencyRecord, (owner, "expired")).fingerprint == fingerprint
        assert s.get(IdempotencyRecord, (owner, "died")).committed


def test_put_remaining_sets_the_quota_left_and_the_audit_log_has_before_and_after(
    client: TestClient, cluster_headers: dict[str, str]
) -> None:
    cust, api = _customer_with_quota(client, limit=100)
    today = datetime.now(UTC).date().isoformat()
    batch = {
        "batch_id": str(uuid.uuid4()),
        "node_id": "n1",
        "counts": [{"customer_id": cust, "api_id": api, "day": today, "count": 30}],
    }
    assert client.post(USAGE, json=batch, headers=cluster_headers).status_code in (200, 202, 204)
    for _ in range(2):  # the same body twice: the same state
        r = client.put(f"/v1/customers/{cust}/usage/remaining", json={"remaining": 500})
        assert r.status_code == 200, r.text
        got = r.json()
        assert (got["used"], got["remaining"], got["extra"], got["limit"]) == (30, 500, 430, 530)
    report = client.get(f"/v1/customers/{cust}/usage", params={"start": today, "end": today}).json()
    assert report["days"][0]["quota_remaining"] == 500
    assert client.put(f"/v1/customers/{cust}/usage/remaining", json={"remaining": -1}).status_code == 422
    client.post(f"/v1/customers/{cust}/usage/adjust", json={"extra": -30})
    with _sessions(client)() as s:
        entries = [e for e in s.query(AuditEntry).order_by(AuditEntry.id) if e.resource_id == cust and e.detail]
    assert [e.detail["extra"] for e in entries] == [
        {"before": 0, "after": 430},
        {"before": 430, "after": 430},
        {"before": 430, "after": 400},
    ]
    assert entries[0].detail["remaining"] == {"before": 70, "after": 500}
    listed = client.get("/v1/audit").json()["items"]
    assert any(item["detail"] and item["detail"]["extra"] == {"before": 430, "after": 400} for item in listed)


def test_the_openapi_document_declares_the_header_on_every_post(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    posts = [(p, ops["post"]) for p, ops in doc["paths"].items() if "post" in ops and p.startswith("/v1/")]
    assert len(posts) > 10
    for path, op in posts:
        assert any(prm["name"] == "Idempotency-Key" and prm["in"] == "header" for prm in op.get("parameters", [])), path
    assert "put" in doc["paths"]["/v1/customers/{customer_id}/usage/remaining"]
