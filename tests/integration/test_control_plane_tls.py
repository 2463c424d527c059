"""The control-plane channel over HTTPS (docs/architecture.md, "TLS to targets and to the control plane").

``tollgate control-plane`` serves HTTPS with ``TOLLGATE_ADMIN_TLS_CERT`` / ``_KEY`` (a trustme
certificate for 127.0.0.1); a worker given the right CA (``--control-plane-ca``) syncs and reports
in, one given another CA keeps retrying and says why in its log, and never reaches the control
plane over plain HTTP; the admin CLI honours the https URL and ``TOLLGATE_CONTROL_PLANE_CA``.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from typer.testing import CliRunner

from tests.integration.harness import Cluster, ControlPlane, create, free_port, wait_until
from tests.integration.tls_support import TlsBackend
from tollgate.cli import app


@pytest.fixture(scope="module")
def pki(module_cluster: Cluster) -> dict[str, Path]:
    ca, other = trustme.CA(), trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    d = module_cluster.tmp / "pki"
    d.mkdir()
    files = {"ca": d / "ca.pem", "other": d / "other-ca.pem", "cert": d / "cp.pem", "key": d / "cp.key"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    other.cert_pem.write_to_path(str(files["other"]))
    files["cert"].write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    fd = os.open(files["key"], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(leaf.private_key_pem.bytes())
    return files


@pytest.fixture(scope="module")
def cp(module_cluster: Cluster, pki: dict[str, Path]) -> Iterator[ControlPlane]:
    verify = ssl.create_default_context(cafile=str(pki["ca"]))
    env = {"TOLLGATE_ADMIN_TLS_CERT": str(pki["cert"]), "TOLLGATE_ADMIN_TLS_KEY": str(pki["key"])}
    yield module_cluster.control_plane(extra_env=env, verify=verify)


def test_the_control_plane_serves_https(cp: ControlPlane) -> None:
    assert cp.url.startswith("https://")
    with cp.admin() as admin:
        assert admin.get("/v1/config").status_code == 200
    # plain HTTP on the same port gets no admin API
    with pytest.raises(httpx.HTTPError):
        httpx.get(cp.url.replace("https://", "http://") + "/v1/config", timeout=2.0)
    # (the TLS 1.2 floor: tests/unit/control_plane/test_server_tls.py; this machine's clients refuse 1.1 anyway)


def _upstream(cp: ControlPlane, name: str) -> dict[str, Any]:
    with cp.admin() as admin:
        return create(admin, "/v1/upstreams", {"name": name})


def test_worker_syncs_over_https_with_the_right_ca(module_cluster: Cluster, cp: ControlPlane, pki) -> None:
    # An https target configured through the admin API: the fields travel to the worker and are used.
    backend_ca = trustme.CA()
    backend = TlsBackend(backend_ca.issue_cert("localhost"), port=free_port()).start()
    try:
        with cp.admin() as admin:
            up = create(
                admin, "/v1/upstreams", {"name": "synced", "ca_certificates": backend_ca.cert_pem.bytes().decode()}
            )
            create(
                admin,
                f"/v1/upstreams/{up['id']}/targets",
                {"host": "localhost", "port": backend.port, "scheme": "https"},
            )
            api = create(admin, "/v1/apis", {"name": "synced-api", "base_path": "/synced"})
            create(admin, f"/v1/apis/{api['id']}/routes", {"path": "/{p+}", "upstream_id": up["id"]})
        revision = cp.revision()
        worker = module_cluster.worker(cp, name="tls-good", extra=("--control-plane-ca", str(pki["ca"])))
        status = worker.wait_revision(revision)
        assert status["control_plane_connected"] is True
        r = httpx.get(f"{worker.url}/synced/x", timeout=10.0)
        assert r.status_code == 200, r.text
        assert r.json()["sni"] == "localhost" and r.json()["path"] == "/x"
    finally:
        backend.stop()

    def reported() -> list[dict[str, Any]]:
        return [n for n in cp.get("/v1/nodes").json()["items"] if n["id"] == "tls-good" and n["revision"] == revision]

    wait_until(reported, timeout=30, what="the worker's status to reach the control plane")
    assert "certificate verify failed" not in worker.proc.log()


def test_worker_with_the_wrong_ca_does_not_sync_and_says_why(module_cluster: Cluster, cp: ControlPlane, pki) -> None:
    _upstream(cp, "unseen")
    worker = module_cluster.worker(cp, name="tls-bad", extra=("--control-plane-ca", str(pki["other"])))
    expected = (
        "control plane TLS certificate verify failed: unable to get local issuer certificate "
        f"(trusting TOLLGATE_CONTROL_PLANE_CA={pki['other']})"
    )
    wait_until(lambda: expected in worker.proc.log(), timeout=30, what="the worker to log the failed verification")
    # /status says so too (a later attempt may fail otherwise for a moment, e.g. a timeout under load)
    status = wait_until(
        lambda: "certificate verify failed" in ((s := worker.status())["last_error"] or "") and s,
        timeout=30,
        what="the worker's last_error",
    )
    assert status["revision"] is None and status["control_plane_connected"] is False, status  # nothing applied
    assert not [n for n in cp.get("/v1/nodes").json()["items"] if n["id"] == "tls-bad"]


def test_worker_refuses_an_unreadable_ca_file_at_start(module_cluster: Cluster, cp: ControlPlane, pki) -> None:
    worker = module_cluster.worker(
        cp, name="tls-missing", extra=("--control-plane-ca", str(pki["ca"]) + ".missing"), wait=False
    )
    assert worker.proc.proc is not None and worker.proc.proc.wait(timeout=30) != 0
    assert "--control-plane-ca" in worker.proc.log()


def _cli(cp: ControlPlane, *args: str, ca: Path | None) -> Any:
    env = {"TOLLGATE_ADMIN_URL": cp.url, "TOLLGATE_ADMIN_TOKEN": cp.admin_token}
    if ca is not None:
        env["TOLLGATE_CONTROL_PLANE_CA"] = str(ca)
    return CliRunner().invoke(app, [*args, "--output", "json"], env=env)


def test_admin_cli_over_https_and_tls_fields(cp: ControlPlane, pki, tmp_path: Path) -> None:
    bundle = pki["ca"]  # any CA bundle will do as an upstream's ca_certificates
    result = _cli(
        cp, "upstreams", "create", "name=cli-tls", f"ca_certificates=@{bundle}", "sni=api.example.com", ca=pki["ca"]
    )
    assert result.exit_code == 0, result.output
    up = json.loads(result.stdout)
    assert up["ca_certificates"] == bundle.read_text() and up["sni"] == "api.example.com"
    result = _cli(
        cp, "targets", "create", "--upstream", "cli-tls", "host=10.0.0.9", "port=443", "scheme=https", ca=pki["ca"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["scheme"] == "https"

    refused = _cli(cp, "upstreams", "list", ca=pki["other"])  # a CA that did not sign the control plane's
    assert refused.exit_code == 1
    assert "certificate verify failed" in refused.output
