"""The admin API keeps the promises of its document (issue 19, item 7): a 405 lists every method of the
path, booleans are booleans, usage reports default their dates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from tests.integration.control_plane.factories import created


def test_a_405_lists_every_method_the_path_answers(client: TestClient) -> None:
    cust = created(client.post("/v1/customers", json={"name": "acme"}))
    # /v1/customers/{id} is served by three routes (GET, PATCH, DELETE): Starlette alone names only the first.
    for method in ("OPTIONS", "PUT", "POST"):
        r = client.request(method, f"/v1/customers/{cust['id']}")
        assert r.status_code == 405, (method, r.text)
        assert set(r.headers["allow"].split(", ")) == {"GET", "PATCH", "DELETE"}, method
    r = client.request("OPTIONS", "/v1/customers")
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "POST"}
    r = client.request("POST", f"/v1/customers/{cust['id']}/plan")
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "PUT", "DELETE"}


def test_a_boolean_field_takes_only_true_or_false(client: TestClient) -> None:
    # pydantic's lax mode would read 0/1/"yes" as booleans; the document says boolean, so does the service.
    r = client.post("/v1/config/apply", json={"config": {}, "dry_run": 0})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "dry_run"], r.text
    assert client.post("/v1/config/apply", json={"config": {}, "dry_run": True}).status_code == 200
    r = client.post("/v1/apis", json={"name": "shop", "strip_credential": "yes"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "strip_credential"]
    r = client.post("/v1/upstreams", json={"name": "orders", "panic": 1})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "panic"]
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ApplyRequest"]["properties"]["dry_run"]
    assert schema["type"] == "boolean"


def test_a_usage_report_without_dates_is_the_last_seven_days(client: TestClient) -> None:
    cust = created(client.post("/v1/customers", json={"name": "acme"}))
    plan = created(client.post("/v1/usage-plans", json={"name": "gold"}))
    today = datetime.now(UTC).date()
    week = [(today - timedelta(days=n)).isoformat() for n in range(6, -1, -1)]
    r = client.get(f"/v1/customers/{cust['id']}/usage")
    assert r.status_code == 200, r.text
    assert [d["day"] for d in r.json()["days"]] == week
    # one bound given: the other defaults around it
    r = client.get(f"/v1/customers/{cust['id']}/usage", params={"end": week[3]})
    assert [d["day"] for d in r.json()["days"]] == [(today - timedelta(days=n)).isoformat() for n in range(9, 2, -1)]
    r = client.get(f"/v1/customers/{cust['id']}/usage", params={"start": week[5]})
    assert [d["day"] for d in r.json()["days"]] == week[5:]
    r = client.get(f"/v1/usage-plans/{plan['id']}/usage")
    assert r.status_code == 200 and (r.json()["start"], r.json()["end"]) == (week[0], week[-1])
