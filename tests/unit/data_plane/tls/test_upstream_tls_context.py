"""data_plane/tls/client.py and its use by the compiler: one context per TLS setting, pools keyed by it."""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import trustme

from data_plane.compiler import compile_snapshot
from data_plane.errors import SnapshotError, UpstreamTlsError
from data_plane.snapshot import Certificate, Snapshot, Target, Upstream
from data_plane.tls import pem
from data_plane.tls.client import client_context, tls_identity
from data_plane.tls.seal import seal

TOKEN = "unit-cluster-token"
CA = trustme.CA()
CA_PEM = CA.cert_pem.bytes().decode()


def _upstream(**fields: object) -> Upstream:
    target = Target(id="t", host="backend.test", port=443, scheme="https")
    return replace(Upstream(id="u", name="u", targets=(target,)), **fields)  # type: ignore[arg-type]


def _certificate(cert_id: str = "c1") -> Certificate:
    leaf = CA.issue_cert("gateway-client")
    chain = "".join(p.bytes().decode() for p in leaf.cert_chain_pems)
    return Certificate(id=cert_id, cert=chain, key=seal(leaf.private_key_pem.bytes().decode(), cert_id, TOKEN))


def test_verifying_context() -> None:
    ctx = client_context(_upstream(ca_certificates=CA_PEM), None, None)
    assert ctx.protocol == ssl.PROTOCOL_TLS_CLIENT
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert len(ctx.get_ca_certs()) == 1  # the upstream's bundle, not the system store


def test_no_ca_certificates_means_the_system_store_and_still_verifying() -> None:
    ctx = client_context(_upstream(), None, None)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert CA.cert_pem.bytes() not in b"".join(ssl.DER_cert_to_PEM_cert(c).encode() for c in ctx.get_ca_certs(True))


def test_tls_verify_false_turns_verification_off() -> None:
    ctx = client_context(_upstream(tls_verify=False, ca_certificates=CA_PEM), None, None)
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname


def test_bad_ca_bundle_is_a_snapshot_error() -> None:
    bad = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    with pytest.raises(UpstreamTlsError, match="upstream 'u': ca_certificates do not load"):
        client_context(_upstream(ca_certificates=bad), None, None)
    assert issubclass(UpstreamTlsError, SnapshotError)


def test_client_certificate_loads_and_leaves_no_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(pem, "SHM", str(tmp_path / "no-shm"))  # so the private dir goes under TMPDIR
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen: list[tuple[str, int, int]] = []
    real = pem.private_file

    @contextlib.contextmanager
    def spy(data: bytes) -> Iterator[str]:
        with real(data) as path:
            seen.append((path, os.stat(path).st_mode & 0o777, os.stat(os.path.dirname(path)).st_mode & 0o777))
            yield path

    monkeypatch.setattr(pem, "private_file", spy)
    ctx = client_context(_upstream(ca_certificates=CA_PEM), _certificate(), TOKEN)
    assert isinstance(ctx, ssl.SSLContext)
    [(path, mode, dir_mode)] = seen
    assert (mode, dir_mode) == (0o600, 0o700)
    assert not os.path.exists(path) and list(tmp_path.iterdir()) == []  # file and directory are gone


def test_a_key_that_does_not_match_is_refused_without_showing_it() -> None:
    good, other = _certificate(), _certificate()
    mixed = replace(good, key=seal(_key_of(other), good.id, TOKEN))
    with pytest.raises(UpstreamTlsError, match="client certificate 'c1' does not load") as info:
        client_context(_upstream(), mixed, TOKEN)
    assert "PRIVATE KEY" not in str(info.value)


def _key_of(cert: Certificate) -> str:
    from data_plane.tls.seal import open_sealed

    return open_sealed(cert.key, cert.id, TOKEN).decode()


def test_a_key_without_the_cluster_token_is_refused() -> None:
    with pytest.raises(SnapshotError, match="no cluster token"):
        client_context(_upstream(), _certificate(), None)


def test_identity_changes_with_every_tls_input() -> None:
    base = _upstream(ca_certificates=CA_PEM)
    cert = _certificate()
    ids = {
        tls_identity(base, None),
        tls_identity(replace(base, tls_verify=False), None),
        tls_identity(replace(base, ca_certificates=None), None),
        tls_identity(replace(base, sni="other.test"), None),
        tls_identity(base, cert),
        tls_identity(base, replace(cert, key=seal(_key_of(_certificate()), cert.id, TOKEN))),
    }
    assert len(ids) == 6
    assert tls_identity(replace(base, name="renamed", retries=3), None) == tls_identity(base, None)


def _snapshot(*upstreams: Upstream, certificates: tuple[Certificate, ...] = ()) -> Snapshot:
    return Snapshot(revision=1, upstreams=upstreams, certificates=certificates)


def test_compiler_builds_tls_pools_and_reuses_contexts() -> None:
    https = _upstream(ca_certificates=CA_PEM, sni="api.test")
    plain = Upstream(id="p", name="p", targets=(Target(id="t2", host="backend.test", port=443),))
    cfg = compile_snapshot(_snapshot(https, plain))
    tls_pool = cfg.upstreams["u"].targets[0].pool
    plain_pool = cfg.upstreams["p"].targets[0].pool
    assert tls_pool is not plain_pool  # same host:port, one over TLS: never shared
    assert tls_pool.ssl is not None and tls_pool.server_hostname == "api.test" and tls_pool.owner == "u"
    assert plain_pool.ssl is None and plain_pool.server_hostname is None
    assert cfg.pools[("backend.test", 443, "")] is plain_pool
    # Unchanged TLS settings: the next snapshot keeps the pool (warm connections) and the context.
    again = compile_snapshot(_snapshot(replace(https, retries=2), plain), cfg)
    assert again.upstreams["u"].targets[0].pool is tls_pool
    assert list(again.tls_contexts.values()) == [tls_pool.ssl]
    # Another CA: a new pool and context, so no connection verified under the old one is reused.
    changed = compile_snapshot(_snapshot(replace(https, ca_certificates=None), plain), again)
    assert changed.upstreams["u"].targets[0].pool is not tls_pool
    assert changed.upstreams["u"].targets[0].pool.ssl is not tls_pool.ssl


def test_compiler_without_https_targets_builds_no_context() -> None:
    plain = Upstream(id="p", name="p", targets=(Target(id="t", host="h", port=80),), ca_certificates=CA_PEM)
    cfg = compile_snapshot(_snapshot(plain))
    assert cfg.tls_contexts == {} and cfg.upstreams["p"].targets[0].pool.ssl is None


def test_compiler_opens_the_client_certificate_with_the_cluster_token() -> None:
    cert = _certificate()
    u = _upstream(ca_certificates=CA_PEM, client_certificate_id=cert.id)
    with pytest.raises(SnapshotError, match="no cluster token"):
        compile_snapshot(_snapshot(u, certificates=(cert,)))
    cfg = compile_snapshot(_snapshot(u, certificates=(cert,)), cluster_token=TOKEN)
    assert cfg.upstreams["u"].targets[0].pool.ssl is not None
