"""``/v1/webhooks`` and the event outbox, on SQLite and PostgreSQL (in-process app, the sender off so
deliveries stay as written; tests/integration/test_webhook_delivery.py sends them to real receivers)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from control_plane.models import AuditEntry, IdempotencyRecord, WebhookDelivery, WebhookEndpoint, WebhookEvent
from control_plane.services import webhook_events, webhook_outbox
from control_plane.settings import Settings, WebhookSettings
from tests.integration.control_plane.factories import created, make_api, make_route, make_upstream

USAGE = "/cluster/v1/usage"
ALL_KEY_EVENTS = ["tollgate.key.created", "tollgate.key.revoked", "tollgate.key.expiring"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, webhooks=WebhookSettings(deliver=False))


def _sessions(client: TestClient) -> Any:
    return client.app.state.sessions  # type: ignore[attr-defined]


def _count(client: TestClient, model: Any) -> int:
    with _sessions(client)() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def _events(client: TestClient, type_: str) -> list[WebhookEvent]:
    with _sessions(client)() as session:
        stmt = select(WebhookEvent).where(WebhookEvent.type == type_).order_by(WebhookEvent.created_at)
        return list(session.execute(stmt).scalars())


def _hook(client: TestClient, **fields: Any) -> dict[str, Any]:
    return created(client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", **fields}))


def _customer_with_quota(client: TestClient, limit: int) -> tuple[str, str]:
    up = make_upstream(client, f"u-{uuid.uuid4().hex[:6]}")
    api = make_api(client, f"shop-{uuid.uuid4().hex[:6]}", base_path=f"/s{uuid.uuid4().hex[:6]}", auth="api_key")
    make_route(client, api["id"], up["id"], "/{p+}")
    plan = created(
        client.post(
            "/v1/usage-plans",
            json={
                "name": f"p-{uuid.uuid4().hex[:6]}",
                "quota": {"limit": limit, "period": "MONTH"},
                "apis": [{"api_id": api["id"]}],
            },
        )
    )
    cust = created(client.post("/v1/customers", json={"name": f"c-{uuid.uuid4().hex[:6]}"}))
    assert client.put(f"/v1/customers/{cust['id']}/plan", json={"plan_id": plan["id"]}).status_code == 200
    return cust["id"], api["id"]


def _ingest(client: TestClient, headers: dict[str, str], cust: str, api: str, n: int, day: date | None = None) -> str:
    batch = f"b-{uuid.uuid4().hex}"
    body = {
        "batch_id": batch,
        "counts": [{"customer_id": cust, "api_id": api, "day": str(day or _today()), "count": n}],
    }
    r = client.post(USAGE, json=body, headers=headers)
    assert r.status_code == 200 and r.json()["applied"], r.text
    return batch


def _today() -> date:
    return datetime.now(UTC).date()


# ---------------------------------------------------------------------------- CRUD


def test_create_shows_the_secret_once_and_stores_it_encrypted(client: TestClient) -> None:
    hook = _hook(client, event_types=["tollgate.key.created"], description="billing")
    secret = hook["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert hook["event_types"] == ["tollgate.key.created"] and hook["enabled"] is True
    got = client.get(f"/v1/webhooks/{hook['id']}")
    assert got.status_code == 200 and "secret" not in got.json() and secret not in got.text
    listed = client.get("/v1/webhooks").json()
    assert listed["total"] == 1 and secret not in str(listed)
    with _sessions(client)() as session:
        row = session.get(WebhookEndpoint, hook["id"])
        assert row is not None and row.secret_encrypted.startswith("tgenc1:") and secret not in row.secret_encrypted
        box = client.app.state.secret_box  # type: ignore[attr-defined]
        assert box.decrypt(row.secret_encrypted, aad=f"webhook_endpoints/{row.id}/secret").decode() == secret
        audit = session.execute(select(AuditEntry).where(AuditEntry.resource_id == hook["id"])).scalars().all()
        assert audit and all(secret not in str(a.detail) + a.path for a in audit)
    mine = _hook(client, secret="a-secret-of-my-own-0123", authorization="Bearer om_test")
    assert mine["secret"] == "a-secret-of-my-own-0123" and mine["has_authorization"] is True
    assert "om_test" not in client.get(f"/v1/webhooks/{mine['id']}").text


def test_a_replayed_create_answers_the_same_secret_but_keeps_it_sealed(client: TestClient) -> None:
    key = {"Idempotency-Key": f"hook-{uuid.uuid4()}"}
    body = {"url": "http://127.0.0.1:9/hook"}
    first = client.post("/v1/webhooks", json=body, headers=key)
    again = client.post("/v1/webhooks", json=body, headers=key)
    assert first.status_code == again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["secret"] == first.json()["secret"] and _count(client, WebhookEndpoint) == 1
    with _sessions(client)() as session:
        (record,) = session.execute(select(IdempotencyRecord)).scalars()
        assert record.body is not None and first.json()["secret"].encode() not in record.body


def test_update_and_delete(client: TestClient) -> None:
    hook = _hook(client)
    assert hook["event_types"] == ["*"]
    r = client.patch(
        f"/v1/webhooks/{hook['id']}",
        json={"url": "https://billing.example/in", "enabled": False, "event_types": ["tollgate.key.revoked", "*"]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["url"] == "https://billing.example/in" and r.json()["enabled"] is False
    assert r.json()["event_types"] == ["*"] and "secret" not in r.json()
    assert client.patch(f"/v1/webhooks/{hook['id']}", json={"url": None}).status_code == 422
    assert client.patch(f"/v1/webhooks/{hook['id']}", json={"authorization": None}).json()["has_authorization"] is False
    assert client.delete(f"/v1/webhooks/{hook['id']}").status_code == 204
    assert client.get(f"/v1/webhooks/{hook['id']}").status_code == 404
    assert client.get(f"/v1/webhooks/{hook['id']}/deliveries").status_code == 404


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"url": "ftp://billing.example/in"}, "url", "http:// or https://"),
        ({"url": "javascript:alert(1)"}, "url", "http:// or https://"),
        ({"url": "billing.example/in"}, "url", "http:// or https://"),
        ({"url": "https://"}, "url", "host"),
        ({"url": "https://billing.example:99999/"}, "url", "Port out of range"),
        (
            {"url": "https://billing.example/in", "event_types": ["tollgate.nope"]},
            "event_types",
            "tollgate.key.created",
        ),
        ({"url": "https://billing.example/in", "event_types": []}, "event_types", "at least 1"),
        ({"url": "https://billing.example/in", "secret": "short"}, "secret", "16 to 256"),
    ],
)
def test_bad_input_is_422_and_writes_nothing(
    client: TestClient, body: dict[str, Any], field: str, message: str
) -> None:
    r = client.post("/v1/webhooks", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert any(field in e["loc"] and message in e["msg"] for e in detail), detail
    assert "short" not in r.text or field != "secret"  # a rejected secret is not echoed
    assert _count(client, WebhookEndpoint) == 0
    assert _count(client, AuditEntry) == 0


def test_patch_with_a_bad_url_changes_nothing(client: TestClient) -> None:
    hook = _hook(client, description="keep")
    r = client.patch(f"/v1/webhooks/{hook['id']}", json={"url": "file:///etc/passwd", "description": "changed"})
    assert r.status_code == 422
    assert client.get(f"/v1/webhooks/{hook['id']}").json()["description"] == "keep"


# ---------------------------------------------------------------------------- events into the outbox


def test_usage_batches_become_usage_cloudevents_with_their_counts(
    client: TestClient, cluster_headers: dict[str, str]
) -> None:
    cust, api = _customer_with_quota(client, limit=1000)
    assert (
        client.patch(f"/v1/customers/{cust}", json={"metadata": {"stripe_customer_id": "cus_123"}}).status_code == 200
    )
    usage_hook = _hook(client, event_types=["tollgate.request.usage"])
    keys_hook = _hook(client, event_types=ALL_KEY_EVENTS)
    yesterday = _today() - timedelta(days=1)
    body = {
        "batch_id": "batch-1",
        "counts": [
            {"customer_id": cust, "api_id": api, "day": str(_today()), "count": 3},
            {"customer_id": cust, "api_id": api, "day": str(_today()), "count": 4},  # summed with the row above
            {"customer_id": cust, "api_id": api, "day": str(yesterday), "count": 5},
            {"customer_id": "no-such-customer", "api_id": api, "day": str(_today()), "count": 9},
        ],
    }
    assert client.post(USAGE, json=body, headers=cluster_headers).json()["applied"] is True
    events = _events(client, "tollgate.request.usage")
    by_day = {e.data["day"]: e for e in events}
    assert sorted(by_day) == sorted([str(_today()), str(yesterday)])
    assert by_day[str(_today())].data["count"] == 7 and by_day[str(yesterday)].data["count"] == 5
    today = by_day[str(_today())]
    assert today.subject == cust and today.data["api_id"] == api and today.data["api_name"].startswith("shop-")
    assert today.data["plan_id"] and today.data["batch_id"] == "batch-1"
    assert today.data["customer_metadata"] == {"stripe_customer_id": "cus_123"}  # for relays to map the customer
    late = by_day[str(yesterday)]
    assert late.time.date() == yesterday  # a late batch's usage is timed inside its own day
    # The same batch again (a worker retrying after a lost answer): applied once, no new event.
    assert client.post(USAGE, json=body, headers=cluster_headers).json()["applied"] is False
    assert len(_events(client, "tollgate.request.usage")) == 2
    deliveries = client.get(f"/v1/webhooks/{usage_hook['id']}/deliveries").json()
    assert deliveries["total"] == 2
    assert {d["event_id"] for d in deliveries["items"]} == {e.id for e in events}
    assert all(d["status"] == "pending" and d["attempts"] == 0 for d in deliveries["items"])
    assert client.get(f"/v1/webhooks/{keys_hook['id']}/deliveries").json()["total"] == 0  # not subscribed


def test_nothing_is_written_without_a_subscribed_enabled_endpoint(
    client: TestClient, cluster_headers: dict[str, str]
) -> None:
    cust, api = _customer_with_quota(client, limit=10)
    _hook(client, enabled=False)
    _ingest(client, cluster_headers, cust, api, 10)
    created(client.post(f"/v1/customers/{cust}/keys", json={}))
    assert _count(client, WebhookEvent) == 0 and _count(client, WebhookDelivery) == 0


def test_thresholds_are_sent_once_per_customer_period_and_threshold(
    client: TestClient, cluster_headers: dict[str, str]
) -> None:
    cust, api = _customer_with_quota(client, limit=10)
    other, other_api = _customer_with_quota(client, limit=10)
    hook = _hook(client, event_types=["tollgate.quota.threshold_reached"])
    _ingest(client, cluster_headers, cust, api, 7)
    assert _events(client, "tollgate.quota.threshold_reached") == []
    _ingest(client, cluster_headers, cust, api, 1)  # 8 of 10: 80 %
    (first,) = _events(client, "tollgate.quota.threshold_reached")
    assert first.subject == cust and first.data["threshold_percent"] == 80
    assert first.data["used"] == 8 and first.data["limit"] == 10 and first.data["period"] == "MONTH"
    _ingest(client, cluster_headers, cust, api, 1)  # 9: still only 80 %
    assert len(_events(client, "tollgate.quota.threshold_reached")) == 1
    _ingest(client, cluster_headers, cust, api, 5)  # 14: 100 %
    _ingest(client, cluster_headers, cust, api, 50)  # more usage: nothing new
    got = _events(client, "tollgate.quota.threshold_reached")
    assert sorted(e.data["threshold_percent"] for e in got) == [80, 100]
    assert client.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["total"] == 2
    # Another customer jumping from 0 to 100 % in one batch gets both thresholds at once.
    _ingest(client, cluster_headers, other, other_api, 12)
    theirs = [e for e in _events(client, "tollgate.quota.threshold_reached") if e.subject == other]
    assert sorted(e.data["threshold_percent"] for e in theirs) == [80, 100]


def test_a_quota_adjustment_moves_the_thresholds(client: TestClient, cluster_headers: dict[str, str]) -> None:
    cust, api = _customer_with_quota(client, limit=10)
    _hook(client, event_types=["tollgate.quota.threshold_reached"])
    assert client.post(f"/v1/customers/{cust}/usage/adjust", json={"extra": 90}).status_code == 200  # 100 this period
    _ingest(client, cluster_headers, cust, api, 50)
    assert _events(client, "tollgate.quota.threshold_reached") == []
    _ingest(client, cluster_headers, cust, api, 30)
    (event,) = _events(client, "tollgate.quota.threshold_reached")
    assert event.data["threshold_percent"] == 80 and event.data["limit"] == 100


def test_key_created_revoked_and_expiring_events(client: TestClient) -> None:
    hook = _hook(client, event_types=ALL_KEY_EVENTS)
    cust = created(client.post("/v1/customers", json={"name": "acme"}))["id"]
    issued = created(client.post(f"/v1/customers/{cust}/keys", json={"name": "ci"}))
    (made,) = _events(client, "tollgate.key.created")
    assert made.subject == cust and made.data["key_id"] == issued["id"] and made.data["prefix"] == issued["prefix"]
    assert issued["key"] not in str(made.data)
    assert client.delete(f"/v1/customers/{cust}/keys/{issued['id']}").status_code == 204
    assert client.delete(f"/v1/customers/{cust}/keys/{issued['id']}").status_code == 204  # again: no new event
    (revoked,) = _events(client, "tollgate.key.revoked")
    assert revoked.data["key_id"] == issued["id"] and revoked.data["revoked_at"]
    soon = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    later = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    expiring = created(client.post(f"/v1/customers/{cust}/keys", json={"expires_at": soon}))
    created(client.post(f"/v1/customers/{cust}/keys", json={"expires_at": later}))
    sender = client.app.state.webhooks  # type: ignore[attr-defined]
    sender.scan()
    sender.scan()  # once per key
    (warned,) = _events(client, "tollgate.key.expiring")
    assert warned.data["key_id"] == expiring["id"] and 0 < warned.data["expires_in_seconds"] <= 2 * 86400
    rotated = created(client.post(f"/v1/customers/{cust}/keys/{expiring['id']}/rotate", json={"grace_seconds": 0}))
    assert {e.data["key_id"] for e in _events(client, "tollgate.key.created")} >= {rotated["id"]}
    assert {e.data["key_id"] for e in _events(client, "tollgate.key.revoked")} == {issued["id"], expiring["id"]}
    types = {d["event_type"] for d in client.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["items"]}
    assert types == set(ALL_KEY_EVENTS)


# ---------------------------------------------------------------------------- delivery state


def test_deliveries_filter_and_retry(client: TestClient) -> None:
    hook = _hook(client, event_types=["tollgate.key.created"])
    other = _hook(client, event_types=["tollgate.key.created"])
    cust = created(client.post("/v1/customers", json={"name": "acme"}))["id"]
    created(client.post(f"/v1/customers/{cust}/keys", json={}))
    (delivery,) = client.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["items"]
    with _sessions(client)() as session:
        row = session.get(WebhookDelivery, delivery["id"])
        assert row is not None
        row.status, row.attempts, row.last_status_code, row.last_error = "failed", 7, 500, "HTTP 500"
        session.commit()
    failed = client.get(f"/v1/webhooks/{hook['id']}/deliveries", params={"status": "failed"}).json()
    assert failed["total"] == 1 and failed["items"][0]["next_attempt_at"] is None
    assert client.get(f"/v1/webhooks/{hook['id']}/deliveries", params={"status": "pending"}).json()["total"] == 0
    assert client.get(f"/v1/webhooks/{hook['id']}/deliveries", params={"status": "nope"}).status_code == 422
    r = client.post(f"/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}/retry")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "pending" and r.json()["attempts"] == 7 and r.json()["next_attempt_at"]
    assert client.post(f"/v1/webhooks/{other['id']}/deliveries/{delivery['id']}/retry").status_code == 404
    assert client.post(f"/v1/webhooks/{hook['id']}/deliveries/nope/retry").status_code == 404


def test_a_lease_keeps_a_delivery_to_one_sender_until_it_runs_out(client: TestClient) -> None:
    _hook(client, event_types=["tollgate.key.created"])
    _hook(client, event_types=["tollgate.key.created"])
    cust = created(client.post("/v1/customers", json={"name": "acme"}))["id"]
    created(client.post(f"/v1/customers/{cust}/keys", json={}))
    sessions = _sessions(client)
    now = datetime.now(UTC) + timedelta(seconds=1)
    lease = timedelta(seconds=30)
    with sessions() as s1, sessions() as s2:
        first = webhook_outbox.claim(session=s1, limit=1, lease_for=lease, now=now)
        second = webhook_outbox.claim(session=s2, limit=10, lease_for=lease, now=now)
        third = webhook_outbox.claim(session=s2, limit=10, lease_for=lease, now=now)
    assert len(first) == 1 and len(second) == 1 and third == []
    assert first[0].delivery_id != second[0].delivery_id and first[0].event_id == second[0].event_id
    # The senders died: once their leases ran out the deliveries are claimed again, and a late result is ignored.
    with sessions() as session:
        again = webhook_outbox.claim(session=session, limit=10, lease_for=lease, now=now + lease + timedelta(seconds=1))
        assert {c.delivery_id for c in again} == {first[0].delivery_id, second[0].delivery_id}
        (retaken,) = [c for c in again if c.delivery_id == first[0].delivery_id]
        stale = webhook_outbox.record(
            session=session,
            claimed=first[0],
            outcome=webhook_outbox.Outcome(True, 200),
            now=now,
            max_age=timedelta(days=1),
            base=1,
            cap=1,
        )
        fresh = webhook_outbox.record(
            session=session,
            claimed=retaken,
            outcome=webhook_outbox.Outcome(False, 503, "HTTP 503"),
            now=now,
            max_age=timedelta(days=1),
            base=10,
            cap=10,
        )
        session.commit()
        assert stale is None and fresh == "pending"
        row = session.get(WebhookDelivery, first[0].delivery_id)
        assert row is not None and row.attempts == 1 and row.last_status_code == 503 and row.lease is None
        assert now + timedelta(seconds=5) <= row.next_attempt_at <= now + timedelta(seconds=10)


def test_on_postgresql_a_row_another_replica_is_claiming_is_skipped_not_waited_for(
    client: TestClient, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite has one writer at a time")
    _hook(client, event_types=["tollgate.key.created"])
    _hook(client, event_types=["tollgate.key.created"])
    cust = created(client.post("/v1/customers", json={"name": "acme"}))["id"]
    created(client.post(f"/v1/customers/{cust}/keys", json={}))
    sessions = _sessions(client)
    now = datetime.now(UTC) + timedelta(seconds=1)
    with sessions() as other, sessions() as mine:
        # Another replica is in the middle of its claim: it holds the row lock of one delivery.
        held = other.execute(select(WebhookDelivery.id).limit(1).with_for_update()).scalar_one()
        mine.execute(text("SET LOCAL lock_timeout = '2s'"))  # a wait instead of a skip would fail, not hang
        got = webhook_outbox.claim(session=mine, limit=10, lease_for=timedelta(seconds=30), now=now)
        assert len(got) == 1 and got[0].delivery_id != held
        other.rollback()


def test_backoff_doubles_is_capped_and_jittered() -> None:
    low = [webhook_outbox.backoff(n, base=10, cap=300, rand=lambda: 0.0) for n in (1, 2, 3, 6, 40)]
    high = [webhook_outbox.backoff(n, base=10, cap=300, rand=lambda: 1.0) for n in (1, 2, 3, 6, 40)]
    assert high == [10, 20, 40, 300, 300] and low == [5, 10, 20, 150, 150]


def test_event_ids_are_stable() -> None:
    assert webhook_events.event_id("a", 1) == webhook_events.event_id("a", 1) != webhook_events.event_id("a", 2)
