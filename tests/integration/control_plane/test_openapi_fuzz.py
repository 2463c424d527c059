"""schemathesis against the admin API's own OpenAPI document, with ALL its checks (issue 19, item 7).

In-process ASGI app on SQLite with the bootstrap admin token; bounded (a few examples per operation:
the whole file takes about a minute on one core).  The /cluster channel is not in the document.
schemathesis runs the app's lifespan (migrations, bootstrap admin token) once, on its own event loop.

Every built-in check runs (no 5xx; status codes, headers, content types and bodies as documented; an
undeclared method is a 405 with an ``Allow`` listing the path's methods; what the schema refuses is
refused; ...), with one replacement: "schema-valid request rejected" (positive data answered 422)
is checked here by :func:`schema_valid_data_is_accepted`, which accepts a 422 only when every problem
names a rule of :data:`BEYOND_JSON_SCHEMA`: rules no JSON Schema keyword can state (a PEM must parse,
a referenced plan must exist, end after start).  Any other 422 on data the schema allows fails: the
schema must then be made as strict as the rule.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from control_plane.app import create_app
from control_plane.settings import Settings, WebhookSettings
from tests.integration.control_plane.conftest import ADMIN_HEADERS, ADMIN_TOKEN, CLUSTER_TOKEN

# create_app connects to nothing, so building it at collection time is cheap; the database is made at start-up.
_DATA = Path(tempfile.mkdtemp(prefix="tollgate-fuzz-"))
_APP = create_app(
    Settings(
        database_url=f"sqlite:///{_DATA / 'tollgate.db'}",
        data_dir=_DATA,
        cluster_token=CLUSTER_TOKEN,
        admin_token=ADMIN_TOKEN,
        # fuzzed webhook URLs name any host: send nothing (tests reach 127.0.0.1 only)
        webhooks=WebhookSettings(deliver=False),
    )
)
schema = schemathesis.openapi.from_asgi("/openapi.json", _APP).include(path_regex="^/v1/")

# field (last element of a 422 problem's loc) -> the rule a JSON Schema cannot state.  The schema says what
# it can of each (a pattern, a format, the bounds); the service checks the rest.
BEYOND_JSON_SCHEMA: dict[str, str] = {
    "cert": "a PEM chain that parses, whose leaf matches the key",
    "key": "a PEM private key that parses and matches the certificate",
    "ca_certificates": "a PEM bundle of X.509 certificates that parses, and nothing else",
    "mtls_ca_certificates": "a PEM bundle of X.509 certificates that parses, and nothing else",
    "jwt_public_key": "a PEM public key that parses, of the algorithms' kind",
    "mtls_fingerprints": "a certificate or its SHA-256",
    "mtls_subjects": "an RFC 4514 name",
    "sni": "a DNS name, not an IP address (RFC 6066 3)",
    "snis": "a DNS name or wildcard, not an IP address",
    "hosts": "each label at most 63 characters, not starting or ending with '-'",
    "host": "a host name or an IP address",
    "jwt_jwks_url": "an http(s) URL with a host",
    "url": "an http(s) URL with a host and a valid port, no fragment",
    "path": "a path template whose {parameters} are well formed (and unique on the API)",
    "base_path": "a normalisable base path",
    "method": "an HTTP method",
    "methods": "HTTP methods",
    "end": "after start, within the maximum range",
    "start": "a day or a date-time on the hour",
    "expires_at": "in the future",
    "time_zone": "an IANA time zone",
    "billing_anchor": "a wall-clock time that exists in time_zone",
    "plan_id": "a usage plan that exists",
    "upstream_id": "an upstream that exists",
    "api_ids": "APIs that exist",
    "api_id": "an API that exists",
    "client_certificate_id": "a certificate that exists",
    "apis": "each API listed once, and existing",
    "overrides": "each route listed once",
    "quota": "hard_cap only with overage allow, and at least the limit",
    "passive": "max_ejection_time at least base_ejection_time",
    "hash_key": "given when hash_on is header or cookie",
    "auth": "the settings the mode needs (a JWT key, a CA bundle)",
    "jwt_algorithms": "algorithms matching the key given",
    "jwt_secret": "HS256 only",
    "policies": "plugins that are installed and accept their config; rules that compile",
    "openapi": "an OpenAPI 3.0/3.1 document (validated by openapi-spec-validator)",
    "config": "names that resolve within the document or on the control plane",
    "remaining": "a plan with a quota",
    "extra": "a plan with a quota",
    "cursor": "an opaque cursor this API returned in a page's next (signed: it cannot be made up)",
}
# Problems whose loc names the request itself rather than a field.
BEYOND_JSON_SCHEMA_LOCS: dict[tuple[str, ...], str] = {
    ("body",): "an OpenAPI document: validated by openapi-spec-validator",
}


def _beyond_json_schema(problem: dict[str, Any]) -> bool:
    loc = [str(p) for p in problem.get("loc", [])]
    if tuple(loc) in BEYOND_JSON_SCHEMA_LOCS:
        return True
    if loc[:1] == ["body"] and problem.get("type") == "openapi_invalid":
        return True  # an imported document's own problems (POST /v1/apis/import)
    named = [p for p in loc[1:] if not p.isdigit()]
    return any(p in BEYOND_JSON_SCHEMA for p in named)


def schema_valid_data_is_accepted(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """schemathesis' positive_data_acceptance, except for the 422s of :data:`BEYOND_JSON_SCHEMA`."""
    if response.status_code != 422:
        return positive_data_acceptance(ctx, response, case)
    try:
        problems = json.loads(response.text)["detail"]
    except (ValueError, KeyError, TypeError):
        problems = None
    if isinstance(problems, list) and problems and all(_beyond_json_schema(p) for p in problems):
        return None
    return positive_data_acceptance(ctx, response, case)


@schema.parametrize()
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_admin_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    # A fresh Idempotency-Key per request: schemathesis reuses the values it generates, and the same key
    # with another body is rightly a 422 (the idempotency rules, not a schema rule).
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = uuid.uuid4().hex
    case.call_and_validate(
        headers=ADMIN_HEADERS,
        excluded_checks=[positive_data_acceptance],
        additional_checks=[schema_valid_data_is_accepted],
    )


def test_the_422_rule_list_is_not_a_blanket() -> None:
    # A 422 naming a field with an expressible rule (a boolean, a length) is not excused.
    assert not _beyond_json_schema({"loc": ["body", "dry_run"], "msg": "not a boolean", "type": "bool_type"})
    assert not _beyond_json_schema({"loc": ["body", "name"], "msg": "too long", "type": "string_too_long"})
    assert _beyond_json_schema({"loc": ["body", "snis", 0], "msg": "an IP address", "type": "value_error"})
