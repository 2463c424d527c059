"""The wire form of a snapshot and its hashing rules: encoding only (decoding is :mod:`.parse`).

The wire form is a JSON object: :func:`content` plus ``revision``, ``hash`` and ``generated_at``.
``hash`` is the SHA-256 of the canonical JSON (sorted keys, no spaces, ASCII) of :func:`content`
alone, so identical content always gives the same hash and a worker that already runs that hash
needs nothing.  The rule that keeps old hashes valid: a field added by a later schema minor is left
out of the content while it holds its default (``_non_default``, the ``*_extras`` helpers, the
defaults checks below), so a worker's cache file sealed by an older control plane keeps its hash.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from data_plane.snapshot.types import (
    DEFAULT_AUTH,
    DEFAULT_KEEPALIVE_TIMEOUT,
    Api,
    ApiAuth,
    ApiKey,
    Certificate,
    Customer,
    HealthCheck,
    Passive,
    Plan,
    PlanQuota,
    Snapshot,
    Target,
    Upstream,
)


def content(snap: Snapshot) -> dict[str, Any]:
    """The hashed part of the wire form: everything that changes what a worker does.

    Fields added in 1.1 (auth settings, customers, keys) are left out while they hold their
    defaults, so a 1.0 snapshot (a worker's cache file) keeps the hash it was sealed with.
    """
    doc: dict[str, Any] = {
        "schema_version": snap.schema_version,
        "upstreams": [upstream_doc(u) for u in snap.upstreams],
        "apis": [api_doc(a) for a in snap.apis],
    }
    if snap.customers:
        doc["customers"] = [customer_doc(c) for c in snap.customers]
    if snap.keys:
        doc["keys"] = [key_doc(k) for k in snap.keys]
    if snap.plans:
        doc["plans"] = [_plan_dict(p) for p in snap.plans]
    if snap.certificates:
        doc["certificates"] = [certificate_doc(c) for c in snap.certificates]
    return doc


# One function per snapshot member: the content of one entity, as it appears in the list of its kind
# (what a delta carries as a change's value, data_plane/snapshot/delta.py).


def upstream_doc(u: Upstream) -> dict[str, Any]:
    return {
        "id": u.id,
        "name": u.name,
        "algorithm": u.algorithm,
        "connect_timeout": u.connect_timeout,
        "read_timeout": u.read_timeout,
        "retries": u.retries,
        "targets": [_target_dict(t) for t in u.targets],
        **_upstream_extras(u),
    }


def api_doc(a: Api) -> dict[str, Any]:
    return {
        "id": a.id,
        "name": a.name,
        "base_path": a.base_path,
        "hosts": list(a.hosts),
        "auth": a.auth,
        "strip_base_path": a.strip_base_path,
        "max_body_bytes": a.max_body_bytes,
        "routes": [
            {
                "id": r.id,
                "path": r.path,
                "upstream_id": r.upstream_id,
                "methods": list(r.methods),
                **_non_default(
                    connect_timeout=r.connect_timeout,
                    read_timeout=r.read_timeout,
                    total_timeout=r.total_timeout,
                ),
                **({"policies": r.policies} if r.policies is not None else {}),
            }
            for r in a.routes
        ],
        **({} if a.auth_settings == DEFAULT_AUTH else {"auth_settings": _auth_dict(a.auth_settings)}),
        **({} if a.rate_limit_headers else {"rate_limit_headers": False}),
        **({"https_only": True} if a.https_only else {}),
        **({"policies": a.policies} if a.policies is not None else {}),
        **({"cache_epoch": a.cache_epoch} if a.cache_epoch else {}),
    }


def customer_doc(c: Customer) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "status": c.status, "api_ids": list(c.api_ids), **_customer_extras(c)}


def key_doc(k: ApiKey) -> dict[str, Any]:
    return {
        "id": k.id,
        "customer_id": k.customer_id,
        "key_hash": k.key_hash,
        "prefix": k.prefix,
        "expires_at": k.expires_at,
    }


def plan_doc(p: Plan) -> dict[str, Any]:
    return _plan_dict(p)


def certificate_doc(c: Certificate) -> dict[str, Any]:
    return {"id": c.id, "cert": c.cert, "key": c.key, "snis": list(c.snis), **({"default": True} if c.default else {})}


# The members of the wire form that are not content: left out of the hash.
UNHASHED = ("revision", "hash", "generated_at")


def compute_hash(snap: Snapshot) -> str:
    return content_hash(content(snap))


def canonical(doc: dict[str, Any]) -> bytes:
    """The canonical JSON of a content object: sorted keys, no spaces, ASCII."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def content_hash(doc: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a wire-form document without its :data:`UNHASHED` members.

    What a worker checks a received snapshot against: the document as it arrived, every member
    included, so a field added by a newer minor version (which this worker's types drop) is covered
    by the hash its sender computed (the contract's rule 3 in docs/architecture.md, "Config sync v2").
    """
    if any(name in doc for name in UNHASHED):
        doc = {k: v for k, v in doc.items() if k not in UNHASHED}
    return hashlib.sha256(canonical(doc)).hexdigest()


def spliced_hash(data: bytes, doc: dict[str, Any]) -> str:
    """:func:`content_hash` of ``doc`` from the bytes it was parsed from, when they are canonical.

    A control plane sends the canonical JSON itself (UNHASHED members included), so cutting those
    members out of the bytes gives what the hash covers, without encoding a million keys again (~3 s).
    Bytes that are not canonical, or a member cut from the wrong place, give another digest: the
    caller then falls back to :func:`content_hash` (a match cannot be wrong short of a SHA-256 collision).
    """
    cuts: list[tuple[int, int]] = []  # byte ranges of the UNHASHED members (each with one comma)
    for name in UNHASHED:
        if name not in doc:
            continue
        member = json.dumps(name).encode() + b":" + json.dumps(doc[name], ensure_ascii=True).encode()
        at = data.find(b"," + member)
        if at >= 0:
            cuts.append((at, at + 1 + len(member)))
        elif data.startswith(b"{" + member + b","):
            cuts.append((1, 2 + len(member)))
        else:
            return ""
    h = hashlib.sha256()
    view, start = memoryview(data), 0
    for cut_from, cut_to in sorted(cuts):
        if cut_from < start:
            return ""  # overlapping: not what a canonical encoder writes
        h.update(view[start:cut_from])
        start = cut_to
    h.update(view[start:])
    return h.hexdigest()


def sealed(snap: Snapshot) -> Snapshot:
    """This snapshot with its content hash filled in (what the control plane publishes)."""
    return Snapshot(
        revision=snap.revision,
        upstreams=snap.upstreams,
        apis=snap.apis,
        customers=snap.customers,
        keys=snap.keys,
        plans=snap.plans,
        certificates=snap.certificates,
        schema_version=snap.schema_version,
        generated_at=snap.generated_at,
        hash=compute_hash(snap),
    )


def to_dict(snap: Snapshot) -> dict[str, Any]:
    doc = content(snap)
    doc["revision"] = snap.revision
    doc["hash"] = snap.hash or compute_hash(snap)
    doc["generated_at"] = snap.generated_at
    return doc


def to_json(snap: Snapshot) -> bytes:
    return json.dumps(to_dict(snap), sort_keys=True, separators=(",", ":")).encode()


# ---------------------------------------------------------------------- helpers


def _non_default(**fields: Any) -> dict[str, Any]:
    """Optional fields whose value is None/False are left out (they hash as in schema 1.0)."""
    return {k: v for k, v in fields.items() if v is not None and v is not False}


def _target_dict(t: Target) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": t.id, "host": t.host, "port": t.port, "weight": t.weight}
    if t.scheme != "http":
        doc["scheme"] = t.scheme
    return doc


def _upstream_extras(u: Upstream) -> dict[str, Any]:
    out = _non_default(
        panic=u.panic,
        total_timeout=u.total_timeout,
        health_check=_health_dict(u.health_check) if u.health_check else None,
        passive=_passive_dict(u.passive) if u.passive else None,
    )
    if u.hash_on != "ip" or u.hash_key:
        out["hash_on"] = u.hash_on
        out["hash_key"] = u.hash_key
    if u.max_connections:
        out["max_connections"] = u.max_connections
    if u.keepalive_timeout != DEFAULT_KEEPALIVE_TIMEOUT:
        out["keepalive_timeout"] = u.keepalive_timeout
    if not u.tls_verify:
        out["tls_verify"] = False
    out.update(_non_default(ca_certificates=u.ca_certificates, sni=u.sni))
    out.update(_non_default(client_certificate_id=u.client_certificate_id))
    return out


def _health_dict(h: HealthCheck) -> dict[str, Any]:
    return {
        "path": h.path,
        "method": h.method,
        "interval": h.interval,
        "timeout": h.timeout,
        "expected_statuses": list(h.expected_statuses),
        "healthy_threshold": h.healthy_threshold,
        "unhealthy_threshold": h.unhealthy_threshold,
    }


def _passive_dict(p: Passive) -> dict[str, Any]:
    return {
        "consecutive_failures": p.consecutive_failures,
        "statuses": list(p.statuses),
        "base_ejection_time": p.base_ejection_time,
        "max_ejection_time": p.max_ejection_time,
        "max_ejection_percent": p.max_ejection_percent,
    }


def _auth_dict(a: ApiAuth) -> dict[str, Any]:
    return {
        "key_header": a.key_header,
        "key_query": a.key_query,
        "strip_credential": a.strip_credential,
        "jwt_algorithms": list(a.jwt_algorithms),
        "jwt_secret": a.jwt_secret,
        "jwt_public_key": a.jwt_public_key,
        "jwt_issuer": a.jwt_issuer,
        "jwt_audience": a.jwt_audience,
        "jwt_customer_claim": a.jwt_customer_claim,
        # 1.4 fields only when set, so a 1.2 / 1.3 snapshot keeps its hash
        **({"jwt_jwks_url": a.jwt_jwks_url} if a.jwt_jwks_url is not None else {}),
        **({"jwt_jwks": [k.to_dict() for k in a.jwt_jwks]} if a.jwt_jwks else {}),
        # 1.6
        **({"mtls_ca_certificates": a.mtls_ca_certificates} if a.mtls_ca_certificates is not None else {}),
    }


def _customer_extras(c: Customer) -> dict[str, Any]:
    """1.3 fields, left out of the hashed content while they hold their defaults."""
    out: dict[str, Any] = {}
    if c.plan_id is not None:
        out["plan_id"] = c.plan_id
    if c.quota_extra:
        out.update(quota_extra=c.quota_extra, quota_extra_start=c.quota_extra_start, quota_extra_end=c.quota_extra_end)
    if c.mtls_fingerprints:
        out["mtls_fingerprints"] = list(c.mtls_fingerprints)
    if c.mtls_subjects:
        out["mtls_subjects"] = list(c.mtls_subjects)
    if c.billing_anchor:  # 1.7
        out.update(billing_anchor=c.billing_anchor, time_zone=c.time_zone, cycle_since=c.cycle_since)
    if c.external_id:  # 1.8
        out["external_id"] = c.external_id
    return out


def _quota_dict(q: PlanQuota) -> dict[str, Any]:
    doc: dict[str, Any] = {"limit": q.limit, "period": q.period}
    if q.overage:  # 1.7, left out while "deny" (older snapshots keep their hash)
        doc["overage"] = "allow"
        if q.hard_cap is not None:
            doc["hard_cap"] = q.hard_cap
    return doc


def _plan_dict(p: Plan) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "throttle": {"rate": p.throttle.rate, "burst": p.throttle.burst} if p.throttle else None,
        "quota": _quota_dict(p.quota) if p.quota else None,
        "apis": [
            {
                "api_id": a.api_id,
                "overrides": [
                    {"method": o.method, "path": o.path, "rate": o.rate, "burst": o.burst} for o in a.overrides
                ],
            }
            for a in p.apis
        ],
    }
