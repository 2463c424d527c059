"""The admin API explains itself: every operation, parameter and schema property of ``/openapi.json``
has a description, and the worker channel (``/cluster/v1``) is not in the public document.

A failure lists every offender by name (``GET /v1/things (control_plane.api.things:list_things)``,
``schema ThingPublic property size``), so whoever added it knows what to describe: an operation by the
docstring of its endpoint function, a property by ``Field(description=...)``, a parameter by
``Query(description=...)`` / ``Path(description=...)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi.testclient import TestClient

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _endpoints(client: TestClient) -> dict[tuple[str, str], str]:
    """(METHOD, path) -> module:function of the endpoint, to name an undocumented operation's code."""
    out: dict[tuple[str, str], str] = {}

    def walk(routes: Any) -> None:
        for route in routes:
            endpoint = getattr(route, "endpoint", None)
            path = getattr(route, "path", None)
            if endpoint is not None and path is not None:
                for method in getattr(route, "methods", None) or ():
                    out[(method, path)] = f"{endpoint.__module__}:{endpoint.__qualname__}"
            walk(getattr(route, "routes", None) or ())

    walk(client.app.router.routes)  # type: ignore[attr-defined]
    return out


def _properties(where: str, schema: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every property of ``schema`` and of the schemas nested in it (inline objects, items, unions)."""
    if isinstance(schema, dict):
        for name, prop in (schema.get("properties") or {}).items():
            yield f"{where} property {name}", prop
            yield from _properties(f"{where}.{name}", prop)
        for key in ("items", "additionalProperties", "not"):
            yield from _properties(where, schema.get(key))
        for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            for sub in schema.get(key) or ():
                yield from _properties(where, sub)


def _offenders(doc: dict[str, Any], endpoints: dict[tuple[str, str], str]) -> list[str]:
    missing: list[str] = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            label = f"{method.upper()} {path} ({endpoints.get((method.upper(), path), '?')})"
            if not (op.get("description") or "").strip():
                missing.append(f"operation {label}: no description (docstring)")
            for prm in op.get("parameters", []):
                if not (prm.get("description") or "").strip():
                    missing.append(f"operation {label}: {prm['in']} parameter {prm['name']} has no description")
            for content in (op.get("requestBody") or {}).get("content", {}).values():
                for where, prop in _properties(f"operation {label} body", content.get("schema")):
                    if "$ref" not in prop and not (prop.get("description") or "").strip():
                        missing.append(f"{where} has no description")
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        for where, prop in _properties(f"schema {name}", schema):
            # A property that is only a $ref carries the referenced schema's docs (OpenAPI 3.1 allows siblings,
            # pydantic puts the field's description beside the $ref when there is one).
            if not (prop.get("description") or "").strip() and set(prop) != {"$ref"}:
                missing.append(f"{where} has no description")
    return missing


def test_every_operation_parameter_and_property_is_described(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    missing = _offenders(doc, _endpoints(client))
    assert not missing, f"{len(missing)} undescribed in /openapi.json:\n" + "\n".join(missing)


def test_the_check_names_an_undescribed_operation_and_property() -> None:
    # The check itself, on a document with one gap of each kind: it must find them, by name.
    doc = {
        "paths": {
            "/v1/things": {
                "get": {"parameters": [{"name": "q", "in": "query"}]},
                "post": {"description": "make one"},
            }
        },
        "components": {
            "schemas": {
                "Thing": {
                    "properties": {
                        "size": {"type": "integer"},
                        "ok": {"type": "string", "description": "fine"},
                        "inner": {"description": "nested", "properties": {"deep": {"type": "string"}}},
                    }
                }
            }
        },
    }
    missing = _offenders(doc, {("GET", "/v1/things"): "control_plane.api.things:list_things"})
    assert missing == [
        "operation GET /v1/things (control_plane.api.things:list_things): no description (docstring)",
        "operation GET /v1/things (control_plane.api.things:list_things): query parameter q has no description",
        "schema Thing property size has no description",
        "schema Thing.inner property deep has no description",
    ]


def test_the_worker_channel_is_not_in_the_public_document(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["paths"] and not [p for p in doc["paths"] if not p.startswith("/v1/")]
    names = set(doc["components"]["schemas"])
    assert not names & {"NodeStatusIn", "UsageBatchIn", "UsageCountIn", "UsageBatchResult"}
    # ... and it still answers (workers use it), with its own token
    assert client.get("/cluster/v1/snapshot", params={"wait": 0}).status_code == 401
