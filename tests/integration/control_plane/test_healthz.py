"""``GET /healthz``: unauthenticated readiness (database reachable), on each database backend."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import create_engine


def test_healthz_answers_without_a_token_and_is_not_in_the_schema(client: TestClient) -> None:
    r = client.get("/healthz", headers={"Authorization": ""})
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["revision"] == 0
    assert "/healthz" not in client.get("/openapi.json").json()["paths"]


def test_healthz_is_503_when_the_database_is_gone(client: TestClient) -> None:
    state = client.app.state  # type: ignore[attr-defined]
    real, state.engine = state.engine, create_engine("sqlite:////nonexistent/dir/tollgate.db")
    try:
        r = client.get("/healthz")
    finally:
        state.engine.dispose()
        state.engine = real
    assert r.status_code == 503 and r.json() == {"status": "database unreachable"}
