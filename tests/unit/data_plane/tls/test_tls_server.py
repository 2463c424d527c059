"""TlsServer: certificates by SNI (exact, wildcard, default, the worker's own), rotation, client CAs."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme

from data_plane.errors import SnapshotError
from data_plane.snapshot import Api, ApiAuth, Certificate, Snapshot
from data_plane.tls.seal import seal
from data_plane.tls.server import TlsServer, client_cas

TOKEN = "unit-token"
CA = trustme.CA()
EXACT = CA.issue_cert("api.example.com")
WILD = CA.issue_cert("*.example.com")
FALLBACK = CA.issue_cert("fallback.test")


def cert(cid: str, leaf: trustme.LeafCert, snis: tuple[str, ...], default: bool = False) -> Certificate:
    pem = "".join(p.bytes().decode() for p in leaf.cert_chain_pems)
    return Certificate(cid, pem, seal(leaf.private_key_pem.bytes().decode(), cid, TOKEN), snis, default)


def snap(*certs: Certificate, apis: tuple[Api, ...] = ()) -> Snapshot:
    return Snapshot(revision=1, apis=apis, certificates=certs)


class FakeConn:
    """What OpenSSL's servername callback hands over: the connection, whose context may be switched."""

    def __init__(self) -> None:
        self.context: Any = None


def picked(server: TlsServer, name: str | None) -> Any:
    conn = FakeConn()
    alert = server.pick(conn, name, server.base)  # type: ignore[arg-type]
    return alert if alert is not None else conn.context


def test_exact_then_wildcard_then_default() -> None:
    server = TlsServer()
    server.update(snap(cert("e", EXACT, ("api.example.com",)), cert("w", WILD, ("*.example.com",))), TOKEN)
    exact, wild = picked(server, "api.example.com"), picked(server, "x.example.com")
    assert isinstance(exact, ssl.SSLContext) and isinstance(wild, ssl.SSLContext) and exact is not wild
    assert picked(server, "API.EXAMPLE.COM.") is exact  # case and a trailing dot do not matter
    assert picked(server, "a.b.example.com") == ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME  # one label only
    assert picked(server, None) == ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
    server.update(snap(cert("e", EXACT, ("api.example.com",)), cert("d", FALLBACK, (), default=True)), TOKEN)
    assert picked(server, "x.example.com") is picked(server, None) is picked(server, "unknown.test")
    assert picked(server, "x.example.com") is not picked(server, "api.example.com")


def test_the_workers_own_certificate_is_the_default_unless_the_snapshot_has_one(tmp_path: Path) -> None:
    crt, key = tmp_path / "l.crt", tmp_path / "l.key"
    FALLBACK.cert_chain_pems[0].write_to_path(str(crt))
    FALLBACK.private_key_pem.write_to_path(str(key))
    server = TlsServer(str(crt), str(key))
    assert server.has_certificates and picked(server, "anything") is server.local
    server.update(snap(cert("d", WILD, (), default=True)), TOKEN)
    assert picked(server, "anything") is not server.local


def test_unchanged_certificates_keep_their_context_and_a_renewed_one_gets_a_new_one() -> None:
    server = TlsServer()
    server.update(snap(cert("e", EXACT, ("api.example.com",))), TOKEN)
    before = picked(server, "api.example.com")
    server.update(snap(cert("e", EXACT, ("api.example.com", "www.example.com"))), TOKEN)
    assert picked(server, "api.example.com") is before  # same certificate and key: same context
    renewed = CA.issue_cert("api.example.com")
    server.update(snap(cert("e", renewed, ("api.example.com",))), TOKEN)
    assert picked(server, "api.example.com") is not before
    server.update(snap(), TOKEN)
    assert not server.has_certificates


def test_a_key_that_does_not_load_keeps_the_current_table_and_never_shows_the_key() -> None:
    server = TlsServer()
    good = cert("e", EXACT, ("api.example.com",))
    server.update(snap(good), TOKEN)
    before = server.table
    other_key = WILD.private_key_pem.bytes().decode()
    wrong = Certificate("e", good.cert, seal(other_key, "e", TOKEN), good.snis)
    with pytest.raises(SnapshotError, match="'e' does not load") as info:
        server.update(snap(wrong), TOKEN)
    assert other_key.splitlines()[1] not in str(info.value)
    assert server.table is before
    fresh = TlsServer()
    with pytest.raises(SnapshotError, match="does not open"):
        fresh.update(snap(good), "another-token")  # sealed for another cluster
    assert not fresh.has_certificates


def test_client_certificates_are_asked_for_only_while_an_api_uses_mtls() -> None:
    client_ca = trustme.CA()
    pem = client_ca.cert_pem.bytes().decode()
    mtls = Api(id="m", name="m", auth="mtls", auth_settings=ApiAuth(mtls_ca_certificates=pem))
    assert client_cas(snap(apis=(mtls,))) == pem
    server = TlsServer()
    server.update(snap(cert("e", EXACT, ("api.example.com",)), apis=(mtls,)), TOKEN)
    assert server.base.verify_mode == ssl.CERT_OPTIONAL  # the handshake starts with the base context
    assert picked(server, "api.example.com").verify_mode == ssl.CERT_OPTIONAL
    server.update(snap(cert("e", EXACT, ("api.example.com",))), TOKEN)
    assert server.base.verify_mode == ssl.CERT_NONE
    assert picked(server, "api.example.com").verify_mode == ssl.CERT_NONE
