"""Webhook delivery end to end: a real control-plane process, receivers on 127.0.0.1 that fail, time
out, are down and come back; signatures, the same event id on every attempt, retries with backoff,
failure after the max age, a manual retry, usage and threshold events, and a control-plane restart
between attempts.  Backoff and timeouts are tiny (TOLLGATE_WEBHOOK_*); waits poll with deadlines."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.cli_support import ok_json, tg
from tests.integration.harness import Cluster, ControlPlane, create, free_port, wait_until
from tests.integration.webhook_receiver import HANG, Receiver, verify

FAST = {
    "TOLLGATE_WEBHOOK_POLL_INTERVAL": "0.05",
    "TOLLGATE_WEBHOOK_TIMEOUT": "0.5",
    # long enough for the restart test's control plane to come back with two test processes on two cores
    "TOLLGATE_WEBHOOK_MAX_AGE": "10",
    "TOLLGATE_WEBHOOK_BACKOFF_BASE": "0.1",
    "TOLLGATE_WEBHOOK_BACKOFF_CAP": "0.3",
}


@pytest.fixture(scope="module")
def cp(module_cluster: Cluster) -> ControlPlane:
    return module_cluster.control_plane(extra_env=FAST)


@pytest.fixture
def admin(cp: ControlPlane) -> Iterator[httpx.Client]:
    with cp.admin() as client:
        yield client


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for r in started:
        r.stop()


def _endpoint(admin: httpx.Client, url: str, types: list[str]) -> dict[str, Any]:
    return create(admin, "/v1/webhooks", {"url": url, "event_types": types})


def _deliveries(admin: httpx.Client, hook: dict[str, Any]) -> list[dict[str, Any]]:
    r = admin.get(f"/v1/webhooks/{hook['id']}/deliveries")
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def _only_delivery(admin: httpx.Client, hook: dict[str, Any], **want: Any) -> dict[str, Any] | None:
    """The endpoint's one delivery once it matches ``want`` (``attempts_at_least`` compares), else None."""
    items = _deliveries(admin, hook)
    if len(items) != 1:
        return None
    d = items[0]
    least = want.pop("attempts_at_least", 0)
    return d if d["attempts"] >= least and all(d[k] == v for k, v in want.items()) else None


def _key_event(admin: httpx.Client) -> dict[str, Any]:
    customer = create(admin, "/v1/customers", {"name": f"c-{uuid.uuid4().hex[:8]}"})
    return create(admin, f"/v1/customers/{customer['id']}/keys", {"name": "ci"})


def _disable(admin: httpx.Client, *hooks: dict[str, Any]) -> None:
    for hook in hooks:  # later tests' events are not sent to this test's receivers
        admin.patch(f"/v1/webhooks/{hook['id']}", json={"enabled": False})


def test_failing_twice_then_ok_is_delivered_with_one_event_id_and_valid_signatures(
    admin: httpx.Client, receivers: list[Receiver]
) -> None:
    rx = Receiver(free_port(), script=[500, 500]).start()
    receivers.append(rx)
    hook = _endpoint(admin, rx.url, ["tollgate.key.created"])
    try:
        key = _key_event(admin)
        done = wait_until(lambda: _only_delivery(admin, hook, status="delivered"), timeout=10, what="delivered")
        assert done["attempts"] == 3 and done["last_status_code"] == 200 and done["delivered_at"]
        assert len(rx.received) == 3
        ids = {r.event()["id"] for r in rx.received}
        assert ids == {done["event_id"]} and {r.headers["webhook-id"] for r in rx.received} == ids
        for r in rx.received:
            assert r.headers["content-type"] == "application/cloudevents+json"
            assert verify(hook["secret"], r.headers["tollgate-signature"], r.body)
            assert not verify("whsec_another", r.headers["tollgate-signature"], r.body)
            assert not verify(hook["secret"], r.headers["tollgate-signature"], r.body + b" ")
        event = rx.received[0].event()
        assert (
            event["specversion"] == "1.0" and event["source"] == "tollgate" and event["type"] == "tollgate.key.created"
        )
        assert event["data"]["key_id"] == key["id"] and key["key"] not in rx.received[0].body.decode()
        gaps = [b.at - a.at for a, b in zip(rx.received, rx.received[1:], strict=False)]
        assert all(g >= 0.04 for g in gaps), gaps  # backed off (base 0.1 s, jittered to at least half)
    finally:
        _disable(admin, hook)


