"""`tollgate diff|apply|dump` against a real control plane: round trip, idempotence, prune, errors at lines.

Every test starts by applying its own file with --prune, so it does not depend on what the others did.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.integration.cli_support import tg
from tests.integration.harness import ROOT, Cluster, ControlPlane

EXAMPLE = ROOT / "examples" / "gateway.yaml"


@pytest.fixture(scope="module")
def cp(module_cluster: Cluster) -> Iterator[ControlPlane]:
    yield module_cluster.control_plane()


def ok(cp: ControlPlane, *args: str) -> str:
    result = tg(cp, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def reset_to_example(cp: ControlPlane) -> int:
    ok(cp, "apply", "-f", str(EXAMPLE), "--prune")
    return cp.revision()


def test_apply_dump_apply_round_trip_is_a_no_op(cp: ControlPlane, tmp_path: Path) -> None:
    ok(cp, "apply", "-f", str(EXAMPLE), "--prune")
    ok(cp, "upstreams", "create", "name=round-trip-extra")  # something that is not in the file
    rev = cp.revision()

    out = ok(cp, "apply", "-f", str(EXAMPLE), "--prune")
    assert "- upstream round-trip-extra" in out and f"applied: revision {rev + 1}" in out
    assert cp.revision() == rev + 1
    again = ok(cp, "apply", "-f", str(EXAMPLE))  # twice: the revision moved once
    assert again.strip() == "no changes" and cp.revision() == rev + 1
    assert ok(cp, "diff", "-f", str(EXAMPLE), "--exit-code").strip() == "no changes"

    dumped = tmp_path / "dumped.yaml"
    ok(cp, "dump", "-f", str(dumped))
    assert dumped.read_text().startswith(f"# Tollgate gateway config (revision {rev + 1})")
    doc = yaml.safe_load(dumped.read_text())
    assert [a["name"] for a in doc["apis"]] == ["orders", "users"]
    assert [p["name"] for p in doc["usage_plans"]] == ["standard"]
    assert doc["usage_plans"][0]["apis"][0]["api"] == "users"  # names, not ids
    assert [(c["name"], c["plan"]) for c in doc["customers"]] == [("acme", "standard")]
    assert ok(cp, "apply", "-f", str(dumped), "--prune").strip() == "no changes"
    assert cp.revision() == rev + 1
    assert json.loads(ok(cp, "dump", "-o", "json")) == cp.get("/v1/config/export").json() == doc


def test_diff_shows_field_level_changes_and_changes_nothing(cp: ControlPlane, tmp_path: Path) -> None:
    rev = reset_to_example(cp)
    edited = tmp_path / "edited.yaml"
    edited.write_text(EXAMPLE.read_text().replace("retries: 1", "retries: 3").replace("port: 9103", "port: 9104"))

    diff = tg(cp, "diff", "-f", str(edited), "--exit-code")
    assert diff.exit_code == 2, diff.output
    lines = [line.rstrip() for line in diff.stdout.splitlines()]
    assert "~ upstream orders-svc" in lines and "    retries: 1 → 3" in lines
    assert "+ upstream users-svc / target 127.0.0.1:9104" in lines
    assert "- upstream users-svc / target 127.0.0.1:9103" in lines  # a named upstream is described completely
    assert lines[-1] == "1 to create, 1 to update, 1 to delete"
    assert json.loads(ok(cp, "diff", "-f", str(edited), "-o", "json"))["dry_run"] is True
    assert cp.revision() == rev

    ok(cp, "apply", "-f", str(edited))
    assert cp.revision() == rev + 1
    assert ok(cp, "diff", "-f", str(edited)).strip() == "no changes"


def test_prune_removes_only_what_the_file_does_not_name(cp: ControlPlane, tmp_path: Path) -> None:
    rev = reset_to_example(cp)
    partial = tmp_path / "partial.yaml"
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["apis"] = [a for a in doc["apis"] if a["name"] == "users"]
    partial.write_text(yaml.safe_dump(doc))

    assert ok(cp, "apply", "-f", str(partial)).strip() == "no changes"  # api "orders" is left alone
    assert cp.revision() == rev
    pruned = ok(cp, "apply", "-f", str(partial), "--prune")
    assert "- api orders" in pruned and "4 to delete" in pruned  # the api and its three routes
    names = [a["name"] for a in cp.get("/v1/apis").json()["items"]]
    assert names == ["users"] and cp.revision() == rev + 1


def test_a_broken_file_names_the_line_and_changes_nothing(cp: ControlPlane, tmp_path: Path) -> None:
    rev = reset_to_example(cp)
    text = EXAMPLE.read_text()
    wrong_type = tmp_path / "wrong-type.yaml"
    wrong_type.write_text(text.replace("retries: 1", "retries: many"))
    line = text.splitlines().index("    retries: 1") + 1
    result = tg(cp, "apply", "-f", str(wrong_type), "--prune")
    assert result.exit_code == 1
    assert f"{wrong_type}:{line}:14: upstreams.0.retries: Input should be a valid integer" in result.stderr

    unknown = tmp_path / "unknown-upstream.yaml"
    unknown.write_text(text.replace("upstream: users-svc", "upstream: user-svc", 1))
    line = next(i for i, s in enumerate(text.splitlines(), 1) if s.strip() == "upstream: users-svc")
    result = tg(cp, "apply", "-f", str(unknown))
    assert result.exit_code == 1
    assert f"{unknown}:{line}:19: apis.1.routes.0.upstream: upstream 'user-svc' does not exist" in result.stderr

    syntax = tmp_path / "syntax.yaml"
    syntax.write_text("upstreams:\n  - name: a\n   bad indent: 1\n")
    result = tg(cp, "apply", "-f", str(syntax))
    assert result.exit_code == 1 and result.stderr.startswith(f"{syntax}:3:")
    assert cp.revision() == rev


def test_the_committed_schema_is_the_served_one(cp: ControlPlane) -> None:
    served = cp.get("/v1/config/schema").json()
    committed = json.loads((ROOT / "docs" / "gateway.schema.json").read_text())
    assert served == committed, "regenerate: python -m control_plane.config_document > docs/gateway.schema.json"
    assert {"upstreams", "apis", "usage_plans", "customers"} <= set(served["properties"])


def test_prune_deletes_customers_and_their_keys_then_plans(cp: ControlPlane, tmp_path: Path) -> None:
    rev = reset_to_example(cp)
    issued = json.loads(ok(cp, "keys", "create", "--customer", "acme", "name=ci", "-o", "json"))
    assert issued["key"].startswith("tg_")
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["customers"], doc["usage_plans"] = [], []
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump(doc))

    diff = ok(cp, "diff", "-f", str(bare), "--prune")
    lines = [line.rstrip() for line in diff.splitlines()]
    assert lines.index("- customer acme (and its API keys)") < lines.index("- usage_plan standard")
    ok(cp, "apply", "-f", str(bare), "--prune")
    assert cp.get("/v1/customers").json()["total"] == 0 and cp.get("/v1/usage-plans").json()["total"] == 0
    assert cp.revision() == rev + 2  # the key, then the apply


def test_an_unknown_plan_names_the_line_and_changes_nothing(cp: ControlPlane, tmp_path: Path) -> None:
    rev = reset_to_example(cp)
    text = EXAMPLE.read_text()
    unknown = tmp_path / "unknown-plan.yaml"
    unknown.write_text(text.replace("plan: standard", "plan: premium"))
    line = next(i for i, s in enumerate(text.splitlines(), 1) if s.strip() == "plan: standard")
    result = tg(cp, "apply", "-f", str(unknown))
    assert result.exit_code == 1
    assert f"{unknown}:{line}:11: customers.0.plan: usage plan 'premium' does not exist" in result.stderr
    assert cp.revision() == rev
