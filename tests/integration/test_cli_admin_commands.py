"""The admin commands beyond list/get/create/update/delete, against a real control plane: a customer put
on a plan by name, keys by name and rotated, admin tokens, audit, quota adjustments, readable tables."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.integration.cli_support import ok_json, tg
from tests.integration.harness import Cluster, ControlPlane


@pytest.fixture(scope="module")
def cp(module_cluster: Cluster) -> Iterator[ControlPlane]:
    yield module_cluster.control_plane()


def ok(cp: ControlPlane, *args: str) -> str:
    result = tg(cp, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_customer_goes_on_a_plan_by_name_and_tables_name_things(cp: ControlPlane) -> None:
    ok(cp, "apis", "create", "name=cov-api", "base_path=/cov")
    plan = ok_json(
        cp,
        "plans",
        "create",
        "name=cov-gold",
        'throttle={"rate": 20, "burst": 40}',
        'quota={"limit": 1000, "period": "DAY"}',
        "apis=cov-api",
    )
    assert len(plan["apis"]) == 1
    customer = ok_json(cp, "customers", "create", "name=cov-acme", "plan=cov-gold", "apis=cov-api")
    assert customer["plan_id"] == plan["id"] and len(customer["api_ids"]) == 1

    table = ok(cp, "customers", "list")
    assert "cov-gold" in table and "cov-api" in table and plan["id"] not in table
    plans = ok(cp, "plans", "list")
    assert "rate=20.0, burst=40" in plans and "{'rate'" not in plans and "cov-api" in plans
    assert ok_json(cp, "customers", "plan", "cov-acme")["plan_name"] == "cov-gold"

    assert ok_json(cp, "customers", "update", "cov-acme", "plan=null")["plan_id"] is None
    assert ok_json(cp, "customers", "update", "cov-acme", "plan=cov-gold")["plan_id"] == plan["id"]
    adjusted = ok_json(cp, "usage", "adjust", "cov-acme", "500")
    assert (adjusted["extra"], adjusted["limit"]) == (500, 1500)
    assert ok_json(cp, "usage", "set-remaining", "cov-acme", "10")["remaining"] == 10


def test_keys_by_name_and_rotation(cp: ControlPlane) -> None:
    ok(cp, "customers", "create", "name=cov-keys")
    issued = ok_json(cp, "keys", "create", "--customer", "cov-keys", "name=ci")
    assert ok_json(cp, "keys", "get", "--customer", "cov-keys", "ci")["id"] == issued["id"]
    rotated = ok_json(cp, "keys", "rotate", "--customer", "cov-keys", "ci", "--grace", "60")
    assert rotated["key"].startswith("tg_") and rotated["key"] != issued["key"]
    listing = ok(cp, "keys", "list", "--customer", "cov-keys")
    assert issued["key"] not in listing and rotated["key"] not in listing


def test_admin_tokens_and_audit(cp: ControlPlane) -> None:
    token = ok_json(cp, "admin-tokens", "create", "name=cov-ci", "role=viewer")
    assert token["role"] == "viewer" and token["token"]
    assert "cov-ci" in [t["name"] for t in ok_json(cp, "admin-tokens", "list")]
    ok(cp, "admin-tokens", "delete", "cov-ci")
    assert all(t["revoked_at"] for t in ok_json(cp, "admin-tokens", "list") if t["name"] == "cov-ci")
    entries = ok_json(cp, "audit", "--limit", "5")
    assert entries and entries[0]["path"].startswith("/v1/admin-tokens")
    assert "revision" in ok_json(cp, "status")


def test_a_customer_is_invited_to_the_portal(cp: ControlPlane) -> None:
    ok(cp, "customers", "create", "name=cov-portal")
    invite = ok_json(cp, "customers", "invite", "cov-portal", "--key-limit", "2", "--ttl", "3600")
    assert invite["key_limit"] == 2 and "/portal/invite/" in invite["url"]
    page = httpx.get(invite["url"], timeout=5.0)
    assert page.status_code == 200 and "password" in page.text.lower()  # the one-time link opens the form
    assert "cov-portal" not in ok(cp, "customers", "invite", "cov-portal")  # a table of the link, not the customer
