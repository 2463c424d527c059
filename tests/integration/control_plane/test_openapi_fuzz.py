"""schemathesis against the admin API's own OpenAPI document: no 5xx, responses conform to the schema.

In-process ASGI app on SQLite with the bootstrap admin token; bounded (a few examples per operation).
The /cluster channel is not part of the admin API and is left out.  schemathesis runs the app's
lifespan (migrations, bootstrap admin token) once, on its own event loop.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

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


@schema.parametrize()
@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
def test_admin_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    # The checks the admin API promises: no 5xx; status codes, content types and bodies as documented.
    # Left out: schemathesis' probes with methods no route declares (Starlette's 405 lists only the
    # first matching route's methods) and "schema-valid request rejected" (some rules, e.g. host names
    # and path templates, are validators the OpenAPI document cannot express, so a 422 is right).
    case.call_and_validate(
        headers=ADMIN_HEADERS,
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
    )
