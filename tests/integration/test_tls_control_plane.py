"""TLS end to end through the control plane: certificates added and renewed through ``/v1/certificates``
reach the worker's TLS listener (rotation under load without a failed request), mTLS customers get
plans and quotas as key customers do, and the private key is readable nowhere on the way.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import trustme

from tests.integration.harness import Backend, Cluster, ControlPlane, Worker, create, free_port, wait_until


def pem_chain(cert: trustme.LeafCert) -> str:
    return "".join(p.bytes().decode() for p in cert.cert_chain_pems)


def serial(sock: ssl.SSLSocket) -> str:
    peer = sock.getpeercert()
    assert peer
    return str(peer["serialNumber"])


def leaf_serial(cert: trustme.LeafCert) -> str:
    from cryptography import x509

    return format(x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).serial_number, "X")


@dataclass
class Tls:
    cp: ControlPlane
    worker: Worker
    tls_port: int
    echo: Backend
    ca: trustme.CA
    ids: dict[str, str] = field(default_factory=dict)

    def context(self, client: trustme.LeafCert | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        if client is not None:
            client.configure_cert(ctx)
        return ctx

    def connect(self, ctx: ssl.SSLContext, name: str = "api.example.com") -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", self.tls_port), timeout=5)
        try:
            return ctx.wrap_socket(raw, server_hostname=name)
        except BaseException:
            raw.close()
            raise

    def sync(self) -> None:
        self.worker.wait_revision(self.cp.revision())


def request(sock: socket.socket, path: str, close: bool = False) -> tuple[int, dict[str, str]]:
    extra = "connection: close\r\n" if close else ""
    sock.sendall(f"GET {path} HTTP/1.1\r\nhost: api.example.com\r\n{extra}\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(fields.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in a body")
        body += chunk
    return int(lines[0].split()[1]), fields


@pytest.fixture(scope="module")
def tls(module_cluster: Cluster) -> Iterator[Tls]:
    c = module_cluster
    echo = c.echo("tls-cp")
    cp = c.control_plane()
    ca = trustme.CA()
    first = ca.issue_cert("api.example.com")
    tls_port = free_port()
    with cp.admin() as a:
        up = create(a, "/v1/upstreams", {"name": "svc"})
        create(a, f"/v1/upstreams/{up['id']}/targets", {"host": "127.0.0.1", "port": echo.port})
        api = create(a, "/v1/apis", {"name": "open", "base_path": "/open"})
        create(a, f"/v1/apis/{api['id']}/routes", {"path": "/{proxy+}", "upstream_id": up["id"]})
        crt = create(
            a,
            "/v1/certificates",
            {
                "name": "api",
                "cert": pem_chain(first),
                "key": first.private_key_pem.bytes().decode(),
                "snis": ["api.example.com"],
            },
        )
    worker = c.worker(cp, name="tls-cp-worker", extra=("--tls-port", str(tls_port)))
    t = Tls(cp, worker, tls_port, echo, ca, {"upstream": up["id"], "certificate": crt["id"]})
    t.sync()
    yield t


def test_a_certificate_from_the_admin_api_is_served(tls: Tls) -> None:
    with tls.connect(tls.context()) as s:
        assert request(s, "/open/x")[0] == 200


def test_rotation_under_load_fails_no_request_and_keeps_open_connections(tls: Tls) -> None:
    renewed = tls.ca.issue_cert("api.example.com")
    errors: list[str] = []
    served: list[str] = []
    ok = [0]
    stop = threading.Event()

    def keep_alive() -> None:
        try:
            with tls.connect(tls.context()) as s:
                while not stop.is_set():
                    status, _ = request(s, "/open/k")
                    if status != 200:
                        errors.append(f"keep-alive: {status}")
                    ok[0] += 1
        except (OSError, ConnectionError) as exc:
            errors.append(f"keep-alive: {exc!r}")

    def fresh() -> None:
        for _ in range(100_000):  # bounded; stops on the event long before
            if stop.is_set():
                return
            try:
                with tls.connect(tls.context()) as s:
                    served.append(serial(s))
                    status, _ = request(s, "/open/f", close=True)
                    if status != 200:
                        errors.append(f"fresh: {status}")
                    ok[0] += 1
            except (OSError, ConnectionError) as exc:
                errors.append(f"fresh: {exc!r}")

    with tls.connect(tls.context()) as before:  # opened on the old certificate, used after the swap
        old_serial = serial(before)
        threads = [threading.Thread(target=keep_alive) for _ in range(2)] + [
            threading.Thread(target=fresh) for _ in range(2)
        ]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: ok[0] >= 20, what="traffic before the renewal")
            with tls.cp.admin() as a:
                r = a.patch(
                    f"/v1/certificates/{tls.ids['certificate']}",
                    json={"cert": pem_chain(renewed), "key": renewed.private_key_pem.bytes().decode()},
                )
                assert r.status_code == 200, r.text
            tls.sync()
            # (deadlines for a loaded machine: four client threads doing full handshakes share its cores)
            wait_until(
                lambda: served and served[-1] == leaf_serial(renewed),
                timeout=30.0,
                what="new handshakes to get the renewed certificate",
            )
            at = ok[0]
            wait_until(lambda: ok[0] >= at + 20, timeout=30.0, what="traffic after the renewal")
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=10)
        assert request(before, "/open/after")[0] == 200  # the connection from before was not dropped
    assert old_serial != leaf_serial(renewed)
    assert errors == []


def test_mtls_customers_get_plans_and_quotas_like_key_customers(tls: Tls) -> None:
    client_ca = trustme.CA()
    client = client_ca.issue_cert("acme@example.com")
    der = ssl.PEM_cert_to_DER_cert(client.cert_chain_pems[0].bytes().decode())
    with tls.cp.admin() as a:
        api = create(
            a,
            "/v1/apis",
            {
                "name": "mtls",
                "base_path": "/m",
                "auth": "mtls",
                "mtls_ca_certificates": client_ca.cert_pem.bytes().decode(),
            },
        )
        create(a, f"/v1/apis/{api['id']}/routes", {"path": "/{proxy+}", "upstream_id": tls.ids["upstream"]})
        plan = create(
            a,
            "/v1/usage-plans",
            {"name": "tiny", "quota": {"limit": 3, "period": "DAY"}, "apis": [{"api_id": api["id"]}]},
        )
        customer = create(
            a, "/v1/customers", {"name": "acme-mtls", "mtls_fingerprints": [hashlib.sha256(der).hexdigest()]}
        )
        r = a.put(f"/v1/customers/{customer['id']}/plan", json={"plan_id": plan["id"]})
        assert r.status_code in (200, 204), r.text
    tls.sync()
    with tls.connect(tls.context(client)) as s:
        statuses = [request(s, "/m/x") for _ in range(4)]
    assert [st for st, _ in statuses] == [200, 200, 200, 429]
    with tls.connect(tls.context()) as s:
        assert request(s, "/m/x")[0] == 401  # no certificate


def test_the_private_key_is_readable_nowhere(tls: Tls, module_cluster: Cluster) -> None:
    with tls.cp.admin() as a:
        fresh = tls.ca.issue_cert("other.example.com")
        key_pem = fresh.private_key_pem.bytes().decode()
        key_line = key_pem.splitlines()[1]
        crt = create(a, "/v1/certificates", {"cert": pem_chain(fresh), "key": key_pem, "snis": ["other.example.com"]})
        bodies = [a.get(f"/v1/certificates/{crt['id']}").text, a.get("/v1/certificates").text, str(crt)]
    tls.sync()
    cache_dir = module_cluster.tmp / "tls-cp-worker-cache"
    # the cache: the last full snapshot (*.json) and the journal of deltas since (*.deltas), where a
    # certificate added later arrives
    cache_files = wait_until(
        lambda: [p for p in cache_dir.glob("snapshot-*") if crt["id"] in p.read_text(errors="replace")],
        what="the worker's cache (snapshot or delta journal) to hold the new certificate",
    )
    places = {
        **{f"response {i}": b for i, b in enumerate(bodies)},
        **{str(p): p.read_text(errors="replace") for p in cache_files},
        "control plane log": tls.cp.proc.log(),
        "worker log": tls.worker.proc.log(),
    }
    for where, text in places.items():
        assert key_line not in text, where
        assert "PRIVATE KEY" not in text, where
    with tls.connect(tls.context(), "other.example.com") as s:  # and yet the worker serves it
        assert request(s, "/open/x")[0] == 200


def test_an_upstreams_client_certificate_from_the_admin_api_reaches_an_mtls_backend(tls: Tls) -> None:
    from tests.integration.tls_support import TlsBackend

    backend_ca, client_ca = trustme.CA(), trustme.CA()
    backend = TlsBackend(backend_ca.issue_cert("localhost"), port=free_port(), client_ca=client_ca).start()
    try:
        shown = client_ca.issue_cert("gateway", common_name="gateway-to-backend")
        with tls.cp.admin() as a:
            crt = create(
                a,
                "/v1/certificates",
                {
                    "name": "to-backend",
                    "cert": pem_chain(shown),
                    "key": shown.private_key_pem.bytes().decode(),
                    "snis": [],
                },
            )
            body = {"name": "mtls-backend", "ca_certificates": backend_ca.cert_pem.bytes().decode()}
            r = a.post("/v1/upstreams", json={**body, "client_certificate_id": "no-such-certificate"})
            assert r.status_code == 422 and "names no certificate" in r.text
            up = create(a, "/v1/upstreams", {**body, "client_certificate_id": crt["id"]})
            assert up["client_certificate_id"] == crt["id"]
            create(
                a, f"/v1/upstreams/{up['id']}/targets", {"host": "localhost", "port": backend.port, "scheme": "https"}
            )
            api = create(a, "/v1/apis", {"name": "to-mtls-backend", "base_path": "/mb"})
            create(a, f"/v1/apis/{api['id']}/routes", {"path": "/{proxy+}", "upstream_id": up["id"]})
            r = a.delete(f"/v1/certificates/{crt['id']}")
            assert r.status_code == 409 and "mtls-backend" in r.text  # in use
            dumped = a.get("/v1/config/export").json()
            assert [u.get("client_certificate") for u in dumped["upstreams"] if u["name"] == "mtls-backend"] == [
                "to-backend"
            ]
        tls.sync()
        with tls.connect(tls.context()) as s:
            status, _ = request(s, "/mb/hello")
        assert status == 200
        assert backend.requests[-1]["client_subject"]["commonName"] == "gateway-to-backend"
    finally:
        backend.stop()
