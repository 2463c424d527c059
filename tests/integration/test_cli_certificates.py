"""Certificates against a real control-plane process: `tollgate certificates ...`, the declarative
round trip with certificate files (apply / diff / dump), and the private key absent from every answer,
the dump, the control plane's log and its SQLite file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
import yaml

from data_plane.tls.seal import open_sealed
from tests.integration.certificates_support import Pem, issue
from tests.integration.cli_support import ok_json, tg
from tests.integration.harness import Cluster, ControlPlane


@pytest.fixture(scope="module")
def cp(module_cluster: Cluster) -> Iterator[ControlPlane]:
    yield module_cluster.control_plane()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def ok(cp: ControlPlane, *args: str) -> str:
    result = tg(cp, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def _write(directory: Path, name: str, pem: Pem) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    crt, key = directory / f"{name}.crt", directory / f"{name}.key"
    crt.write_text(pem.cert)
    key.write_text(pem.key)
    return crt, key


def _assert_no_key(cp: ControlPlane, text: str, *pems: Pem) -> None:
    for pem in pems:
        for line in pem.key_lines:
            assert line not in text


def _log(cp: ControlPlane) -> str:
    return cp.proc.log_path.read_text(errors="replace")


def _db_bytes(cp: ControlPlane) -> bytes:
    path = Path(cp.env["TOLLGATE_DATABASE_URL"].removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_certificates_commands(cp: ControlPlane, ca: trustme.CA, tmp_path: Path) -> None:
    pem = issue(ca, "cli.example.com")
    crt, key = _write(tmp_path, "cli", pem)
    added = ok_json(
        cp,
        "certificates",
        "add",
        "--cert",
        str(crt),
        "--key",
        str(key),
        "--sni",
        "cli.example.com",
        "--sni",
        "*.cli.example.com",
        "--name",
        "cli-cert",
        "--default",
    )
    assert added["name"] == "cli-cert" and added["default"] is True
    assert added["snis"] == ["*.cli.example.com", "cli.example.com"] and "key" not in added
    listed = ok_json(cp, "certificates", "list")
    assert [c["name"] for c in listed if c["name"] == "cli-cert"] == ["cli-cert"]
    shown = ok_json(cp, "certificates", "show", "cli-cert")
    assert shown["fingerprint_sha256"] == added["fingerprint_sha256"]
    table = ok(cp, "certificates", "show", "cli-cert")
    assert "cli.example.com" in table and added["fingerprint_sha256"] in table

    renewed = issue(ca, "cli.example.com")
    crt2, key2 = _write(tmp_path / "renewed", "cli", renewed)
    updated = ok_json(
        cp,
        "certificates",
        "update",
        "cli-cert",
        "--cert",
        str(crt2),
        "--key",
        str(key2),
        "--sni",
        "cli.example.com",
        "--no-default",
    )
    assert updated["fingerprint_sha256"] != added["fingerprint_sha256"]
    assert updated["snis"] == ["cli.example.com"] and updated["default"] is False

    # a mismatched key: the error names the problem and shows none of the key
    bad = tg(cp, "certificates", "add", "--cert", str(crt), "--key", str(key2), "--name", "bad")
    assert bad.exit_code == 1 and "key does not match the certificate" in bad.output
    _assert_no_key(cp, bad.output, pem, renewed)
    missing = tg(cp, "certificates", "add", "--cert", str(crt), "--key", str(tmp_path / "nope.key"))
    assert missing.exit_code == 1 and "cannot read the key file" in missing.output

    deleted = tg(cp, "certificates", "delete", "cli-cert")
    assert deleted.exit_code == 0 and "deleted certificate cli-cert" in deleted.output
    assert not [c for c in ok_json(cp, "certificates", "list") if c["name"] == "cli-cert"]
    for text in (json.dumps(added), json.dumps(listed), table, json.dumps(updated), _log(cp)):
        _assert_no_key(cp, text, pem, renewed)


def test_declarative_round_trip_with_certificate_files(cp: ControlPlane, ca: trustme.CA, tmp_path: Path) -> None:
    main, other = issue(ca, "www.example.org", "*.example.org"), issue(ca, "other.example.org")
    conf = tmp_path / "conf"
    _write(conf / "tls", "main", main)
    _write(conf / "tls", "other", other)
    doc = {
        "certificates": [
            {
                "name": "main",
                "cert_file": "tls/main.crt",
                "key_file": "tls/main.key",
                "snis": ["www.example.org", "*.example.org"],
                "default": True,
            },
            {"name": "other", "cert_file": "tls/other.crt", "key_file": "tls/other.key", "snis": ["other.example.org"]},
        ],
        "apis": [
            {
                "name": "secure",
                "base_path": "/secure",
                "https_only": True,
                "auth": "mtls",
                "mtls_ca_certificates": ca.cert_pem.bytes().decode(),
            }
        ],
        "customers": [{"name": "svc", "mtls_fingerprints": ["AB" * 32], "mtls_subjects": ["CN=svc,O=Acme"]}],
    }
    gateway = conf / "gateway.yaml"
    gateway.write_text(yaml.safe_dump(doc, sort_keys=False))

    diff = ok(cp, "diff", "-f", str(gateway), "--prune")
    assert "+ certificate main" in diff and "fingerprint=" in diff
    _assert_no_key(cp, diff, main, other)
    applied = ok(cp, "apply", "-f", str(gateway), "--prune")
    assert "applied: revision" in applied
    assert ok(cp, "diff", "-f", str(gateway), "--exit-code").strip() == "no changes"

    # the snapshot holds both keys, sealed for the workers
    auth = {"Authorization": f"Bearer {cp.cluster_token}"}
    snap = httpx.get(f"{cp.url}/cluster/v1/snapshot", headers=auth, timeout=10.0).json()
    certs = {tuple(c["snis"]): c for c in snap["certificates"]}
    sealed = certs[("*.example.org", "www.example.org")]
    assert sealed["default"] is True and b"PRIVATE KEY" in open_sealed(sealed["key"], sealed["id"], cp.cluster_token)
    _assert_no_key(cp, json.dumps(snap), main, other)

    # dump: the chains go to <name>.crt beside the file, no key anywhere; dump -> diff is a no-op
    out = tmp_path / "dump"
    out.mkdir()
    ok(cp, "dump", "-f", str(out / "gateway.yaml"))
    dumped_text = (out / "gateway.yaml").read_text()
    dumped = yaml.safe_load(dumped_text)
    assert dumped["certificates"] == [
        {"name": "main", "cert_file": "main.crt", "snis": ["*.example.org", "www.example.org"], "default": True},
        {"name": "other", "cert_file": "other.crt", "snis": ["other.example.org"], "default": False},
    ]
    assert (out / "main.crt").read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert sorted(p.name for p in out.iterdir()) == ["gateway.yaml", "main.crt", "other.crt"]
    assert dumped["apis"][0]["https_only"] is True and dumped["apis"][0]["auth"] == "mtls"
    assert dumped["customers"][0]["mtls_fingerprints"] == ["ab" * 32]
    assert dumped["customers"][0]["mtls_subjects"] == ["CN=svc,O=Acme"]
    assert ok(cp, "diff", "-f", str(out / "gateway.yaml"), "--exit-code").strip() == "no changes"
    stdout_dump = ok(cp, "dump")
    assert "-----BEGIN CERTIFICATE-----" in stdout_dump  # inline to stdout
    for text in (dumped_text, stdout_dump, *(p.read_text() for p in out.iterdir())):
        _assert_no_key(cp, text, main, other)

    # a renewal in the file: the fingerprint changes; with the key file, apply replaces it
    renewed = issue(ca, "other.example.org")
    _write(conf / "tls", "other", renewed)
    diff = ok(cp, "diff", "-f", str(gateway))
    assert "~ certificate other" in diff and "fingerprint:" in diff
    ok(cp, "apply", "-f", str(gateway))
    assert ok(cp, "diff", "-f", str(gateway), "--exit-code").strip() == "no changes"

    # without a key file a new or renewed certificate cannot be written; the error points at the entry
    doc["certificates"][1].pop("key_file")
    _write(conf / "tls", "other", issue(ca, "other.example.org"))
    gateway.write_text(yaml.safe_dump(doc, sort_keys=False))
    refused = tg(cp, "apply", "-f", str(gateway))
    assert refused.exit_code == 1
    assert "gateway.yaml:" in refused.output and "needs its private key (key_file)" in refused.output
    inline = dict(doc, certificates=[{**doc["certificates"][0], "key": main.key}])
    gateway.write_text(yaml.safe_dump(inline, sort_keys=False))
    refused = tg(cp, "apply", "-f", str(gateway))
    assert refused.exit_code == 1 and "a private key is not written in the file" in refused.output
    _assert_no_key(cp, refused.output, main)

    # the database file and the control plane's own log never hold a key
    assert len(ok_json(cp, "certificates", "list")) == 2
    data = _db_bytes(cp)
    assert main.cert.splitlines()[1].encode() in data
    for pem in (main, other, renewed):
        for line in pem.key_lines:
            assert line.encode() not in data
    _assert_no_key(cp, _log(cp), main, other, renewed)


def test_tls_fields_of_apis_and_customers_through_their_commands(cp: ControlPlane, ca: trustme.CA) -> None:
    bundle = ca.cert_pem.bytes().decode()
    api = ok_json(
        cp,
        "apis",
        "create",
        "name=cli-mtls",
        "base_path=/cli-mtls",
        "https_only=true",
        "auth=mtls",
        f"mtls_ca_certificates={bundle}",
    )
    assert api["https_only"] is True and api["auth"] == "mtls" and api["mtls_ca_certificates"] == bundle
    assert "https_only" in ok(cp, "apis", "list")
    fp1, fp2 = "EF:" * 31 + "EF", "cd" * 32  # not the ones of the declarative test (same control plane)
    customer = ok_json(
        cp, "customers", "create", "name=cli-svc", f"mtls_fingerprints={fp1},{fp2}", 'mtls_subjects=["CN=cli,O=Acme"]'
    )
    assert customer["mtls_fingerprints"] == ["cd" * 32, "ef" * 32]
    assert customer["mtls_subjects"] == ["CN=cli,O=Acme"]
    updated = ok_json(cp, "customers", "update", "cli-svc", "mtls_subjects=[]")
    assert updated["mtls_subjects"] == [] and updated["mtls_fingerprints"] == customer["mtls_fingerprints"]
    taken = tg(cp, "customers", "create", "name=cli-other", f"mtls_fingerprints={fp2}")
    assert taken.exit_code == 1 and "409" in taken.output and "already identifies customer 'cli-svc'" in taken.output
