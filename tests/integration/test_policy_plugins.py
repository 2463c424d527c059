"""Python plugins through a real control plane, worker and echo backend: configs checked by the admin
API, the two shipped plugins at work, and a third-party plugin found through its own entry point
(a distribution outside this package, on PYTHONPATH) whose failures are answered 500, counted on
the status port and logged while the worker goes on serving."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.harness import Backend, Cluster, ControlPlane, Worker, create, wait_until

FAULT_PLUGIN = '''
"""A third party's plugin: fails where its config says."""
from tollgate.plugins import API_VERSION, Plugin

class Fault(Plugin):
    """Raises in the hook its config names."""
    name = "fault"
    api_version = API_VERSION
    config_schema = {
        "type": "object",
        "properties": {"at": {"enum": ["request", "response"]}},
        "required": ["at"],
        "additionalProperties": False,
    }

    def on_request(self, request):
        if self.config["at"] == "request":
            raise RuntimeError("internal detail the client must not see")
        return None

    def on_response(self, response):
        if self.config["at"] == "response":
            {}["missing"]
'''

SPLIT = {
    "variants": [{"name": "control", "weight": 50}, {"name": "beta", "weight": 50}],
    "sticky_header": "x-user-id",
    "override_header": "x-ab-force",
    "response_header": True,
}


def plugin_site(root: Path) -> Path:
    """A directory laid out as pip leaves site-packages: the module and its dist-info."""
    site = root / "plugin-site"
    site.mkdir()
    (site / "tg_fault_plugin.py").write_text(textwrap.dedent(FAULT_PLUGIN))
    info = site / "tg_fault_plugin-1.4.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tg-fault-plugin\nVersion: 1.4.0\n")
    (info / "entry_points.txt").write_text("[tollgate.plugins]\nfault = tg_fault_plugin:Fault\n")
    return site


class Gateway:
    def __init__(self, cluster: Cluster, cp: ControlPlane, worker: Worker, echo: Backend, ids: dict[str, str]) -> None:
        self.cluster, self.cp, self.worker, self.echo, self.ids = cluster, cp, worker, echo, ids

    def sync(self, worker: Worker | None = None) -> None:
        (worker or self.worker).wait_revision(self.cp.revision())

    def customer(self, name: str, plan_id: str | None = None) -> tuple[str, str]:
        with self.cp.admin() as a:
            c = create(a, "/v1/customers", {"name": name, "api_ids": [self.ids["shop"]]})
            if plan_id is not None:
                assert a.put(f"/v1/customers/{c['id']}/plan", json={"plan_id": plan_id}).status_code == 200
            key = create(a, f"/v1/customers/{c['id']}/keys", {})["key"]
        return c["id"], key

    def patch_api(self, name: str, body: dict[str, Any]) -> httpx.Response:
        with self.cp.admin() as a:
            return a.patch(f"/v1/apis/{self.ids[name]}", json=body)


@pytest.fixture(scope="module")
def gw(module_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    site = plugin_site(tmp_path_factory.mktemp("plugins"))
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    echo = module_cluster.echo("plugins")
    cp = module_cluster.control_plane(extra_env={"PYTHONPATH": path})
    ids: dict[str, str] = {}
    with cp.admin() as a:
        up = create(a, "/v1/upstreams", {"name": "svc"})
        create(a, f"/v1/upstreams/{up['id']}/targets", {"host": "127.0.0.1", "port": echo.port})
        shop = create(a, "/v1/apis", {"name": "shop", "base_path": "/shop", "auth": "api_key"})
        create(a, f"/v1/apis/{shop['id']}/routes", {"path": "/{proxy+}", "upstream_id": up["id"]})
        ab = create(a, "/v1/apis", {"name": "ab", "base_path": "/ab"})
        create(a, f"/v1/apis/{ab['id']}/routes", {"path": "/{proxy+}", "upstream_id": up["id"]})
        faulty = create(a, "/v1/apis", {"name": "faulty", "base_path": "/faulty"})
        for path_, at in (("/request", "request"), ("/response", "response")):
            policies = {"plugins": [{"name": "fault", "config": {"at": at}}]}
            create(a, f"/v1/apis/{faulty['id']}/routes", {"path": path_, "upstream_id": up["id"], "policies": policies})
        create(a, f"/v1/apis/{faulty['id']}/routes", {"path": "/fine", "upstream_id": up["id"]})
        ids.update(shop=shop["id"], ab=ab["id"], faulty=faulty["id"])
    worker = module_cluster.worker(cp, env={"PYTHONPATH": path})
    gateway = Gateway(module_cluster, cp, worker, echo, ids)
    gateway.sync()
    return gateway


def test_installed_plugins_are_listed_with_their_schemas(gw: Gateway) -> None:
    r = gw.cp.get("/v1/plugins")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["api_version"] == 1
    listed = {p["name"]: p for p in body["items"]}
    assert {"ab-split", "request-size-by-customer", "fault"} <= set(listed)
    fault = listed["fault"]
    assert (fault["version"], fault["distribution"], fault["api_version"]) == ("1.4.0", "tg-fault-plugin", 1)
    assert fault["description"] == "Raises in the hook its config names." and fault["problem"] is None
    assert fault["config_schema"]["required"] == ["at"]
    assert listed["ab-split"]["config_schema"]["required"] == ["variants"]
    assert httpx.get(f"{gw.cp.url}/v1/plugins", timeout=5.0).status_code == 401  # admin only


@pytest.mark.parametrize(
    ("plugins", "loc_end", "text"),
    [
        ([{"name": "no-such-plugin"}], ["name"], "no plugin named 'no-such-plugin' is installed"),
        (
            [{"name": "request-size-by-customer", "config": {"default": "large"}}],
            ["config"],
            "$.default: 'large' is not of type 'integer', 'null'",
        ),
        ([{"name": "ab-split", "config": {"variants": []}}], ["config"], "$.variants: [] should be non-empty"),
        ([{"name": "fault", "config": {"at": "never"}}], ["config"], "$.at: 'never' is not one of"),
    ],
)
def test_a_bad_plugin_config_is_refused_with_422(
    gw: Gateway, plugins: list[dict[str, Any]], loc_end: list[str], text: str
) -> None:
    revision = gw.cp.revision()
    r = gw.patch_api("ab", {"policies": {"plugins": plugins}})
    assert r.status_code == 422, r.text
    (err,) = r.json()["detail"]
    assert err["loc"][-len(loc_end) - 2 :] == ["plugins", 0, *loc_end], err
    assert text in err["msg"], err
    assert gw.cp.revision() == revision  # nothing was written


def test_request_size_by_customer(gw: Gateway) -> None:
    with gw.cp.admin() as a:
        plan = create(a, "/v1/usage-plans", {"name": "gold", "apis": [{"api_id": gw.ids["shop"]}]})
    big_id, big = gw.customer("big")
    _, gold = gw.customer("gold-customer", plan["id"])
    _, small = gw.customer("small")
    config = {"default": 100, "plans": {plan["id"]: 1000}, "customers": {big_id: 10000}}
    r = gw.patch_api("shop", {"policies": {"plugins": [{"name": "request-size-by-customer", "config": config}]}})
    assert r.status_code == 200, r.text
    gw.sync()

    def post(key: str, size: int) -> httpx.Response:
        return httpx.post(f"{gw.worker.url}/shop/upload", content=b"x" * size, headers={"x-api-key": key}, timeout=5)

    before = gw.echo.count()
    refused = post(small, 101)
    assert refused.status_code == 413
    assert refused.json()["message"] == "request body over the 100 bytes allowed for this caller"
    assert refused.json()["request_id"] == refused.headers["x-request-id"]
    assert post(gold, 1001).status_code == 413
    assert gw.echo.count() == before  # refused before the upstream
    assert post(small, 100).status_code == 200
    assert post(gold, 1000).json()["body_bytes"] == 1000  # the plan's limit
    assert post(big, 5000).json()["body_bytes"] == 5000  # the customer's own
    assert post(big, 10001).status_code == 413


def test_ab_split_is_sticky_and_seen_by_the_backend(gw: Gateway) -> None:
    r = gw.patch_api("ab", {"policies": {"plugins": [{"name": "ab-split", "config": SPLIT}]}})
    assert r.status_code == 200, r.text
    gw.sync()

    def call(headers: dict[str, str]) -> tuple[str, str]:
        resp = httpx.get(f"{gw.worker.url}/ab/page", headers=headers, timeout=5)
        assert resp.status_code == 200, resp.text
        return resp.json()["headers"]["x-ab-variant"], resp.headers["x-ab-variant"]

    # a client's own x-ab-variant is replaced: only the override header chooses
    seen, told = call({"x-user-id": "user-1", "x-ab-variant": "forged"})
    assert seen == told and seen in ("control", "beta")
    assert all(call({"x-user-id": "user-1"}) == (seen, seen) for _ in range(5))  # sticky
    variants = {call({"x-user-id": f"user-{i}"})[0] for i in range(40)}
    assert variants == {"control", "beta"}  # both get traffic
    assert call({"x-user-id": "user-1", "x-ab-force": "beta"})[0] == "beta"
    assert call({"x-user-id": "user-1", "x-ab-force": "control"})[0] == "control"


def test_a_failing_third_party_plugin_is_a_500_and_the_worker_serves_on(gw: Gateway) -> None:
    assert gw.worker.metric("tollgate_plugin_errors_total", plugin="fault") is None
    with httpx.Client(base_url=gw.worker.url, timeout=5) as client:
        r = client.get("/faulty/request")
        assert r.status_code == 500
        assert r.json()["message"] == "plugin fault failed"
        assert "internal detail" not in r.text
        assert client.get("/faulty/fine").status_code == 200  # the next request, same connection

        r = client.get("/faulty/response")  # after the upstream answered: 500 instead of its response
        assert r.status_code == 500 and r.json()["message"] == "plugin fault failed"
        assert "missing" not in r.text and '"server"' not in r.text  # (the echo's body did not get through)
        assert client.get("/faulty/fine").status_code == 200
    assert gw.worker.proc.alive()
    assert gw.worker.metric("tollgate_plugin_errors_total", plugin="fault") == 2
    log = wait_until(
        lambda: (
            (text := gw.worker.proc.log_path.read_text(errors="replace")) and "failed in on_response" in text and text
        ),
        what="the plugin failures in the worker log",
    )
    assert "plugin 'fault' failed in on_request" in log and "RuntimeError: internal detail" in log
    assert "plugin 'fault' failed in on_response" in log and "KeyError: 'missing'" in log


def test_a_worker_without_a_plugin_keeps_its_config_and_says_why(gw: Gateway) -> None:
    # Installed on the control plane but not on this worker: the snapshot cannot be compiled there.
    other = gw.cluster.worker(gw.cp, name="no-plugins", env={"PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    status = wait_until(lambda: (s := other.status())["last_error"] and s, what="the worker to report the error")
    assert status["revision"] is None
    assert "no plugin named 'fault' is installed" in status["last_error"]
    assert httpx.get(f"{other.url}/faulty/fine", timeout=5).status_code == 503  # no config yet, still up
    other.proc.stop()


def test_plugins_round_trip_through_the_declarative_file(gw: Gateway) -> None:
    config = {"variants": [{"name": "x", "weight": 1}]}
    with gw.cp.admin() as a:
        api = create(a, "/v1/apis", {"name": "declared", "base_path": "/declared"})
        up = a.get("/v1/upstreams").json()["items"][0]
        route = {
            "path": "/r",
            "upstream_id": up["id"],
            "policies": {"plugins": [{"name": "ab-split", "config": config}]},
        }
        create(a, f"/v1/apis/{api['id']}/routes", route)
        exported = a.get("/v1/config/export").json()
        (declared,) = [x for x in exported["apis"] if x["name"] == "declared"]
        assert declared["routes"][0]["policies"] == {"plugins": [{"name": "ab-split", "config": config}]}
        again = a.post("/v1/config/apply", json={"config": exported, "prune": False, "dry_run": True}).json()
        assert again["changes"] == [] and not again["changed"]  # export -> apply: nothing to do
        declared["routes"][0]["policies"]["plugins"][0]["config"]["variants"][0]["weight"] = 0
        refused = a.post("/v1/config/apply", json={"config": exported, "prune": False, "dry_run": True})
        assert refused.status_code == 422 and "refused its config" in refused.text
        assert a.delete(f"/v1/apis/{api['id']}").status_code == 204
