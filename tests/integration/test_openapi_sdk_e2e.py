"""OpenAPI end to end on real processes: import through the CLI, traffic through a worker, and a
generated Python SDK installed into a fresh virtual environment calling the API through the gateway.

The SDK test switches the imported API to ``auth: api_key``, issues a real customer key and gives
it to the SDK once (``connect(api_key=...)``): every call passes the gateway's key check (the
backend sees the customer id, never the key). The 429 comes from ``throttle_backend.py`` (always
429 + ``Retry-After: 7``), a 429 shaped like the gateway's own; the SDK cannot tell the difference.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.harness import ROOT, Cluster, ControlPlane, Worker, create, free_port, tollgate_argv

DATA = ROOT / "tests" / "data"


@pytest.fixture(scope="module")
def gateway(module_cluster: Cluster) -> Iterator[tuple[ControlPlane, Worker, dict[str, Any]]]:
    worker_port = free_port()
    cp = module_cluster.control_plane(extra_env={"TOLLGATE_PUBLIC_URL": f"http://127.0.0.1:{worker_port}"})
    echo = module_cluster.echo("pets")
    throttle_port = free_port()
    throttle = module_cluster.spawn(
        "throttle", [sys.executable, str(ROOT / "tests/integration/throttle_backend.py"), str(throttle_port)]
    )
    module_cluster.wait_http(throttle, f"http://127.0.0.1:{throttle_port}/__echo/count")
    worker = module_cluster.worker(cp, port=worker_port)
    ids: dict[str, Any] = {}
    with cp.admin() as admin:
        for name, port in (("echo", echo.port), ("throttle", throttle_port)):
            ids[name] = create(admin, "/v1/upstreams", {"name": name})["id"]
            create(admin, f"/v1/upstreams/{ids[name]}/targets", {"host": "127.0.0.1", "port": port})
    yield cp, worker, ids


def cli(cp: ControlPlane, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TOLLGATE_ADMIN_URL": cp.url, "TOLLGATE_ADMIN_TOKEN": cp.admin_token}
    done = subprocess.run(tollgate_argv(*args), env=env, capture_output=True, text=True, timeout=180, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_imported_petstore_routes_reach_the_backend(gateway: tuple[ControlPlane, Worker, dict[str, Any]]) -> None:
    cp, worker, _ = gateway
    out = cli(cp, "import", str(DATA / "petstore.yaml"), "--upstream", "echo").stdout
    assert "swagger-petstore: created" in out and "+ GET /pets/{petId}" in out
    worker.wait_revision(cp.revision())
    seen = httpx.get(f"{worker.url}/v1/pets/7?x=1", timeout=5).json()
    assert (seen["method"], seen["path"], seen["query"]) == ("GET", "/pets/7", "x=1")
    created = httpx.post(f"{worker.url}/v1/pets", json={"id": 1, "name": "rex"}, timeout=5).json()
    assert (created["method"], created["path"], json.loads(created["body"])) == (
        "POST",
        "/pets",
        {"id": 1, "name": "rex"},
    )
    assert httpx.delete(f"{worker.url}/v1/pets/7", timeout=5).status_code == 405  # only what the document says
    assert "up to date" in cli(cp, "import", str(DATA / "petstore.yaml"), "--upstream", "echo").stdout


SCRIPT = """
import json, sys
from echo_service_client.api.default import get_item, get_file, get_throttled
from echo_service_client.gateway import BASE_URL, Throttled, connect, retry_after
from echo_service_client.models import EchoReply, TollgateError

client = connect(api_key=sys.argv[1])          # the key is given once
item = get_item.sync(item_id="42", client=client)
files = get_file.sync_detailed(path="a/b.txt", client=client)
throttled = get_throttled.sync_detailed(client=client)
try:
    Throttled.check(throttled)
    raised = None
except Throttled as exc:
    raised = exc.retry_after
print(json.dumps({
    "base_url": BASE_URL,
    "item": [type(item).__name__, item.path, item.method, item.headers.to_dict().get("x-customer-id"),
             sys.argv[1] in json.dumps(item.headers.to_dict())],
    "file": [int(files.status_code), files.parsed.path, files.parsed.headers.to_dict().get("x-customer-id")],
    "throttled": [int(throttled.status_code), type(throttled.parsed).__name__, throttled.parsed.message,
                  retry_after(throttled), raised],
}))
"""


def test_generated_sdk_calls_the_api_through_the_gateway(
    gateway: tuple[ControlPlane, Worker, dict[str, Any]], tmp_path: Path
) -> None:
    cp, worker, _ = gateway
    cli(cp, "import", str(DATA / "echo-3.1.yaml"), "--upstream", "echo")
    with cp.admin() as admin:
        api_id = next(a["id"] for a in admin.get("/v1/apis").json()["items"] if a["name"] == "echo-service")
        admin.patch(f"/v1/apis/{api_id}", json={"auth": "api_key"}).raise_for_status()
        customer = create(admin, "/v1/customers", {"name": "sdk-user", "api_ids": [api_id]})
        key = create(admin, f"/v1/customers/{customer['id']}/keys", {"name": "sdk"})["key"]
    worker.wait_revision(cp.revision())
    assert httpx.get(f"{worker.url}/echo/items/42", timeout=5).status_code == 401  # the gateway checks keys

    out = cli(cp, "sdk", "echo-service", "--lang", "python", "-o", str(tmp_path / "sdk")).stdout
    package = tmp_path / "sdk" / "echo-service-client"
    assert str(package) in out and (package / "echo_service_client" / "gateway.py").is_file()

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    pip = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(package)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    run = subprocess.run([python, "-c", SCRIPT, key], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)

    assert result["base_url"] == f"{worker.url}/echo"  # servers[0].url = TOLLGATE_PUBLIC_URL + base path
    # The key passed the gateway's check on every call; the backend sees who called, never the key.
    assert result["item"] == ["EchoReply", "/items/42", "GET", customer["id"], False]
    assert result["file"] == [200, "/files/a%2Fb.txt", customer["id"]]  # greedy route; '/' escaped by the SDK
    assert result["throttled"] == [429, "TollgateError", "slow down (test backend)", 7.0, 7.0]
