"""`tollgate upstreams|targets|apis|routes|nodes ...` against a real control plane process.

Commands run in-process through Typer's CliRunner (the HTTP is real), plus one run of the installed
entry (`python -m tollgate`) to prove the wiring and the exit code of an API error.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.integration.cli_support import ok_json, tg
from tests.integration.harness import Cluster, ControlPlane, tollgate_argv, wait_until


@pytest.fixture(scope="module")
def cp(module_cluster: Cluster) -> Iterator[ControlPlane]:
    yield module_cluster.control_plane()


def test_upstreams_and_targets_list_get_create_delete(cp: ControlPlane) -> None:
    up = ok_json(cp, "upstreams", "create", "name=cli-up", "retries=2", "algorithm=round_robin")
    assert (up["name"], up["retries"], up["targets"]) == ("cli-up", 2, [])
    target = ok_json(cp, "targets", "create", "--upstream", "cli-up", "host=10.0.0.7", "port=8080", "weight=3")
    assert (target["host"], target["port"], target["weight"], target["upstream_id"]) == ("10.0.0.7", 8080, 3, up["id"])

    assert "cli-up" in [u["name"] for u in ok_json(cp, "upstreams", "list")]
    by_name = ok_json(cp, "upstreams", "get", "cli-up")
    assert by_name["id"] == up["id"] and [t["port"] for t in by_name["targets"]] == [8080]
    assert ok_json(cp, "upstreams", "get", up["id"])["name"] == "cli-up"  # by id as well

    table = tg(cp, "upstreams", "get", "cli-up")
    assert table.exit_code == 0 and "10.0.0.7" in table.stdout and "targets" in table.stdout

    updated = ok_json(cp, "upstreams", "update", "cli-up", "retries=0")
    assert updated["retries"] == 0
    assert tg(cp, "targets", "delete", "--upstream", "cli-up", "10.0.0.7:8080").exit_code == 0
    assert ok_json(cp, "targets", "list", "--upstream", "cli-up") == []
    assert tg(cp, "upstreams", "delete", "cli-up").exit_code == 0
    assert "cli-up" not in [u["name"] for u in ok_json(cp, "upstreams", "list")]


def test_apis_and_routes_list_get_create_delete(cp: ControlPlane) -> None:
    up = ok_json(cp, "upstreams", "create", "name=cli-routes-up")
    api = ok_json(cp, "apis", "create", "name=cli-api", "base_path=/cli", "hosts=a.example,B.example")
    assert api["hosts"] == ["a.example", "b.example"] and api["routes"] == []
    route = ok_json(
        cp, "routes", "create", "--api", "cli-api", "path=/items/{id}", "methods=get,post", "upstream=cli-routes-up"
    )
    assert (route["methods"], route["upstream_id"]) == (["GET", "POST"], up["id"])

    listed = tg(cp, "routes", "list", "--api", "cli-api")  # the table names the upstream, not its id
    assert listed.exit_code == 0 and "cli-routes-up" in listed.stdout and "/items/{id}" in listed.stdout
    assert [r["path"] for r in ok_json(cp, "apis", "get", "cli-api")["routes"]] == ["/items/{id}"]
    assert ok_json(cp, "routes", "get", "--api", "cli-api", "/items/{id}")["id"] == route["id"]

    assert tg(cp, "routes", "delete", "--api", "cli-api", route["id"]).exit_code == 0
    assert tg(cp, "apis", "delete", "cli-api").exit_code == 0
    assert "cli-api" not in [a["name"] for a in ok_json(cp, "apis", "list")]
    assert tg(cp, "upstreams", "delete", "cli-routes-up").exit_code == 0


def test_api_errors_give_a_non_zero_exit_and_the_detail(cp: ControlPlane) -> None:
    ok_json(cp, "upstreams", "create", "name=cli-dup")
    dup = tg(cp, "upstreams", "create", "name=cli-dup")
    assert dup.exit_code == 1
    assert "409 Conflict: upstream name 'cli-dup' is already used" in dup.stderr

    bad = tg(cp, "targets", "create", "--upstream", "cli-dup", "host=10.0.0.1", "port=70000")
    assert bad.exit_code == 1
    assert "422" in bad.stderr and "port: Input should be less than or equal to 65535" in bad.stderr

    missing = tg(cp, "apis", "get", "no-such-api")
    assert missing.exit_code == 1 and "api 'no-such-api' not found" in missing.stderr
    no_parent = tg(cp, "routes", "list")
    assert no_parent.exit_code == 1 and "--api" in no_parent.stderr
    assert tg(cp, "upstreams", "create", "not-a-pair").exit_code == 2  # usage error, nothing sent


def test_nodes_list_shows_a_connected_worker(module_cluster: Cluster, cp: ControlPlane) -> None:
    module_cluster.worker(cp, name="cli-node")
    # The first heartbeat may come before the worker applied its config: wait for the node to
    # report in sync (it must, within the deadline), not just to appear.
    nodes = wait_until(
        lambda: [n for n in ok_json(cp, "nodes", "list") if n["id"] == "cli-node" and n["in_sync"] is True],
        what="node in sync",
    )
    assert nodes[0]["in_sync"] is True
    table = tg(cp, "nodes", "list")
    assert table.exit_code == 0 and "cli-node" in table.stdout


def test_the_installed_entry_point_reports_errors_with_a_non_zero_exit(cp: ControlPlane) -> None:
    env = {"TOLLGATE_ADMIN_URL": cp.url, "TOLLGATE_ADMIN_TOKEN": cp.admin_token, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        tollgate_argv("upstreams", "get", "nope-nope"), capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 1
    assert "upstream 'nope-nope' not found" in done.stderr
