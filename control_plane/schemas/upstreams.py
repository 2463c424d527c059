"""DTOs for upstreams, their targets and their health as the workers report it."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from cryptography import x509
from pydantic import BaseModel, Field, StrictBool, field_validator, model_validator

from control_plane.schemas.common import InModel, Name, OutModel, Timeout, documented_pattern, not_null
from data_plane.snapshot import DEFAULT_KEEPALIVE_TIMEOUT

Algorithm = Literal["round_robin", "least_request", "consistent_hash", "random"]


HashOn = Literal["ip", "header", "cookie", "customer"]


StatusCode = Annotated[int, Field(ge=100, le=599)]


_HASH_KEY_RE = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,200}$"  # an HTTP token: a header or cookie name


Port = Annotated[int, Field(ge=1, le=65535)]


Weight = Annotated[int, Field(ge=0, le=1000)]


KeepaliveTimeout = Annotated[
    float,
    Field(
        gt=0,
        le=3600,
        description="seconds a pooled connection to a target may stay idle and still be reused; keep it "
        "below the target server's own keep-alive timeout (Node.js, uvicorn, Apache: 5 s)",
    ),
]


Retries = Annotated[int, Field(ge=0, le=10)]


Scheme = Annotated[
    Literal["http", "https"],
    Field(description="https: the workers speak TLS to this target (the upstream's tls_verify, ca_certificates, sni)"),
]


CaCertificates = Annotated[
    str,
    documented_pattern(r"-----BEGIN CERTIFICATE-----"),
    Field(
        max_length=1_000_000,
        description="PEM bundle of the CA certificates trusted for the upstream's https targets "
        "(default, or null: the system trust store)",
    ),
]


Sni = Annotated[
    str,
    documented_pattern(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$"),
    Field(
        max_length=253,
        description="server name sent in the TLS handshake to https targets and verified against their "
        "certificate (default, or null: the target's host)",
    ),
]


_SNI_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$")


def _ca_certificates(value: str | None) -> str | None:
    """A PEM bundle of X.509 certificates, parsed with ``cryptography`` (and nothing else in it: a
    private key pasted by mistake is refused, never stored)."""
    if value is None:
        return None
    if "PRIVATE KEY-----" in value:
        raise ValueError("ca_certificates must hold CA certificates only, not a private key")
    try:
        certificates = x509.load_pem_x509_certificates(value.encode())
    except ValueError:
        raise ValueError(
            "ca_certificates is not a PEM bundle of X.509 certificates (-----BEGIN CERTIFICATE-----)"
        ) from None
    if value.count("-----BEGIN ") != len(certificates):
        raise ValueError("ca_certificates must hold only CERTIFICATE blocks")
    return value


def _sni(value: str | None) -> str | None:
    """A DNS host name (RFC 6066 3: SNI carries no IP address), lower case, no trailing dot."""
    if value is None:
        return None
    name = value.lower()
    if not _SNI_RE.match(name) or name.replace(".", "").isdigit() or ":" in name:
        raise ValueError(f"sni {value!r} is not a DNS host name")
    return name


_TARGET_HOST_RE = re.compile(r"^[A-Za-z0-9.\-:\[\]]{1,255}$")


def _target_host(value: str | None) -> str | None:
    if value is None:
        return None
    if not _TARGET_HOST_RE.match(value):
        raise ValueError(f"{value!r} is not a valid host name or IP address")
    return value.lower()


class HealthCheckIn(InModel):
    """Active probing (every worker probes every target)."""

    path: str = Field(description="path probed on each target", default="/", max_length=1024, pattern=r"^/[^\s\x00]*$")
    method: Literal["GET", "HEAD", "OPTIONS"] = Field(default="GET", description="HTTP method of the probe")
    interval: Annotated[float, Field(ge=0.05, le=3600)] = Field(default=5.0, description="seconds between probes")
    timeout: Annotated[float, Field(gt=0, le=600)] = Field(default=2.0, description="seconds a probe may take")
    expected_statuses: list[StatusCode] = Field(
        description="statuses that count as healthy; empty: 2xx and 3xx", default_factory=list, max_length=100
    )
    healthy_threshold: Annotated[int, Field(ge=1, le=100)] = Field(
        default=2, description="consecutive good probes before an unhealthy target is used again"
    )
    unhealthy_threshold: Annotated[int, Field(ge=1, le=100)] = Field(
        default=3, description="consecutive failed probes before a target is taken out"
    )


class PassiveIn(InModel):
    """Outlier detection from real traffic."""

    consecutive_failures: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=5, description="consecutive failed responses that eject a target"
    )
    statuses: list[StatusCode] = Field(
        description="response statuses that count as failures",
        default_factory=lambda: [500, 502, 503, 504],
        max_length=100,
    )
    base_ejection_time: Annotated[float, Field(gt=0, le=86400)] = Field(
        default=30.0, description="seconds of the first ejection (doubled on each repeat, up to max_ejection_time)"
    )
    max_ejection_time: Annotated[float, Field(gt=0, le=86400)] = Field(
        default=300.0, description="longest ejection, seconds"
    )
    max_ejection_percent: Annotated[int, Field(ge=0, le=100)] = Field(
        default=50, description="at most this share of the targets is ejected at once"
    )

    @model_validator(mode="after")
    def _cap_not_below_base(self) -> PassiveIn:
        if self.max_ejection_time < self.base_ejection_time:
            raise ValueError("max_ejection_time must be >= base_ejection_time")
        return self


class UpstreamCreate(InModel):
    name: Name = Field(description="unique name of the upstream")
    algorithm: Algorithm = Field(
        default="round_robin",
        description="how a target is picked: round_robin, least_request, consistent_hash or random",
    )
    connect_timeout: Timeout = Field(default=5.0, description="seconds to open a connection to a target")
    read_timeout: Timeout = Field(default=60.0, description="seconds to wait for each read from a target")
    total_timeout: Timeout | None = Field(
        default=None, description="seconds for the whole exchange, retries included; null: none"
    )
    retries: Retries = Field(
        default=0, description="how many times a failed idempotent request is sent to another target"
    )
    hash_on: HashOn = Field(
        default="ip",
        description="consistent_hash: what picks the target (client ip, a header, a cookie or the customer)",
    )
    hash_key: str = Field(
        description="consistent_hash with hash_on header or cookie: the header or cookie name",
        default="",
        pattern=r"^$|" + _HASH_KEY_RE,
    )
    health_check: HealthCheckIn | None = Field(
        default=None, description="active probing of every target by every worker; null: none"
    )
    passive: PassiveIn | None = Field(default=None, description="outlier detection from real traffic; null: none")
    panic: StrictBool = Field(
        default=False,
        description="when every target is unavailable, balance over all of them anyway instead of answering 503",
    )
    max_connections: Annotated[int, Field(ge=0, le=100000)] = Field(
        default=0,
        description="per worker, connections to one target at most (503 beyond, no queue); 0: unlimited",
    )
    keepalive_timeout: KeepaliveTimeout = DEFAULT_KEEPALIVE_TIMEOUT
    tls_verify: StrictBool = Field(
        default=True, description="verify https targets' certificates (chain and name); false only for labs"
    )
    ca_certificates: CaCertificates | None = Field(
        default=None,
        description="PEM bundle of the CA certificates trusted for https targets; null: the system trust store",
    )
    sni: Sni | None = Field(
        default=None,
        description="server name sent to https targets and verified against their certificate; null: the target's host",
    )
    client_certificate_id: str | None = Field(
        default=None, max_length=36, description="a certificate of /v1/certificates shown to https targets (mTLS)"
    )

    _check_ca = field_validator("ca_certificates")(_ca_certificates)
    _check_sni = field_validator("sni")(_sni)


class UpstreamUpdate(InModel):
    name: Name | None = Field(json_schema_extra=not_null, default=None, description="unique name of the upstream")
    algorithm: Algorithm | None = Field(
        json_schema_extra=not_null,
        default=None,
        description="how a target is picked: round_robin, least_request, consistent_hash or random",
    )
    connect_timeout: Timeout | None = Field(
        json_schema_extra=not_null, default=None, description="seconds to open a connection to a target"
    )
    read_timeout: Timeout | None = Field(
        json_schema_extra=not_null, default=None, description="seconds to wait for each read from a target"
    )
    total_timeout: Timeout | None = Field(
        default=None, description="seconds for the whole exchange, retries included; null: none"
    )
    retries: Retries | None = Field(
        json_schema_extra=not_null,
        default=None,
        description="how many times a failed idempotent request is sent to another target",
    )
    hash_on: HashOn | None = Field(
        json_schema_extra=not_null,
        default=None,
        description="consistent_hash: what picks the target (client ip, a header, a cookie or the customer)",
    )
    hash_key: Annotated[str, Field(pattern="^$|" + _HASH_KEY_RE)] | None = Field(
        json_schema_extra=not_null,
        description="consistent_hash with hash_on header or cookie: the header or cookie name",
        default=None,
    )
    health_check: HealthCheckIn | None = Field(
        default=None, description="active probing of every target by every worker; null: none"
    )
    passive: PassiveIn | None = Field(default=None, description="outlier detection from real traffic; null: none")
    panic: StrictBool | None = Field(
        json_schema_extra=not_null,
        default=None,
        description="when every target is unavailable, balance over all of them anyway instead of answering 503",
    )
    max_connections: Annotated[int, Field(ge=0, le=100000)] | None = Field(
        json_schema_extra=not_null,
        default=None,
        description="per worker, connections to one target at most (503 beyond, no queue); 0: unlimited",
    )
    keepalive_timeout: KeepaliveTimeout | None = Field(
        json_schema_extra=not_null,
        default=None,
        description="seconds a pooled connection to a target may stay idle and still be reused",
    )
    tls_verify: StrictBool | None = Field(
        json_schema_extra=not_null, default=None, description="verify https targets' certificates (chain and name)"
    )
    ca_certificates: CaCertificates | None = Field(
        default=None,
        description="PEM bundle of the CA certificates trusted for https targets; null: the system trust store",
    )
    sni: Sni | None = Field(
        default=None,
        description="server name sent to https targets and verified against their certificate; null: the target's host",
    )
    client_certificate_id: str | None = Field(
        description="a certificate of /v1/certificates shown to https targets (mTLS); null: none",
        default=None,
        max_length=36,
    )

    _check_ca = field_validator("ca_certificates")(_ca_certificates)
    _check_sni = field_validator("sni")(_sni)


class UpstreamPublic(OutModel):
    id: str = Field(description="the resource's id (a UUID, assigned by the control plane)")
    name: str = Field(description="unique name of the upstream")
    algorithm: str = Field(description="how a target is picked: round_robin, least_request, consistent_hash or random")
    connect_timeout: float = Field(description="seconds to open a connection to a target")
    read_timeout: float = Field(description="seconds to wait for each read from a target")
    total_timeout: float | None = Field(description="seconds for the whole exchange, retries included; null: none")
    retries: int = Field(description="how many times a failed idempotent request is sent to another target")
    hash_on: str = Field(
        description="consistent_hash: what picks the target (client ip, a header, a cookie or the customer)"
    )
    hash_key: str = Field(description="consistent_hash with hash_on header or cookie: the header or cookie name")
    health_check: HealthCheckIn | None = Field(description="active probing of every target by every worker; null: none")
    passive: PassiveIn | None = Field(description="outlier detection from real traffic; null: none")
    panic: bool = Field(
        description="when every target is unavailable, balance over all of them anyway instead of answering 503"
    )
    max_connections: int = Field(
        description="per worker, connections to one target at most (503 beyond, no queue); 0: unlimited"
    )
    keepalive_timeout: float = Field(
        description="seconds a pooled connection to a target may stay idle and still be reused"
    )
    tls_verify: bool = Field(description="verify https targets' certificates (chain and name)")
    ca_certificates: str | None = Field(
        description="PEM bundle of the CA certificates trusted for https targets; null: the system trust store"
    )
    sni: str | None = Field(
        description="server name sent to https targets and verified against their certificate; null: the target's host"
    )
    client_certificate_id: str | None = Field(
        description="a certificate of /v1/certificates shown to https targets (mTLS); null: none"
    )
    created_at: datetime = Field(description="when the resource was created (UTC)")
    updated_at: datetime = Field(description="when the resource was last changed (UTC)")


class TargetHealth(BaseModel):
    healthy: bool = Field(description="the worker sends traffic to the target")
    ejected_until: float | None = Field(
        default=None, description="epoch seconds until which outlier detection ejected it; null: not ejected"
    )
    in_flight: int = Field(default=0, description="requests the worker has in flight to it")


class TargetHealthPublic(BaseModel):
    id: str = Field(description="the resource's id (a UUID, assigned by the control plane)")
    host: str = Field(description="host name or IP address of the target")
    port: int = Field(description="TCP port of the target")
    weight: int = Field(description="share of traffic relative to the other targets (0: drained, no new requests)")
    nodes: dict[str, TargetHealth] = Field(description="node id -> that worker's view")


class UpstreamHealthPublic(BaseModel):
    upstream_id: str = Field(description="the upstream")
    targets: list[TargetHealthPublic] = Field(description="every target with every live worker's view")


class TargetCreate(InModel):
    host: Annotated[str, documented_pattern(_TARGET_HOST_RE.pattern)] = Field(
        description="host name or IP address of the target"
    )
    port: Port = Field(description="TCP port of the target")
    weight: Weight = Field(
        default=100, description="share of traffic relative to the other targets (0: drained, no new requests)"
    )
    scheme: Scheme = "http"

    _check_host = field_validator("host")(_target_host)


class TargetUpdate(InModel):
    host: Annotated[str, documented_pattern(_TARGET_HOST_RE.pattern)] | None = Field(
        json_schema_extra=not_null, default=None, description="host name or IP address of the target"
    )
    port: Port | None = Field(json_schema_extra=not_null, default=None, description="TCP port of the target")
    weight: Weight | None = Field(
        json_schema_extra=not_null,
        default=None,
        description="share of traffic relative to the other targets (0: drained, no new requests)",
    )
    scheme: Scheme | None = Field(
        json_schema_extra=not_null, default=None, description="http, or https: the workers speak TLS to this target"
    )

    _check_host = field_validator("host")(_target_host)


class TargetPublic(OutModel):
    id: str = Field(description="the resource's id (a UUID, assigned by the control plane)")
    upstream_id: str = Field(description="the upstream")
    host: str = Field(description="host name or IP address of the target")
    port: int = Field(description="TCP port of the target")
    weight: int = Field(description="share of traffic relative to the other targets (0: drained, no new requests)")
    scheme: str = Field(description="http, or https: the workers speak TLS to this target")
    created_at: datetime = Field(description="when the resource was created (UTC)")
    updated_at: datetime = Field(description="when the resource was last changed (UTC)")
