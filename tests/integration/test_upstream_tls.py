"""HTTPS to targets through a real worker (docs/architecture.md, "TLS to targets and to the control plane").

The backends are :class:`tests.integration.tls_support.TlsBackend` (asyncio + ssl, certificates made
by trustme) on 127.0.0.1; one standalone worker serves a snapshot with an upstream per case.  Each
answer says what the backend saw (SNI, connection number, client certificate), so every case fails
if the worker spoke plain HTTP, skipped verification, sent the wrong name or opened a new
connection per request.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from data_plane.snapshot import Snapshot
from data_plane.tls.seal import seal
from tests.integration.harness import Cluster, Worker, free_port, wait_until
from tests.integration.tls_support import TlsBackend

TOKEN = "upstream-tls-cluster-token"
KEEPALIVE = 0.4


def _target(backend: TlsBackend, host: str = "localhost") -> dict[str, Any]:
    return {"id": f"t-{backend.port}-{host}", "host": host, "port": backend.port, "scheme": "https"}


@pytest.fixture(scope="module")
def tls(module_cluster: Cluster) -> Iterator[dict[str, Any]]:
    ca, other_ca, client_ca = trustme.CA(), trustme.CA(), trustme.CA()
    server_cert = ca.issue_cert("localhost", "127.0.0.1", "backend.test")
    main = TlsBackend(server_cert, port=free_port()).start()
    mtls = TlsBackend(server_cert, port=free_port(), client_ca=client_ca).start()
    health = TlsBackend(server_cert, port=free_port()).start()
    rogue = TlsBackend(other_ca.issue_cert("localhost"), port=free_port()).start()  # a CA the gateway does not trust
    client_cert = client_ca.issue_cert("gateway-client", common_name="gateway-client")
    chain = "".join(p.bytes().decode() for p in client_cert.cert_chain_pems)
    ca_pem = ca.cert_pem.bytes().decode()
    upstreams = [
        {"id": "trusted", "name": "trusted", "ca_certificates": ca_pem, "targets": [_target(main)]},
        {
            "id": "untrusted",
            "name": "untrusted",
            "ca_certificates": other_ca.cert_pem.bytes().decode(),
            "targets": [_target(main)],
        },
        {"id": "system", "name": "system", "targets": [_target(main)]},  # the system store knows no trustme CA
        {"id": "noverify", "name": "noverify", "tls_verify": False, "targets": [_target(main)]},
        {
            "id": "sni",
            "name": "sni",
            "ca_certificates": ca_pem,
            "sni": "backend.test",
            "targets": [_target(main, "127.0.0.1")],
        },
        {
            "id": "wrongname",
            "name": "wrongname",
            "ca_certificates": ca_pem,
            "sni": "other.test",
            "targets": [_target(main, "127.0.0.1")],
        },
        {
            "id": "mtls",
            "name": "mtls",
            "ca_certificates": ca_pem,
            "client_certificate_id": "gw-client",
            "targets": [_target(mtls)],
        },
        {"id": "nocert", "name": "nocert", "ca_certificates": ca_pem, "targets": [_target(mtls)]},
        {
            "id": "keepalive",
            "name": "keepalive",
            "ca_certificates": ca_pem,
            "keepalive_timeout": KEEPALIVE,
            "targets": [_target(main)],
        },
        {
            "id": "retry",
            "name": "retry",
            "ca_certificates": ca_pem,
            "retries": 1,
            "passive": {"consecutive_failures": 1, "base_ejection_time": 60},
            "targets": [_target(rogue), _target(main)],
        },
        {
            "id": "health",
            "name": "health",
            "ca_certificates": ca_pem,
            "health_check": {"path": "/health", "interval": 0.1, "healthy_threshold": 1, "unhealthy_threshold": 1},
            "targets": [_target(health)],
        },
    ]
    apis = [
        {
            "id": f"api-{u['id']}",
            "name": u["id"],
            "base_path": f"/{u['id']}",
            "routes": [{"id": f"route-{u['id']}", "path": "/{proxy+}", "upstream_id": u["id"]}],
        }
        for u in upstreams
    ]
    certificates = [
        {
            "id": "gw-client",
            "cert": chain,
            "key": seal(client_cert.private_key_pem.bytes().decode(), "gw-client", TOKEN),
        }
    ]
    doc = {"schema_version": "1.6", "revision": 1, "upstreams": upstreams, "apis": apis, "certificates": certificates}
    path: Path = module_cluster.tmp / "tls.json"
    path.write_bytes(Snapshot.from_dict(doc).to_json())
    worker = module_cluster.worker(snapshot=path, name="tls-worker", env={"TOLLGATE_CLUSTER_TOKEN": TOKEN})
    try:
        yield {"worker": worker, "main": main, "mtls": mtls, "health": health, "rogue": rogue}
    finally:
        for b in (main, mtls, health, rogue):
            b.stop()


def _get(worker: Worker, path: str, client: httpx.Client | None = None) -> httpx.Response:
    if client is not None:
        return client.get(f"{worker.url}{path}")
    return httpx.get(f"{worker.url}{path}", timeout=10.0)


def _log_says(worker: Worker, *parts: str) -> bool:
    return any(all(p in line for p in parts) for line in worker.proc.log().splitlines())


def test_trusted_ca_gives_200_with_the_target_host_as_sni(tls) -> None:
    r = _get(tls["worker"], "/trusted/hello")
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["path"] == "/hello"
    assert seen["sni"] == "localhost"  # the target's host, sent and verified
    assert seen["alpn"] == "http/1.1"
    assert seen["host"] == f"localhost:{tls['main'].port}"


@pytest.mark.parametrize("upstream", ["untrusted", "system"])
def test_untrusted_ca_gives_502_and_the_log_says_why(tls, upstream: str) -> None:
    worker, backend = tls["worker"], tls["main"]
    before = len(backend.requests)
    r = _get(worker, f"/{upstream}/secret")
    assert r.status_code == 502, r.text
    assert r.json()["message"] == "upstream connection failed"
    assert r.headers["x-request-id"] == r.json()["request_id"]
    assert len(backend.requests) == before  # nothing was sent, in clear or otherwise
    wait_until(
        lambda: _log_says(
            worker,
            f"TLS to target localhost:{backend.port} of upstream {upstream} ",
            "certificate verify failed: unable to get local issuer certificate",
        ),
        what="the worker to log the verification failure",
    )


def test_tls_verify_false_accepts_an_unknown_ca(tls) -> None:
    r = _get(tls["worker"], "/noverify/x")
    assert r.status_code == 200, r.text
    assert r.json()["sni"] == "localhost"


def test_sni_override_is_sent_and_verified(tls) -> None:
    worker = tls["worker"]
    r = _get(worker, "/sni/x")
    assert r.status_code == 200, r.text
    assert r.json()["sni"] == "backend.test"
    assert r.json()["host"] == f"127.0.0.1:{tls['main'].port}"  # Host stays the target's

    r = _get(worker, "/wrongname/x")  # a name the certificate does not carry
    assert r.status_code == 502, r.text
    wait_until(
        lambda: _log_says(worker, "server name other.test", "certificate verify failed: Hostname mismatch"),
        what="the worker to log the name mismatch",
    )


def test_client_certificate_is_shown_to_a_backend_that_requires_one(tls) -> None:
    worker, backend = tls["worker"], tls["mtls"]
    r = _get(worker, "/mtls/x")
    assert r.status_code == 200, r.text
    assert r.json()["client_subject"]["commonName"] == "gateway-client"
    before = len(backend.requests)
    # Same backend, no certificate: the backend refuses it (in TLS 1.3 after the client's side of
    # the handshake is done, so the request is lost with the connection, answered 502).
    r = _get(worker, "/nocert/x")
    assert r.status_code == 502, r.text
    assert len(backend.requests) == before


def test_a_failed_handshake_is_a_connect_failure_for_retries_and_passive_health(tls) -> None:
    worker, rogue = tls["worker"], tls["rogue"]
    for i in range(4):  # round robin: the first request meets the rogue target and is retried
        r = _get(worker, f"/retry/{i}")
        assert r.status_code == 200, r.text
        assert r.json()["sni"] == "localhost"
    assert rogue.requests == []
    state = worker.status()["targets"][f"t-{rogue.port}-localhost"]
    assert state["healthy"] is False and state["ejected_until"] is not None  # ejected after one failure


def test_keep_alive_over_tls_reuses_the_connection_until_its_idle_timeout(tls) -> None:
    worker = tls["worker"]
    with httpx.Client(timeout=10.0) as client:
        first = _get(worker, "/keepalive/1", client).json()["connection"]
        second = _get(worker, "/keepalive/2", client).json()["connection"]
        assert second == first  # one backend connection (one handshake) for both requests
        time.sleep(KEEPALIVE + 0.2)  # past the upstream's keepalive_timeout: not reused
        third = _get(worker, "/keepalive/3", client).json()["connection"]
    assert third != first


def test_health_checks_over_tls_mark_a_target_down_and_up(tls) -> None:
    worker, backend = tls["worker"], tls["health"]
    target = f"t-{backend.port}-localhost"

    def healthy() -> bool:
        return bool(worker.status()["targets"][target]["active_healthy"])

    wait_until(lambda: any(r["path"] == "/health" and r["sni"] == "localhost" for r in backend.requests))
    wait_until(healthy, what="the target to be healthy")
    backend.status = 500
    wait_until(lambda: not healthy(), what="the target to be marked down")
    assert _get(worker, "/health/x").status_code == 503
    backend.status = 200
    wait_until(healthy, what="the target to come back")
    assert _get(worker, "/health/x").status_code == 200
