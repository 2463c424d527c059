"""Usage plans and customers in the declarative config (SQLite and PostgreSQL): references by name,
dump → apply is a no-op, prune order (customers, then plans), errors name the place and change nothing."""

from __future__ import annotations

import copy
from typing import Any

from fastapi.testclient import TestClient

from tests.integration.control_plane.factories import revision

DOC: dict[str, Any] = {
    "upstreams": [{"name": "svc", "targets": [{"host": "10.0.0.1", "port": 80}]}],
    "apis": [
        {
            "name": "orders",
            "base_path": "/orders",
            "routes": [{"path": "/items/{id}", "methods": ["GET"], "upstream": "svc"}],
        },
        {"name": "users", "base_path": "/users", "routes": [{"path": "/{id}", "upstream": "svc"}]},
    ],
    "usage_plans": [
        {
            "name": "gold",
            "description": "paying customers",
            "throttle": {"rate": 50, "burst": 100},
            "quota": {"limit": 100000, "period": "MONTH"},
            "apis": [
                {"api": "orders", "overrides": [{"method": "GET", "path": "/items/{id}", "rate": 5, "burst": 10}]},
                {"api": "users"},
            ],
        },
        {"name": "free", "quota": {"limit": 1000, "period": "DAY"}, "apis": [{"api": "users"}]},
    ],
    "customers": [
        {"name": "acme", "email": "ops@acme.example", "metadata": {"tier": 1}, "plan": "gold"},
        {"name": "globex", "status": "suspended", "apis": ["users", "orders"]},
    ],
}


def apply(client: TestClient, doc: dict[str, Any], *, prune: bool = False, dry_run: bool = False) -> Any:
    return client.post("/v1/config/apply", json={"config": doc, "prune": prune, "dry_run": dry_run})


def applied(client: TestClient, doc: dict[str, Any], **kw: bool) -> dict[str, Any]:
    response = apply(client, doc, **kw)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def by_name(client: TestClient, path: str) -> dict[str, dict[str, Any]]:
    return {i["name"]: i for i in client.get(path).json()["items"]}


def test_plans_and_customers_are_created_by_name_and_the_dump_applies_as_a_no_op(client: TestClient) -> None:
    before = revision(client)
    first = applied(client, DOC)
    assert revision(client) == before + 1 == first["revision"]
    created = [c["address"] for c in first["changes"] if c["kind"] in ("usage_plan", "customer")]
    assert created == ["usage_plan gold", "usage_plan free", "customer acme", "customer globex"]

    apis = {name: a["id"] for name, a in by_name(client, "/v1/apis").items()}
    plans = by_name(client, "/v1/usage-plans")
    assert [a["api_id"] for a in plans["gold"]["apis"]] == [apis["orders"], apis["users"]]
    assert plans["gold"]["apis"][0]["overrides"] == [{"method": "GET", "path": "/items/{id}", "rate": 5.0, "burst": 10}]
    assert plans["gold"]["throttle"] == {"rate": 50.0, "burst": 100}
    customers = by_name(client, "/v1/customers")
    assert customers["acme"]["plan_id"] == plans["gold"]["id"] and customers["acme"]["metadata"] == {"tier": 1}
    assert sorted(customers["globex"]["api_ids"]) == sorted([apis["users"], apis["orders"]])
    assert customers["globex"]["status"] == "suspended" and customers["globex"]["plan_id"] is None

    exported = client.get("/v1/config/export").json()
    assert [p["name"] for p in exported["usage_plans"]] == ["free", "gold"]
    assert exported["usage_plans"][1]["apis"][1] == {"api": "users", "overrides": []}
    assert exported["customers"] == [
        {
            "name": "acme",
            "email": "ops@acme.example",
            "external_id": None,
            "metadata": {"tier": 1},
            "status": "active",
            "mtls_fingerprints": [],
            "mtls_subjects": [],
            "plan": "gold",
            "apis": [],
        },
        {
            "name": "globex",
            "email": None,
            "external_id": None,
            "metadata": {},
            "status": "suspended",
            "mtls_fingerprints": [],
            "mtls_subjects": [],
            "plan": None,
            "apis": ["orders", "users"],
        },
    ]
    key = client.post(f"/v1/customers/{customers['acme']['id']}/keys", json={"name": "ci"})
    assert key.status_code == 201 and key.json()["key"] not in client.get("/v1/config/export").text

    reordered = copy.deepcopy(DOC)
    reordered["customers"][1]["apis"] = ["orders", "users"]  # grants are a set
    for doc in (DOC, exported, reordered):
        again = applied(client, doc)
        assert again["changed"] is False and again["changes"] == [], again
    assert applied(client, exported, prune=True)["changes"] == []
    assert revision(client) == before + 2  # the key issue only


