"""`tollgate up` serves HTTPS out of the box: a self-signed certificate for localhost on its TLS port."""

from __future__ import annotations

import os
import ssl
import stat

import httpx

from tests.integration.harness import Cluster, free_port, tollgate_argv, wait_until


def test_up_opens_https_with_a_self_signed_localhost_certificate(cluster: Cluster) -> None:
    data_dir = cluster.tmp / "up-data"
    port, admin, demo, tls = free_port(), free_port(), free_port(), free_port()
    argv = ["up", "--port", str(port), "--admin-port", str(admin), "--demo-port", str(demo), "--tls-port", str(tls)]
    proc = cluster.spawn("up", tollgate_argv(*argv, "--data-dir", str(data_dir)))
    cert = data_dir / "tls" / "localhost.crt"
    wait_until(lambda: proc.alive() and "Tollgate is up" in proc.log(), timeout=60, what="tollgate up's banner")
    assert f"https://localhost:{tls}" in proc.log()
    assert stat.S_IMODE(os.stat(data_dir / "tls" / "localhost.key").st_mode) == 0o600
    for host in ("localhost", "127.0.0.1"):  # both names are in the certificate
        got = httpx.get(f"https://{host}:{tls}/demo/hello", verify=ssl.create_default_context(cafile=cert), timeout=5)
        assert got.status_code == 200
        assert got.json()["headers"]["x-forwarded-proto"] == "https"
    assert httpx.get(f"http://127.0.0.1:{port}/demo/hello", timeout=5).status_code == 200
    key = (data_dir / "tls" / "localhost.key").read_text().splitlines()[1]
    assert key not in proc.log()
