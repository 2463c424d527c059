"""Pure OpenAPI logic: document → plan, the gateway security scheme, the SDK's gateway module."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from control_plane.errors import InvalidDocument
from control_plane.openapi.document import parse_body, validate
from control_plane.openapi.plan import plan_import, slug
from control_plane.openapi.sdk import gateway_module, package_names
from control_plane.openapi.security import gateway_auth


def doc(paths: dict[str, Any], **root: Any) -> dict[str, Any]:
    return {"openapi": "3.0.3", "info": {"title": "Orders API", "version": "1"}, "paths": paths, **root}


def op(**extra: Any) -> dict[str, Any]:
    return {"responses": {"200": {"description": "ok"}}, **extra}


def test_names_base_paths_and_extensions() -> None:
    assert slug("Swagger Petstore!") == "swagger-petstore" and slug("***") == "api"
    plan = plan_import(doc({}, servers=[{"url": "https://x.example/{v}/api", "variables": {"v": {"default": "v2"}}}]))
    assert (plan.name, plan.base_path, plan.hosts, plan.strip_base_path) == ("orders-api", "/v2/api", None, None)
    plan = plan_import(
        doc({}, **{"x-tollgate-name": "orders", "x-tollgate-base-path": "/o", "x-tollgate-strip-base-path": False})
    )
    assert (plan.name, plan.base_path, plan.strip_base_path) == ("orders", "/o", False)


def test_routes_merge_item_parameters_and_honour_greedy_and_upstream() -> None:
    param = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    plan = plan_import(
        doc(
            {
                "/items/{id}": {"parameters": [param], "get": op(operationId="getItem"), "delete": op()},
                "/files/{rest}": {"x-tollgate-greedy": True, "x-tollgate-upstream": "files", "get": op()},
            },
            **{"x-tollgate-upstream": "main"},
        )
    )
    by_key = {(r.path, r.method): r for r in plan.routes}
    assert set(by_key) == {("/items/{id}", "GET"), ("/items/{id}", "DELETE"), ("/files/{rest+}", "GET")}
    assert by_key[("/items/{id}", "GET")].operation["parameters"] == [param]
    assert by_key[("/items/{id}", "DELETE")].operation["operationId"] == "delete_items_id"  # generated
    assert by_key[("/items/{id}", "GET")].upstream == "main"
    assert by_key[("/files/{rest+}", "GET")].upstream == "files"


def test_same_shape_twice_and_untranslatable_templates_are_refused_with_pointers() -> None:
    with pytest.raises(InvalidDocument) as exc:
        plan_import(doc({"/a/{x}": {"get": op()}, "/a/{y}": {"get": op()}, "/b/{n}.{ext}": {"get": op()}}))
    pointers = [p for p, _ in exc.value.problems]
    assert pointers == ["/paths/~1a~1{y}/get", "/paths/~1b~1{n}.{ext}"]


def test_security_and_reserved_names_are_dropped_at_import() -> None:
    components = {
        "securitySchemes": {"k": {"type": "apiKey", "in": "header", "name": "k"}},
        "schemas": {"TollgateError": {"type": "object"}, "Pet": {"type": "object"}},
    }
    plan = plan_import(doc({"/p": {"get": op(security=[{"k": []}])}}, components=components))
    assert plan.openapi["components"] == {"schemas": {"Pet": {"type": "object"}}}
    assert "security" not in plan.routes[0].operation


def test_document_parsing_and_validation_errors() -> None:
    assert parse_body(b'{"a": 1}', "application/json; charset=utf-8") == {"a": 1}
    assert parse_body(b"a: 1\n", "text/yaml") == {"a": 1}
    with pytest.raises(InvalidDocument, match="not valid JSON"):
        parse_body(b"{", "application/json")
    with pytest.raises(InvalidDocument) as exc:
        validate(doc({"/a/{id}": {"get": op()}}))  # undeclared path parameter: no path from the validator
    assert exc.value.problems[0][0] == "/paths/~1a~1{id}/get"


@pytest.mark.parametrize(
    ("api", "schemes"),
    [
        (SimpleNamespace(auth="none"), {}),
        (SimpleNamespace(auth="api_key"), {"TollgateApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}}),
        (
            SimpleNamespace(auth="api_key", key_header="x-key", key_query=None),
            {"TollgateApiKey": {"type": "apiKey", "in": "header", "name": "x-key"}},
        ),
        (
            SimpleNamespace(auth="api_key", key_query="apikey"),
            {"TollgateApiKey": {"type": "apiKey", "in": "query", "name": "apikey"}},
        ),
        (SimpleNamespace(auth="jwt"), {"TollgateJwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}),
    ],
)
def test_security_scheme_follows_the_auth_mode(api: Any, schemes: dict[str, Any]) -> None:
    auth = gateway_auth(api)
    assert auth.security_schemes() == schemes
    assert auth.security() == [{name: []} for name in schemes]


def test_sdk_gateway_module_sends_the_key_where_the_scheme_says() -> None:
    servers = [{"url": "http://gw:8000/orders"}]
    header = gateway_module(
        {
            "servers": servers,
            "components": {
                "securitySchemes": gateway_auth(SimpleNamespace(auth="api_key", key_header="x-k")).security_schemes()
            },
        }
    )
    assert "KEY_HEADER = 'x-k'" in header and "BASE_URL = 'http://gw:8000/orders'" in header
    jwt = gateway_module({"servers": servers, "components": {"securitySchemes": {"TollgateJwt": {}}}})
    assert "AUTH_MODE = 'jwt'" in jwt and "KEY_HEADER = 'Authorization'" in jwt
    compile(header, "gateway.py", "exec")
    assert package_names("Swagger Petstore") == ("swagger-petstore-client", "swagger_petstore_client")
    assert package_names("2fa")[1] == "api_2fa_client"
