"""The worker terminating TLS: SNI certificates, protocol floor, ALPN, resumption, https_only, mTLS.

Real worker processes serving snapshot files whose certificates (made by ``trustme``) carry keys
sealed for the workers' cluster token; clients are the standard library's ``ssl`` on real sockets.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import trustme

from data_plane.tls.seal import seal
from tests.integration.harness import Backend, Cluster, Worker, free_port

TOKEN = "tls-test-cluster-token"


def chain(cert: trustme.LeafCert) -> str:
    return "".join(p.bytes().decode() for p in cert.cert_chain_pems)


def certificate(cid: str, cert: trustme.LeafCert, snis: list[str], default: bool = False) -> dict[str, Any]:
    key = cert.private_key_pem.bytes().decode()
    return {"id": cid, "cert": chain(cert), "key": seal(key, cid, TOKEN), "snis": snis, "default": default}


def fingerprint(cert: trustme.LeafCert) -> str:
    der = ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())
    return hashlib.sha256(der).hexdigest()


@dataclass
class Pki:
    ca: trustme.CA
    exact: trustme.LeafCert
    wildcard: trustme.LeafCert
    fallback: trustme.LeafCert
    local: trustme.LeafCert
    client_ca: trustme.CA
    client: trustme.LeafCert
    client_by_subject: trustme.LeafCert
    expired: trustme.LeafCert
    stranger: trustme.LeafCert  # issued by a CA nobody trusts


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca = trustme.CA()
    client_ca = trustme.CA(organization_name="Tollgate client CA")
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    return Pki(
        ca=ca,
        exact=ca.issue_cert("api.example.com", common_name="exact"),
        wildcard=ca.issue_cert("*.example.com", common_name="wildcard"),
        fallback=ca.issue_cert("fallback.test", common_name="fallback"),
        local=ca.issue_cert("localhost", "127.0.0.1", common_name="local"),
        client_ca=client_ca,
        client=client_ca.issue_cert("client-a@example.com", common_name="acme-client"),
        client_by_subject=client_ca.issue_cert("client-b@example.com", common_name="globex-client"),
        expired=client_ca.issue_cert("old@example.com", common_name="old", not_before=past, not_after=past),
        stranger=trustme.CA().issue_cert("stranger@example.com", common_name="stranger"),
    )


def snapshot(pki: Pki, backend: Backend, *, default: bool = True) -> dict[str, Any]:
    target = [{"id": "t", "host": "127.0.0.1", "port": backend.port}]
    route = [{"id": "r", "path": "/{proxy+}", "upstream_id": "u"}]
    client_ca = pki.client_ca.cert_pem.bytes().decode()
    return {
        "schema_version": "1.6",
        "revision": 1,
        "upstreams": [{"id": "u", "name": "u", "targets": target}],
        "apis": [
            {"id": "open", "name": "open", "base_path": "/open", "routes": [dict(route[0], id="r-open")]},
            {
                "id": "tls",
                "name": "tls",
                "base_path": "/tls",
                "https_only": True,
                "routes": [dict(route[0], id="r-tls")],
            },
            {
                "id": "mtls",
                "name": "mtls",
                "base_path": "/mtls",
                "auth": "mtls",
                "auth_settings": {"mtls_ca_certificates": client_ca},
                "routes": [dict(route[0], id="r-mtls")],
            },
        ],
        "customers": [
            {"id": "acme", "name": "acme", "api_ids": ["mtls"], "mtls_fingerprints": [fingerprint(pki.client)]},
            {
                "id": "globex",
                "name": "globex",
                "api_ids": ["mtls"],
                "mtls_subjects": [subject(pki.client_by_subject)],
            },
            {"id": "old", "name": "old", "api_ids": ["mtls"], "mtls_fingerprints": [fingerprint(pki.expired)]},
        ],
        "certificates": [
            certificate("c-exact", pki.exact, ["api.example.com"]),
            certificate("c-wild", pki.wildcard, ["*.example.com"]),
            *([certificate("c-default", pki.fallback, [], default=True)] if default else []),
        ],
    }


def subject(cert: trustme.LeafCert) -> str:
    """The subject as a customer's ``mtls_subjects`` names it (RFC 4514, cryptography's spelling)."""
    from cryptography import x509

    return x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).subject.rfc4514_string()


@dataclass
class TlsWorker:
    worker: Worker
    tls_port: int


def start(c: Cluster, pki: Pki, backend: Backend, name: str, *, default: bool = True, local: bool = True) -> TlsWorker:
    path = c.tmp / f"{name}.json"
    path.write_text(json.dumps(snapshot(pki, backend, default=default)))
    tls_port = free_port()
    extra: tuple[str, ...] = ("--tls-port", str(tls_port))
    if local:
        crt, key = c.tmp / f"{name}-local.crt", c.tmp / f"{name}-local.key"
        pki.local.cert_chain_pems[0].write_to_path(str(crt))
        pki.local.private_key_pem.write_to_path(str(key))
        extra += ("--tls-cert", str(crt), "--tls-key", str(key))
    worker = c.worker(snapshot=path, name=name, extra=extra, env={"TOLLGATE_CLUSTER_TOKEN": TOKEN})
    return TlsWorker(worker, tls_port)


def client_context(pki: Pki, cert: trustme.LeafCert | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    pki.ca.configure_trust(ctx)
    if cert is not None:
        cert.configure_cert(ctx)
    return ctx


def connect(port: int, ctx: ssl.SSLContext, name: str | None, **kw: Any) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        return ctx.wrap_socket(raw, server_hostname=name, **kw)
    except BaseException:
        raw.close()
        raise


def get(sock: socket.socket, path: str, host: str = "t") -> tuple[int, dict[str, str], bytes]:
    sock.sendall(f"GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before a response"
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(fields.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return int(lines[0].split()[1]), fields, body


def served_cn(sock: ssl.SSLSocket) -> str:
    cert = sock.getpeercert()
    assert cert
    return dict(x[0] for x in cert["subject"])["commonName"]


@pytest.fixture(scope="module")
def tls(module_cluster: Cluster, pki: Pki) -> Iterator[tuple[TlsWorker, Backend]]:
    backend = module_cluster.echo("tls-echo")
    yield start(module_cluster, pki, backend, "tls-worker"), backend


def test_sni_picks_exact_then_wildcard_then_the_default(tls: tuple[TlsWorker, Backend], pki: Pki) -> None:
    w, _ = tls
    ctx = client_context(pki)
    ctx.check_hostname = False  # the default certificate's name is not the one asked for
    for name, cn in (
        ("api.example.com", "exact"),
        ("API.Example.com", "exact"),
        ("other.example.com", "wildcard"),
        ("deep.sub.example.com", "fallback"),  # a wildcard covers one label only
        ("unknown.test", "fallback"),
        (None, "fallback"),
    ):
        with connect(w.tls_port, ctx, name) as s:
            assert served_cn(s) == cn, name
            assert get(s, "/open/x")[0] == 200


def test_without_a_snapshot_default_the_workers_own_certificate_is_served(
    module_cluster: Cluster, pki: Pki, tls: tuple[TlsWorker, Backend]
) -> None:
    _, backend = tls
    w = start(module_cluster, pki, backend, "tls-local-default", default=False)
    with connect(w.tls_port, client_context(pki), "localhost") as s:
        assert served_cn(s) == "local"
    with connect(w.tls_port, client_context(pki), "api.example.com") as s:
        assert served_cn(s) == "exact"


def test_no_matching_certificate_and_no_default_fails_the_handshake(
    module_cluster: Cluster, pki: Pki, tls: tuple[TlsWorker, Backend]
) -> None:
    _, backend = tls
    w = start(module_cluster, pki, backend, "tls-no-default", default=False, local=False)
    with pytest.raises(ssl.SSLError):  # an unrecognized_name alert (uvloop may close before it is flushed)
        connect(w.tls_port, client_context(pki), "nobody.test")
    with connect(w.tls_port, client_context(pki), "api.example.com") as s:  # the worker still serves
        assert get(s, "/open/x")[0] == 200


def test_https_forwards_x_forwarded_proto_https_and_negotiates_http_1_1(
    tls: tuple[TlsWorker, Backend], pki: Pki
) -> None:
    w, _ = tls
    ctx = client_context(pki)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with connect(w.tls_port, ctx, "api.example.com") as s:
        assert s.selected_alpn_protocol() == "http/1.1"
        assert s.version() in ("TLSv1.2", "TLSv1.3")
        status, _, body = get(s, "/open/x", host="api.example.com")
        assert status == 200
        seen = json.loads(body)["headers"]
        assert seen["x-forwarded-proto"] == "https"
        status, _, body = get(s, "/tls/y")  # keep-alive: a second request on the same TLS connection
        assert status == 200
    with socket.create_connection(("127.0.0.1", w.worker.port), timeout=5) as plain:
        status, _, body = get(plain, "/open/x")
        assert json.loads(body)["headers"]["x-forwarded-proto"] == "http"


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_tls_1_0_and_1_1_are_refused(tls: tuple[TlsWorker, Backend], pki: Pki, version: str) -> None:
    w, _ = tls
    ctx = client_context(pki)
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ctx.maximum_version = getattr(ssl.TLSVersion, version)
    try:
        ctx.set_ciphers("ALL:@SECLEVEL=0")  # let the client offer what old versions need
    except ssl.SSLError:
        pass
    with pytest.raises(ssl.SSLError):
        connect(w.tls_port, ctx, "api.example.com")


def test_tls_1_2_uses_a_forward_secret_aead_cipher(tls: tuple[TlsWorker, Backend], pki: Pki) -> None:
    w, _ = tls
    ctx = client_context(pki)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with connect(w.tls_port, ctx, "api.example.com") as s:
        name, version, _ = s.cipher()  # type: ignore[misc]
        assert version == "TLSv1.2"
        assert name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name), name
    weak = client_context(pki)
    weak.maximum_version = ssl.TLSVersion.TLSv1_2
    weak.set_ciphers("AES128-SHA:AES256-SHA")  # RSA key exchange, CBC: no forward secrecy
    with pytest.raises(ssl.SSLError):
        connect(w.tls_port, weak, "api.example.com")


def test_sessions_resume(tls: tuple[TlsWorker, Backend], pki: Pki) -> None:
    w, _ = tls
    ctx = client_context(pki)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # TLS 1.2: the session is known right after the handshake
    with connect(w.tls_port, ctx, "api.example.com") as s:
        assert get(s, "/open/x")[0] == 200
        session = s.session
        assert not s.session_reused
    with connect(w.tls_port, ctx, "api.example.com", session=session) as s:
        assert s.session_reused
        assert get(s, "/open/x")[0] == 200


def test_garbage_and_plain_http_on_the_tls_port_are_closed_without_hurting_others(
    tls: tuple[TlsWorker, Backend], pki: Pki
) -> None:
    w, _ = tls
    with connect(w.tls_port, client_context(pki), "api.example.com") as kept:
        assert get(kept, "/open/a")[0] == 200
        for payload in (b"GET / HTTP/1.1\r\nhost: t\r\n\r\n", b"\x16\x03\x01\x00\x05hello", b"\x00" * 4096):
            with socket.create_connection(("127.0.0.1", w.tls_port), timeout=5) as s:
                s.sendall(payload)
                try:
                    assert s.recv(4096)[:5] != b"HTTP/"  # no HTTP answer; an alert or the end
                except ConnectionResetError:
                    pass
        assert get(kept, "/open/b")[0] == 200  # the open TLS connection is unaffected
    with connect(w.tls_port, client_context(pki), "api.example.com") as s:
        assert get(s, "/open/c")[0] == 200
    assert "Traceback" not in w.worker.proc.log()


def test_https_only_redirects_get_and_refuses_other_methods_on_plain_http(
    tls: tuple[TlsWorker, Backend], pki: Pki
) -> None:
    w, backend = tls
    with socket.create_connection(("127.0.0.1", w.worker.port), timeout=5) as s:
        status, fields, _ = get(s, "/tls/items?page=2", host="api.example.com:8000")
        assert status == 308
        assert fields["location"] == f"https://api.example.com:{w.tls_port}/tls/items?page=2"
    with socket.create_connection(("127.0.0.1", w.worker.port), timeout=5) as s:
        s.sendall(b"POST /tls/items HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\n\r\nhi")
        head = s.recv(65536).decode("latin-1")
        assert head.startswith("HTTP/1.1 426 "), head
        assert "\r\nupgrade: TLS/1.2, HTTP/1.1\r\n" in head
    with connect(w.tls_port, client_context(pki), "api.example.com") as s:
        assert get(s, "/tls/items")[0] == 200


def test_mtls_maps_a_good_certificate_to_its_customer(tls: tuple[TlsWorker, Backend], pki: Pki) -> None:
    w, _ = tls
    for cert, customer in ((pki.client, "acme"), (pki.client_by_subject, "globex")):
        with connect(w.tls_port, client_context(pki, cert), "api.example.com") as s:
            status, _, body = get(s, "/mtls/x")
            assert status == 200, body
            assert json.loads(body)["headers"]["x-customer-id"] == customer
            assert get(s, "/mtls/y")[0] == 200  # the verdict holds for the connection's next request


@pytest.mark.parametrize(
    ("who", "status", "message"),
    [
        ("none", 401, "client certificate required"),
        ("stranger", 403, "not issued by a CA this API trusts"),
        ("expired", 403, "expired"),
        ("untrusted-server-ca", 403, "not issued by a CA this API trusts"),
    ],
)
def test_mtls_refuses_a_missing_unknown_or_expired_certificate(
    tls: tuple[TlsWorker, Backend], pki: Pki, who: str, status: int, message: str
) -> None:
    w, _ = tls
    cert = {"none": None, "stranger": pki.stranger, "expired": pki.expired, "untrusted-server-ca": pki.local}[who]
    with connect(w.tls_port, client_context(pki, cert), "api.example.com") as s:
        got, _, body = get(s, "/mtls/x")
        assert got == status, body
        assert message in json.loads(body)["message"]
        assert get(s, "/open/x")[0] == 200  # APIs without mTLS on the same connection do not care


def test_mtls_on_plain_http_is_401(tls: tuple[TlsWorker, Backend]) -> None:
    w, _ = tls
    with socket.create_connection(("127.0.0.1", w.worker.port), timeout=5) as s:
        status, _, body = get(s, "/mtls/x")
        assert status == 401
        assert "client certificate required" in json.loads(body)["message"]