def test_timeouts_fail_until_the_max_age_then_a_manual_retry_delivers(
    admin: httpx.Client, receivers: list[Receiver]
) -> None:
    rx = Receiver(free_port(), default=HANG, hang_for=1.5).start()
    receivers.append(rx)
    hook = _endpoint(admin, rx.url, ["tollgate.key.created"])
    try:
        _key_event(admin)
        failed = wait_until(lambda: _only_delivery(admin, hook, status="failed"), timeout=30, what="failed")
        assert failed["attempts"] >= 2 and failed["last_status_code"] is None
        assert "timed out" in failed["last_error"] and failed["next_attempt_at"] is None
        assert {r.event()["id"] for r in rx.received} == {failed["event_id"]}
        rx.set(default=200)
        r = admin.post(f"/v1/webhooks/{hook['id']}/deliveries/{failed['id']}/retry")
        assert r.status_code == 200 and r.json()["status"] == "pending"
        done = wait_until(lambda: _only_delivery(admin, hook, status="delivered"), timeout=10, what="delivered")
        assert done["attempts"] == failed["attempts"] + 1 and done["event_id"] == failed["event_id"]
    finally:
        _disable(admin, hook)


def test_a_receiver_that_is_down_gets_the_event_when_it_comes_back(
    admin: httpx.Client, receivers: list[Receiver]
) -> None:
    port = free_port()
    hook = _endpoint(admin, f"http://127.0.0.1:{port}/hook", ["tollgate.key.created"])
    try:
        _key_event(admin)
        down = wait_until(lambda: _only_delivery(admin, hook, status="pending", attempts_at_least=2), timeout=10)
        assert down["last_status_code"] is None and down["last_error"]
        rx = Receiver(port).start()
        receivers.append(rx)
        done = wait_until(lambda: _only_delivery(admin, hook, status="delivered"), timeout=10, what="delivered")
        assert [r.event()["id"] for r in rx.received] == [done["event_id"]]
    finally:
        _disable(admin, hook)


def test_usage_batches_and_thresholds_reach_the_receiver_once(
    cp: ControlPlane, admin: httpx.Client, receivers: list[Receiver]
) -> None:
    rx = Receiver(free_port()).start()
    receivers.append(rx)
    hook = _endpoint(admin, rx.url, ["tollgate.request.usage", "tollgate.quota.threshold_reached"])
    try:
        suffix = uuid.uuid4().hex[:6]
        up = create(admin, "/v1/upstreams", {"name": f"u-{suffix}"})
        api = create(admin, "/v1/apis", {"name": f"shop-{suffix}", "base_path": f"/s{suffix}", "auth": "api_key"})
        create(admin, f"/v1/apis/{api['id']}/routes", {"path": "/{p+}", "upstream_id": up["id"]})
        quota = {"limit": 10, "period": "MONTH"}
        plan = create(
            admin, "/v1/usage-plans", {"name": f"p-{suffix}", "quota": quota, "apis": [{"api_id": api["id"]}]}
        )
        customer = create(admin, "/v1/customers", {"name": f"c-{suffix}"})
        assert admin.put(f"/v1/customers/{customer['id']}/plan", json={"plan_id": plan["id"]}).status_code == 200
        day = datetime.now(UTC).date().isoformat()
        token = {"authorization": f"Bearer {cp.cluster_token}"}
        for n in (7, 5, 3):  # 70 %, then 120 % (80 and 100 reached), then more: no new threshold
            batch = {
                "batch_id": uuid.uuid4().hex,
                "counts": [{"customer_id": customer["id"], "api_id": api["id"], "day": day, "count": n}],
            }
            assert httpx.post(f"{cp.url}/cluster/v1/usage", json=batch, headers=token, timeout=10).json()["applied"]
        assert len(_deliveries(admin, hook)) == 5  # written with the batches: 3 usage + 2 thresholds, no more

        def all_delivered() -> bool:
            return all(d["status"] == "delivered" for d in _deliveries(admin, hook))

        wait_until(all_delivered, timeout=10, what="every delivery delivered")
        events = {e["id"]: e for e in rx.events()}  # de-duplicated by id, as a receiver would
        usage = [e for e in events.values() if e["type"] == "tollgate.request.usage"]
        thresholds = [e for e in events.values() if e["type"] == "tollgate.quota.threshold_reached"]
        assert sorted(e["data"]["count"] for e in usage) == [3, 5, 7]
        assert all(e["subject"] == customer["id"] and e["data"]["api_id"] == api["id"] for e in usage)
        assert all(e["data"]["day"] == day and e["data"]["plan_name"] == plan["name"] for e in usage)
        assert sorted(e["data"]["threshold_percent"] for e in thresholds) == [80, 100]
        assert all(verify(hook["secret"], r.headers["tollgate-signature"], r.body) for r in rx.received)
    finally:
        _disable(admin, hook)


