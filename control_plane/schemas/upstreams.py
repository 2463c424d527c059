"""DTOs for upstreams, their targets and their health as the workers report it."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from cryptography import x509
from pydantic import BaseModel, Field, field_validator, model_validator

from control_plane.schemas.common import InModel, Name, OutModel, Timeout
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
    Field(
        max_length=1_000_000,
        description="PEM bundle of the CA certificates trusted for the upstream's https targets "
        "(default, or null: the system trust store)",
    ),
]


Sni = Annotated[
    str,
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

    path: str = Field(default="/", max_length=1024, pattern=r"^/[^\s\x00]*$")
    method: Literal["GET", "HEAD", "OPTIONS"] = "GET"
    interval: Annotated[float, Field(ge=0.05, le=3600)] = 5.0
    timeout: Annotated[float, Field(gt=0, le=600)] = 2.0
    expected_statuses: list[StatusCode] = Field(default_factory=list, max_length=100)  # empty: 2xx/3xx
    healthy_threshold: Annotated[int, Field(ge=1, le=100)] = 2
    unhealthy_threshold: Annotated[int, Field(ge=1, le=100)] = 3


class PassiveIn(InModel):
    """Outlier detection from real traffic."""

    consecutive_failures: Annotated[int, Field(ge=1, le=1000)] = 5
    statuses: list[StatusCode] = Field(default_factory=lambda: [500, 502, 503, 504], max_length=100)
    base_ejection_time: Annotated[float, Field(gt=0, le=86400)] = 30.0
    max_ejection_time: Annotated[float, Field(gt=0, le=86400)] = 300.0
    max_ejection_percent: Annotated[int, Field(ge=0, le=100)] = 50

    @model_validator(mode="after")
    def _cap_not_below_base(self) -> PassiveIn:
        if self.max_ejection_time < self.base_ejection_time:
            raise ValueError("max_ejection_time must be >= base_ejection_time")
        return self


class UpstreamCreate(InModel):
    name: Name
    algorithm: Algorithm = "round_robin"
    connect_timeout: Timeout = 5.0
    read_timeout: Timeout = 60.0
    total_timeout: Timeout | None = None
    retries: Retries = 0
    hash_on: HashOn = "ip"
    hash_key: str = Field(default="", pattern=r"^$|" + _HASH_KEY_RE)
    health_check: HealthCheckIn | None = None
    passive: PassiveIn | None = None
    panic: bool = False
    max_connections: Annotated[int, Field(ge=0, le=100000)] = 0
    keepalive_timeout: KeepaliveTimeout = DEFAULT_KEEPALIVE_TIMEOUT
    tls_verify: bool = Field(
        default=True, description="verify https targets' certificates (chain and name); false only for labs"
    )
    ca_certificates: CaCertificates | None = None
    sni: Sni | None = None
    client_certificate_id: str | None = Field(
        default=None, max_length=36, description="a certificate of /v1/certificates shown to https targets (mTLS)"
    )

    _check_ca = field_validator("ca_certificates")(_ca_certificates)
    _check_sni = field_validator("sni")(_sni)


class UpstreamUpdate(InModel):
    name: Name | None = None
    algorithm: Algorithm | None = None
    connect_timeout: Timeout | None = None
    read_timeout: Timeout | None = None
    total_timeout: Timeout | None = None  # explicit null: no total timeout
    retries: Retries | None = None
    hash_on: HashOn | None = None
    hash_key: str | None = Field(default=None, pattern=r"^$|" + _HASH_KEY_RE)
    health_check: HealthCheckIn | None = None  # explicit null: no active checks
    passive: PassiveIn | None = None  # explicit null: no outlier detection
    panic: bool | None = None
    max_connections: Annotated[int, Field(ge=0, le=100000)] | None = None
    keepalive_timeout: KeepaliveTimeout | None = None
    tls_verify: bool | None = None
    ca_certificates: CaCertificates | None = None  # explicit null: the system trust store
    sni: Sni | None = None  # explicit null: the target's host
    client_certificate_id: str | None = Field(default=None, max_length=36)  # explicit null: none

    _check_ca = field_validator("ca_certificates")(_ca_certificates)
    _check_sni = field_validator("sni")(_sni)


class UpstreamPublic(OutModel):
    id: str
    name: str
    algorithm: str
    connect_timeout: float
    read_timeout: float
    total_timeout: float | None
    retries: int
    hash_on: str
    hash_key: str
    health_check: HealthCheckIn | None
    passive: PassiveIn | None
    panic: bool
    max_connections: int
    keepalive_timeout: float
    tls_verify: bool
    ca_certificates: str | None
    sni: str | None
    client_certificate_id: str | None
    created_at: datetime
    updated_at: datetime


class TargetHealth(BaseModel):
    healthy: bool
    ejected_until: float | None = None
    in_flight: int = 0


class TargetHealthPublic(BaseModel):
    id: str
    host: str
    port: int
    weight: int
    nodes: dict[str, TargetHealth]  # node id -> that worker's view


class UpstreamHealthPublic(BaseModel):
    upstream_id: str
    targets: list[TargetHealthPublic]


class TargetCreate(InModel):
    host: str
    port: Port
    weight: Weight = 100
    scheme: Scheme = "http"

    _check_host = field_validator("host")(_target_host)


class TargetUpdate(InModel):
    host: str | None = None
    port: Port | None = None
    weight: Weight | None = None
    scheme: Scheme | None = None

    _check_host = field_validator("host")(_target_host)


class TargetPublic(OutModel):
    id: str
    upstream_id: str
    host: str
    port: int
    weight: int
    scheme: str
    created_at: datetime
    updated_at: datetime
