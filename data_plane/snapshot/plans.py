"""Usage plans in the snapshot contract (schema 1.3): types, wire form and validation.

Split from :mod:`data_plane.snapshot` to keep that module readable; like it, this is a stdlib-only
leaf.  A plan carries an optional plan-wide throttle and quota and the APIs it grants, each with
optional per-route (method + path template) throttle overrides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from data_plane.errors import PlanError

QUOTA_PERIODS = ("DAY", "WEEK", "MONTH")


@dataclass(frozen=True, slots=True)
class PlanThrottle:
    rate: float  # requests per second, fractional allowed
    burst: int


@dataclass(frozen=True, slots=True)
class PlanQuota:
    limit: int
    period: str  # DAY | WEEK | MONTH (UTC)


@dataclass(frozen=True, slots=True)
class PlanOverride:
    """A throttle for one route of one API (its own bucket, replacing the plan-wide one there)."""

    method: str
    path: str  # the route's path template, relative to the API base path
    rate: float
    burst: int


@dataclass(frozen=True, slots=True)
class PlanApi:
    api_id: str
    overrides: tuple[PlanOverride, ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    id: str
    name: str
    throttle: PlanThrottle | None = None
    quota: PlanQuota | None = None
    apis: tuple[PlanApi, ...] = ()


def plan_dict(p: Plan) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "throttle": {"rate": p.throttle.rate, "burst": p.throttle.burst} if p.throttle else None,
        "quota": {"limit": p.quota.limit, "period": p.quota.period} if p.quota else None,
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


def _field(doc: dict[str, Any], key: str, typ: type, where: str) -> Any:
    if key not in doc:
        raise PlanError(f"{where}.{key} is missing")
    value = doc[key]
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, typ) or isinstance(value, bool):
        raise PlanError(f"{where}.{key} must be {typ.__name__}")
    return value


def _rate_burst(doc: dict[str, Any], where: str) -> tuple[float, int]:
    rate = _field(doc, "rate", float, where)
    burst = _field(doc, "burst", int, where)
    if not (rate > 0 and math.isfinite(rate)):
        raise PlanError(f"{where}.rate must be > 0")
    if burst < 1:
        raise PlanError(f"{where}.burst must be >= 1")
    return rate, burst


def parse_plan(doc: Any, where: str, methods: tuple[str, ...]) -> Plan:
    if not isinstance(doc, dict):
        raise PlanError(f"{where} must be an object")
    throttle = quota = None
    if doc.get("throttle") is not None:
        t = doc["throttle"]
        if not isinstance(t, dict):
            raise PlanError(f"{where}.throttle must be an object")
        throttle = PlanThrottle(*_rate_burst(t, f"{where}.throttle"))
    if doc.get("quota") is not None:
        q = doc["quota"]
        if not isinstance(q, dict):
            raise PlanError(f"{where}.quota must be an object")
        limit = _field(q, "limit", int, f"{where}.quota")
        period = _field(q, "period", str, f"{where}.quota")
        if limit < 0:
            raise PlanError(f"{where}.quota.limit must be >= 0")
        if period not in QUOTA_PERIODS:
            raise PlanError(f"{where}.quota.period must be one of {', '.join(QUOTA_PERIODS)}")
        quota = PlanQuota(limit, period)
    apis = []
    raw_apis = doc.get("apis", [])
    if not isinstance(raw_apis, list):
        raise PlanError(f"{where}.apis must be a list")
    for i, a in enumerate(raw_apis):
        aw = f"{where}.apis[{i}]"
        if not isinstance(a, dict):
            raise PlanError(f"{aw} must be an object")
        overrides = []
        for j, o in enumerate(a.get("overrides", [])):
            ow = f"{aw}.overrides[{j}]"
            if not isinstance(o, dict):
                raise PlanError(f"{ow} must be an object")
            method = _field(o, "method", str, ow)
            if method not in methods:
                raise PlanError(f"{ow}.method {method!r} is not an HTTP method")
            rate, burst = _rate_burst(o, ow)
            overrides.append(PlanOverride(method, _field(o, "path", str, ow), rate, burst))
        apis.append(PlanApi(_field(a, "api_id", str, aw), tuple(overrides)))
    return Plan(
        id=_field(doc, "id", str, where),
        name=_field(doc, "name", str, where),
        throttle=throttle,
        quota=quota,
        apis=tuple(apis),
    )