def test_the_cli_manages_endpoints_and_shows_deliveries(cp: ControlPlane, admin: httpx.Client, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("whsec_from_a_file_0123456789\n")
    down = f"http://127.0.0.1:{free_port()}/cli-hook"
    made = ok_json(cp, "webhooks", "create", down, "--event", "tollgate.key.created", "--secret-file", str(secret_file))
    assert made["secret"] == "whsec_from_a_file_0123456789" and made["event_types"] == ["tollgate.key.created"]
    assert "secret" not in ok_json(cp, "webhooks", "get", down)  # by URL, and never the secret again
    assert made["id"] in {w["id"] for w in ok_json(cp, "webhooks", "list")}
    _key_event(admin)
    wait_until(lambda: ok_json(cp, "webhooks", "deliveries", made["id"], "--status", "pending"), timeout=10)
    (delivery,) = ok_json(cp, "webhooks", "deliveries", made["id"])
    assert delivery["event_type"] == "tollgate.key.created"
    assert ok_json(cp, "webhooks", "retry", made["id"], delivery["id"])["status"] == "pending"
    off = ok_json(cp, "webhooks", "update", made["id"], "--disable", "--description", "paused")
    assert off["enabled"] is False and off["description"] == "paused"
    bad = tg(cp, "webhooks", "create", "ftp://billing.example/in")
    assert bad.exit_code == 1 and "http:// or https://" in bad.output
    assert tg(cp, "webhooks", "delete", made["id"]).exit_code == 0
    assert admin.get(f"/v1/webhooks/{made['id']}").status_code == 404


def test_a_restarted_control_plane_carries_on_from_the_database(
    module_cluster: Cluster, cp: ControlPlane, receivers: list[Receiver]
) -> None:
    # Last in the module: it restarts the module's control plane (same database, port and secret key).
    rx = Receiver(free_port(), default=500).start()
    receivers.append(rx)
    with cp.admin() as admin:
        hook = _endpoint(admin, rx.url, ["tollgate.key.created"])
        _key_event(admin)
        wait_until(lambda: _only_delivery(admin, hook, status="pending", attempts_at_least=1), timeout=10)
    cp.proc.stop()  # between attempts (well inside the 10 s max age): the delivery is only in the database now
    before = len(rx.received)
    rx.set(default=200)
    module_cluster.restart_control_plane(cp)
    with cp.admin() as admin:
        done = wait_until(lambda: _only_delivery(admin, hook, status="delivered"), timeout=15, what="delivered")
        _disable(admin, hook)
    assert done["attempts"] > before >= 1 and len(rx.received) == before + 1
    assert {r.event()["id"] for r in rx.received} == {done["event_id"]}