def test_field_updates_move_customers_between_plans_and_prune_deletes_customers_before_plans(
    client: TestClient,
) -> None:
    applied(client, DOC)
    acme = by_name(client, "/v1/customers")["acme"]
    assert client.post(f"/v1/customers/{acme['id']}/keys", json={}).status_code == 201
    doc = copy.deepcopy(DOC)
    doc["usage_plans"][1]["quota"] = None
    doc["customers"][1].update(plan="free", apis=["users"])
    updates = {c["address"]: c["fields"] for c in applied(client, doc)["changes"]}
    assert updates == {"usage_plan free": ["quota"], "customer globex": ["plan", "apis"]}
    plans = by_name(client, "/v1/usage-plans")
    globex = by_name(client, "/v1/customers")["globex"]
    assert plans["free"]["quota"] is None and globex["plan_id"] == plans["free"]["id"]

    # acme and plan gold leave the file; gold still has acme subscribed until acme is deleted.
    doc["usage_plans"] = [doc["usage_plans"][1]]
    doc["customers"] = [doc["customers"][1]]
    kept = applied(client, doc)
    assert kept["changes"] == []  # unnamed resources stay without --prune
    rev = revision(client)
    pruned = applied(client, doc, prune=True)
    assert [(c["action"], c["address"]) for c in pruned["changes"]] == [
        ("delete", "customer acme"),
        ("delete", "usage_plan gold"),
    ]
    assert revision(client) == rev + 1
    assert set(by_name(client, "/v1/customers")) == {"globex"}
    assert client.get(f"/v1/customers/{acme['id']}/keys").status_code == 404  # its keys went with it
    assert set(by_name(client, "/v1/usage-plans")) == {"free"}


def test_a_plan_the_customers_leave_can_be_pruned_in_the_same_apply(client: TestClient) -> None:
    applied(client, DOC)
    doc = copy.deepcopy(DOC)
    doc["usage_plans"] = [doc["usage_plans"][1]]  # gold goes ...
    doc["customers"][0]["plan"] = "free"  # ... and acme moves to free first
    doc["apis"] = [doc["apis"][1]]  # orders goes too (free does not grant it; globex loses the grant)
    doc["customers"][1]["apis"] = ["users"]
    body = applied(client, doc, prune=True)
    assert ("delete", "usage_plan gold") in [(c["action"], c["address"]) for c in body["changes"]]
    assert set(by_name(client, "/v1/usage-plans")) == {"free"}
    assert set(by_name(client, "/v1/apis")) == {"users"}
    assert applied(client, client.get("/v1/config/export").json(), prune=True)["changes"] == []


def test_unknown_plan_or_api_names_the_place_and_changes_nothing(client: TestClient) -> None:
    rev = revision(client)
    cases = [
        (("customers", 0, "plan"), "usage plan 'platinum' does not exist"),
        (("customers", 1, "apis", 1), "api 'billing' does not exist"),
        (("usage_plans", 1, "apis", 0, "api"), "api 'nope' does not exist"),
    ]
    for (section, index, *rest), message in cases:
        doc = copy.deepcopy(DOC)
        if section == "customers" and rest == ["plan"]:
            doc["customers"][index]["plan"] = "platinum"
        elif section == "customers":
            doc["customers"][index]["apis"] = ["users", "billing"]
        else:
            doc["usage_plans"][index]["apis"][0]["api"] = "nope"
        [error] = apply(client, doc).json()["detail"]
        assert error["loc"] == ["body", "config", section, index, *rest]
        assert error["msg"] == message
    doc = copy.deepcopy(DOC)
    doc["customers"][0]["api_ids"] = ["x"]  # ids (and keys) are not part of the file
    assert apply(client, doc).status_code == 422
    assert revision(client) == rev and client.get("/v1/customers").json()["total"] == 0
