"""Schema 1.6 (TLS): certificates, https_only, mtls auth, client-certificate identities, HTTPS targets.

Each new field round-trips, changes the hash when set, and is left out of the hashed content while it
has its default (so a 1.5 cache file keeps its hash); invalid values are refused naming the field.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from data_plane.snapshot import Snapshot, SnapshotError
from data_plane.tls.seal import open_sealed, seal

CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
FP = "ab" * 32


def base() -> dict[str, Any]:
    return {
        "schema_version": "1.5",
        "revision": 3,
        "upstreams": [{"id": "u", "name": "u", "targets": [{"id": "t", "host": "127.0.0.1", "port": 9000}]}],
        "apis": [{"id": "a", "name": "a", "routes": [{"id": "r", "path": "/x", "upstream_id": "u"}]}],
        "customers": [{"id": "c", "name": "c"}],
    }


def tls_doc() -> dict[str, Any]:
    doc = base()
    doc["certificates"] = [
        {"id": "crt", "cert": CA_PEM, "key": seal("k", "crt", "tok"), "snis": ["API.example.com", "*.example.com"]},
        {"id": "dflt", "cert": CA_PEM, "key": seal("k2", "dflt", "tok"), "default": True},
    ]
    doc["upstreams"][0]["targets"][0]["scheme"] = "https"
    doc["upstreams"][0].update(tls_verify=False, ca_certificates=CA_PEM, sni="b.internal", client_certificate_id="crt")
    doc["apis"][0].update(https_only=True, auth="mtls", auth_settings={"mtls_ca_certificates": CA_PEM})
    doc["customers"][0].update(mtls_fingerprints=[FP], mtls_subjects=["CN=acme"])
    return doc


def test_a_1_5_document_keeps_its_hash_and_gets_the_defaults() -> None:
    snap = Snapshot.from_dict(base())
    sealed = Snapshot.from_dict({**base(), "hash": snap.hash})
    assert sealed.hash == snap.hash
    assert snap.certificates == ()
    assert snap.upstreams[0].targets[0].scheme == "http"
    assert snap.upstreams[0].tls_verify is True and snap.upstreams[0].sni is None
    assert snap.apis[0].https_only is False
    assert snap.customers[0].mtls_fingerprints == () and snap.customers[0].mtls_subjects == ()


def test_tls_fields_round_trip_and_change_the_hash() -> None:
    snap = Snapshot.from_dict(tls_doc())
    assert snap.hash != Snapshot.from_dict(base()).hash
    again = Snapshot.from_json(snap.to_json())
    assert again == snap
    assert snap.certificates[0].snis == ("api.example.com", "*.example.com")  # lower-cased
    assert snap.certificates[1].default is True
    u = snap.upstreams[0]
    assert (u.targets[0].scheme, u.tls_verify, u.ca_certificates, u.sni, u.client_certificate_id) == (
        "https",
        False,
        CA_PEM,
        "b.internal",
        "crt",
    )
    assert snap.apis[0].https_only and snap.apis[0].auth == "mtls"
    assert snap.apis[0].auth_settings.mtls_ca_certificates == CA_PEM
    assert snap.customers[0].mtls_fingerprints == (FP,)
    assert open_sealed(snap.certificates[0].key, "crt", "tok") == b"k"


def _patched(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(tls_doc())
    obj: Any = doc
    for step in path[:-1]:
        obj = obj[step]
    obj[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("upstreams", 0, "targets", 0, "scheme"), "ftp", "targets[0].scheme"),
        (("upstreams", 0, "client_certificate_id"), "nope", "client_certificate_id 'nope' names no certificate"),
        (("upstreams", 0, "ca_certificates"), "not pem", "ca_certificates must be PEM"),
        (("apis", 0, "auth_settings"), {}, "mtls_ca_certificates is empty"),
        (("customers", 0, "mtls_fingerprints"), ["AB:CD"], "mtls_fingerprints[0] must be 64"),
        (("certificates", 0, "snis"), ["bad name!"], "snis[0]"),
        (("certificates", 0, "key"), "", "key is empty"),
        (("certificates", 0, "cert"), "x", "cert must be PEM"),
        (("certificates", 0, "default"), True, "more than one is the default"),
        (("certificates", 1, "id"), "crt", "is duplicated"),
    ],
)
def test_invalid_tls_fields_are_named(path: tuple[Any, ...], value: Any, message: str) -> None:
    with pytest.raises(SnapshotError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Snapshot.from_dict(_patched(path, value))


def test_a_client_certificate_identity_belongs_to_one_customer() -> None:
    doc = tls_doc()
    doc["customers"].append({"id": "d", "name": "d", "mtls_subjects": ["CN=acme"]})
    with pytest.raises(SnapshotError, match="another customer's"):
        Snapshot.from_dict(doc)


def test_a_sealed_key_opens_only_with_its_token_and_for_its_certificate() -> None:
    sealed = seal("-----BEGIN PRIVATE KEY-----\nsecret\n", "crt", "token-1")
    assert sealed == seal("-----BEGIN PRIVATE KEY-----\nsecret\n", "crt", "token-1")  # deterministic: stable hash
    assert "secret" not in sealed
    assert open_sealed(sealed, "crt", "token-1").startswith(b"-----BEGIN PRIVATE KEY-----")
    for cert_id, token in (("crt", "token-2"), ("other", "token-1")):
        with pytest.raises(SnapshotError, match="does not open") as info:
            open_sealed(sealed, cert_id, token)
        assert "secret" not in str(info.value)
    with pytest.raises(SnapshotError, match="no cluster token"):
        open_sealed(sealed, "crt", None)
    with pytest.raises(SnapshotError, match="not sealed"):
        open_sealed("-----BEGIN PRIVATE KEY-----", "crt", "token-1")
