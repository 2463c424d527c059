"""A validated OpenAPI document → the Tollgate API it describes (``ApiPlan``), without touching the database.

What is taken from the document (``x-tollgate-*`` extensions win over standard fields):

===========================  ==============================================================
API name                     ``x-tollgate-name``, else ``info.title`` as a slug
base path                    ``x-tollgate-base-path``, else the path of ``servers[0].url``
                             (server variables take their defaults), else ``/``
hosts, strip_base_path       ``x-tollgate-hosts``, ``x-tollgate-strip-base-path`` (root), only if given
routes                       one per path + method; ``{param}`` stays ``{param}``
greedy last parameter        ``x-tollgate-greedy: true`` on the path item or operation: ``{p}`` → ``{p+}``
upstream of a route          ``x-tollgate-upstream`` (id or name) on the operation, path item or root,
                             else the ``upstream_id`` of the import request
===========================  ==============================================================

Stored with each route: the operation with the path item's parameters merged in, without
``security``/``servers`` (the gateway decides those), without the responses a Tollgate export adds
(marked ``x-tollgate-gateway``) and with a generated ``operationId`` when it had none.  Stored with
the API: ``openapi``, ``info``, ``components`` (minus ``securitySchemes`` and the reserved
``Tollgate*`` names), ``tags``, ``externalDocs``, ``jsonSchemaDialect`` and other root extensions.
Those normalisations make import → export → import a fixed point.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from control_plane.errors import InvalidDocument
from control_plane.openapi.document import pointer
from data_plane.snapshot import SnapshotError, split_template
from data_plane.snapshot.paths import template_shape

OPENAPI_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
RESERVED_PREFIX = "Tollgate"  # component names the exporter owns
GATEWAY_MARK = "x-tollgate-gateway"  # on responses the exporter adds
_DOC_KEYS = ("openapi", "info", "components", "tags", "externalDocs", "jsonSchemaDialect")
_SERVER_VAR = re.compile(r"\{([^{}]+)\}")
_PARAM = re.compile(r"^\{([^{}]+)\}$")


@dataclass(frozen=True, slots=True)
class RoutePlan:
    path: str  # Tollgate template
    method: str  # upper case
    operation: dict[str, Any]
    upstream: str | None  # x-tollgate-upstream (id or name); None: the import's default
    pointer: str  # where the operation is in the document


@dataclass(slots=True)
class ApiPlan:
    name: str
    base_path: str
    openapi: dict[str, Any]
    routes: list[RoutePlan] = field(default_factory=list)
    hosts: list[str] | None = None
    strip_base_path: bool | None = None
    # document pointer of each API field, to name the place when a value is refused later
    pointers: dict[str, str] = field(default_factory=dict)


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:200] or "api"


def plan_import(doc: dict[str, Any]) -> ApiPlan:
    problems: list[tuple[str, str]] = []
    plan = ApiPlan(name=_name(doc, problems), base_path=_base_path(doc, problems), openapi=_doc_level(doc))
    plan.pointers = {
        "name": "/x-tollgate-name" if "x-tollgate-name" in doc else "/info/title",
        "base_path": "/x-tollgate-base-path" if "x-tollgate-base-path" in doc else "/servers/0/url",
        "hosts": "/x-tollgate-hosts",
        "strip_base_path": "/x-tollgate-strip-base-path",
    }
    if "x-tollgate-hosts" in doc:
        hosts = doc["x-tollgate-hosts"]
        if isinstance(hosts, list) and all(isinstance(h, str) for h in hosts):
            plan.hosts = list(hosts)
        else:
            problems.append(("/x-tollgate-hosts", "must be a list of host names"))
    if "x-tollgate-strip-base-path" in doc:
        strip = doc["x-tollgate-strip-base-path"]
        if isinstance(strip, bool):
            plan.strip_base_path = strip
        else:
            problems.append(("/x-tollgate-strip-base-path", "must be true or false"))
    root_upstream = _upstream_ref(doc, "", problems)
    plan.routes = _routes(doc, root_upstream, problems)
    if problems:
        raise InvalidDocument(problems)
    return plan


def _name(doc: dict[str, Any], problems: list[tuple[str, str]]) -> str:
    if "x-tollgate-name" in doc:
        name = doc["x-tollgate-name"]
        if isinstance(name, str) and name:
            return name
        problems.append(("/x-tollgate-name", "must be a non-empty string"))
        return ""
    return slug(str(doc.get("info", {}).get("title", "")))


def _base_path(doc: dict[str, Any], problems: list[tuple[str, str]]) -> str:
    if "x-tollgate-base-path" in doc:
        value = doc["x-tollgate-base-path"]
        if isinstance(value, str):
            return value
        problems.append(("/x-tollgate-base-path", "must be a string"))
        return "/"
    servers = doc.get("servers") or []
    if not servers or not isinstance(servers[0], dict):
        return "/"
    server = servers[0]
    variables = server.get("variables") or {}
    url = _SERVER_VAR.sub(lambda m: str((variables.get(m.group(1)) or {}).get("default", "")), str(server["url"]))
    return urlsplit(url).path or "/"


def _doc_level(doc: dict[str, Any]) -> dict[str, Any]:
    out = {k: copy.deepcopy(doc[k]) for k in _DOC_KEYS if k in doc}
    out.update({k: copy.deepcopy(v) for k, v in doc.items() if k.startswith("x-") and not k.startswith("x-tollgate-")})
    components = out.get("components")
    if isinstance(components, dict):
        components.pop("securitySchemes", None)
        for kind, named in list(components.items()):
            if isinstance(named, dict):
                for name in [n for n in named if n.startswith(RESERVED_PREFIX)]:
                    del named[name]
                if not named:
                    del components[kind]
        if not components:
            del out["components"]
    return out


def _upstream_ref(node: dict[str, Any], at: str, problems: list[tuple[str, str]]) -> str | None:
    value = node.get("x-tollgate-upstream")
    if value is None or (isinstance(value, str) and value):
        return value
    problems.append((at + "/x-tollgate-upstream", "must be an upstream id or name"))
    return None


def _routes(doc: dict[str, Any], root_upstream: str | None, problems: list[tuple[str, str]]) -> list[RoutePlan]:
    routes: list[RoutePlan] = []
    seen: dict[tuple[tuple[str, ...], str], str] = {}
    op_ids = {
        op["operationId"]
        for item in (doc.get("paths") or {}).values()
        if isinstance(item, dict)
        for m in OPENAPI_METHODS
        if isinstance(op := item.get(m), dict) and isinstance(op.get("operationId"), str)
    }
    for oa_path, item in (doc.get("paths") or {}).items():
        at = pointer("paths", oa_path)
        if not isinstance(item, dict):
            continue
        if "$ref" in item:
            problems.append((at + "/$ref", "path item references are not supported; inline the path item"))
            continue
        item_upstream = _upstream_ref(item, at, problems) or root_upstream
        item_greedy = item.get("x-tollgate-greedy", False)
        for method in OPENAPI_METHODS:
            if not isinstance(item.get(method), dict):
                continue
            op_at = pointer("paths", oa_path, method)
            op = copy.deepcopy(item[method])
            upstream = _upstream_ref(op, op_at, problems) or item_upstream
            op.pop("x-tollgate-upstream", None)
            greedy = op.pop("x-tollgate-greedy", item_greedy)
            template = _template(oa_path, greedy is True, op_at, problems)
            if template is None:
                continue
            shape = (template_shape(template), method)
            if shape in seen:
                problems.append((op_at, f"matches the same requests as {seen[shape]} (parameter names do not count)"))
                continue
            seen[shape] = op_at
            _normalise_operation(op, item.get("parameters"), method, oa_path, op_ids)
            routes.append(RoutePlan(template, method.upper(), op, upstream, op_at))
    return routes


def _template(oa_path: str, greedy: bool, at: str, problems: list[tuple[str, str]]) -> str | None:
    segments = oa_path.split("/")
    if greedy:
        m = _PARAM.match(segments[-1])
        if not m:
            problems.append((at + "/x-tollgate-greedy", "a greedy route needs a {parameter} as its last segment"))
            return None
        segments[-1] = "{" + m.group(1) + "+}"
    template = "/".join(segments)
    try:
        split_template(template)
    except SnapshotError as exc:
        problems.append((pointer("paths", oa_path), f"not a Tollgate path template: {exc}"))
        return None
    return template


def _normalise_operation(op: dict[str, Any], item_params: Any, method: str, oa_path: str, op_ids: set[str]) -> None:
    op.pop("security", None)
    op.pop("servers", None)
    if isinstance(item_params, list) and item_params:
        own = op.get("parameters") or []
        keys = {_param_key(p) for p in own}
        op["parameters"] = [copy.deepcopy(p) for p in item_params if _param_key(p) not in keys] + own
    responses = op.get("responses")
    if isinstance(responses, dict):
        for status in [s for s, r in responses.items() if isinstance(r, dict) and r.get(GATEWAY_MARK) is True]:
            del responses[status]
    if not isinstance(op.get("operationId"), str):
        op["operationId"] = unique_operation_id(method, oa_path, op_ids)


def _param_key(param: Any) -> tuple[str, str]:
    if isinstance(param, dict) and "$ref" in param:
        return ("$ref", str(param["$ref"]))
    if isinstance(param, dict):
        return (str(param.get("name")), str(param.get("in")))
    return ("", "")


def unique_operation_id(method: str, oa_path: str, taken: set[str]) -> str:
    words = [w for w in re.split(r"[^A-Za-z0-9]+", oa_path) if w]
    base = "_".join([method.lower(), *words]) if words else f"{method.lower()}_root"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}_{n}", n + 1
    taken.add(candidate)
    return candidate
