"""An API as its customers see it through the gateway, as an OpenAPI document.

* ``servers[0].url`` = the public gateway URL (``TOLLGATE_PUBLIC_URL``) + the API's base path;
* the security scheme follows the API's auth mode (:mod:`control_plane.openapi.security`);
* every operation documents the errors the gateway itself produces: 429 (``Retry-After``,
  ``RateLimit``, ``RateLimit-Policy``) always, 401/403 when the API needs a credential.  They are
  added only where the operation does not define that status, reference the ``TollgateError``
  schema and carry ``x-tollgate-gateway: true`` so a re-import drops them again;
* the operations, components and info stored at import; routes created through the admin API get
  a generated operation (path parameters as strings, a ``default`` response).

``x-tollgate-name`` and ``x-tollgate-greedy`` are emitted so a re-import maps to the same API and
routes; the upstream is internal and is not exported.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from control_plane.models import Api, Route
from control_plane.openapi.plan import GATEWAY_MARK, OPENAPI_METHODS, unique_operation_id
from control_plane.openapi.security import GatewayAuth, gateway_auth
from data_plane.snapshot.paths import param_names

DEFAULT_VERSION = "3.0.3"
ERROR_SCHEMA = "TollgateError"
# Routes that accept any method are exported with the methods an SDK user would call.
ANY_METHOD_EXPORT = ("get", "post", "put", "patch", "delete")
_GREEDY = re.compile(r"\{([^{}+]+)\+\}")


def server_url(public_url: str, api: Api) -> str:
    """The public URL + base path; for an API bound to host names, the first exact host replaces the host."""
    parts = urlsplit(public_url.rstrip("/"))
    netloc = parts.netloc
    exact = [h for h in api.hosts if not h.startswith("*.")]
    if exact:
        netloc = exact[0] + (f":{parts.port}" if parts.port else "")
    path = parts.path.rstrip("/") + ("" if api.base_path == "/" else api.base_path)
    return urlunsplit((parts.scheme, netloc, path or "/", "", ""))


def build_document(api: Api, routes: Iterable[Route], *, public_url: str) -> dict[str, Any]:
    stored = copy.deepcopy(api.openapi or {})
    auth = gateway_auth(api)
    doc: dict[str, Any] = {
        "openapi": stored.pop("openapi", DEFAULT_VERSION),
        "info": stored.pop("info", {"title": api.name, "version": "1.0.0"}),
        "servers": [{"url": server_url(public_url, api), "description": "Tollgate gateway"}],
    }
    components: dict[str, Any] = stored.pop("components", {})
    doc.update(stored)  # tags, externalDocs, jsonSchemaDialect, root extensions
    doc["x-tollgate-name"] = api.name
    if auth.security():
        doc["security"] = auth.security()
    doc["paths"] = _paths(routes, auth, components)
    components.setdefault("schemas", {})[ERROR_SCHEMA] = _error_schema()
    if auth.security_schemes():
        components["securitySchemes"] = auth.security_schemes()
    doc["components"] = components
    return doc


def _paths(routes: Iterable[Route], auth: GatewayAuth, components: dict[str, Any]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    taken: set[str] = set()
    ordered = sorted(routes, key=lambda r: (r.path, r.methods))
    for route in ordered:
        if route.operation and isinstance(route.operation.get("operationId"), str):
            taken.add(route.operation["operationId"])
    for route in ordered:
        oa_path = _GREEDY.sub(r"{\1}", route.path)
        methods = [m.lower() for m in route.methods if m.lower() in OPENAPI_METHODS] or list(ANY_METHOD_EXPORT)
        item = paths.setdefault(oa_path, {})
        for method in methods:
            if method in item:
                continue  # /a/{p} and /a/{p+} both exist: one OpenAPI path; the first (literal) one wins
            if route.operation:
                op = copy.deepcopy(route.operation)
            else:
                op = {"operationId": unique_operation_id(method, oa_path, taken), "responses": {}}
            _fit_path_parameters(op, route.path, components)
            if route.path != oa_path:
                op["x-tollgate-greedy"] = True
            responses = op.setdefault("responses", {})
            if not responses:
                responses["default"] = {"description": "the upstream's response"}
            for status, response in _gateway_responses(auth).items():
                responses.setdefault(status, response)
            item[method] = op
    return paths


def _fit_path_parameters(op: dict[str, Any], template: str, components: dict[str, Any]) -> None:
    """Make the path parameters match the template (a route's path may have been edited since import).

    An operation that already matches is left untouched, so an imported one exports byte-for-byte.
    """
    names = param_names(template)
    params = op.get("parameters") or []
    resolved = [_resolve(p, components) for p in params]
    declared = [str(r.get("name")) for r in resolved if r.get("in") == "path"]
    if sorted(declared) == sorted(names):
        return
    kept = [p for p, r in zip(params, resolved, strict=True) if r.get("in") != "path" or r.get("name") in names]
    missing = [n for n in names if n not in declared]
    kept += [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in missing]
    if kept:
        op["parameters"] = kept
    else:
        op.pop("parameters", None)


def _resolve(param: Any, components: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(param, dict):
        return {}
    ref = param.get("$ref")
    prefix = "#/components/parameters/"
    if isinstance(ref, str) and ref.startswith(prefix):
        target = (components.get("parameters") or {}).get(ref[len(prefix) :].replace("~1", "/").replace("~0", "~"))
        return target if isinstance(target, dict) else {}
    return param


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "An error produced by the gateway itself (not by the upstream).",
        "required": ["message"],
        "properties": {
            "message": {"type": "string"},
            "request_id": {"type": "string", "description": "also sent as the X-Request-ID header"},
        },
    }


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}}},
        GATEWAY_MARK: True,
    }
    if headers:
        response["headers"] = headers
    return response


def _gateway_responses(auth: GatewayAuth) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if auth.mode != "none":
        out["401"] = _error("No credential was sent.")
        out["403"] = _error("The credential is invalid, revoked or expired, or its plan does not include this API.")
    out["429"] = _error(
        "Throttled or quota exhausted. Wait Retry-After seconds before retrying.",
        {
            "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}},
            "RateLimit": {
                "description": "remaining quota and reset time (IETF RateLimit fields)",
                "schema": {"type": "string"},
            },
            "RateLimit-Policy": {"description": "the quota policy that applies", "schema": {"type": "string"}},
        },
    )
    return out
