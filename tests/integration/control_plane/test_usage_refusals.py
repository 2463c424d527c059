"""Refusal counts on the worker channel (SQLite and PostgreSQL): added once per batch id, summed per
(hour, API, status), refused when malformed, read back per API for the console."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient

from control_plane.services.usage import refusals_since
from tests.integration.control_plane.factories import make_api

USAGE = "/cluster/v1/usage"


def _batch(batch_id: str, api_id: str, **extra: object) -> dict[str, object]:
    return {
        "batch_id": batch_id,
        "counts": [],
        "refusals": [
            {"api_id": api_id, "status": 401, "hour": "2026-12-02T10:00:00Z", "count": 3},
            {"api_id": api_id, "status": 429, "hour": "2026-12-02T11:00:00Z", "count": 2},
            {"api_id": api_id, "status": 401, "hour": "2026-12-02T11:00:00Z", "count": 1},
        ],
        **extra,
    }


def test_refusals_are_added_once_per_batch(client: TestClient, cluster_headers: dict[str, str]) -> None:
    api = make_api(client, "shop", base_path="/shop", auth="api_key")
    for _ in range(2):  # the same batch again (its 2xx was lost): added once
        r = client.post(USAGE, json=_batch("b-1", api["id"]), headers=cluster_headers)
        assert r.status_code == 200, r.text
    assert client.post(USAGE, json=_batch("b-2", api["id"]), headers=cluster_headers).status_code == 200
    with client.app.state.sessions() as s:  # type: ignore[attr-defined]
        since = datetime(2026, 12, 2, tzinfo=UTC)
        assert refusals_since(session=s, since=since) == {api["id"]: {401: 8, 429: 4}}
        later = datetime(2026, 12, 2, 11, tzinfo=UTC)
        assert refusals_since(session=s, since=later) == {api["id"]: {401: 2, 429: 4}}


def test_malformed_refusals_are_refused(client: TestClient, cluster_headers: dict[str, str]) -> None:
    bad = [
        {"api_id": "a", "status": 200, "hour": "2026-12-02T10:00:00Z", "count": 1},  # not a refusal
        {"api_id": "a", "status": 401, "hour": "2026-12-02T10:30:00Z", "count": 1},  # not an hour's start
        {"api_id": "a", "status": 401, "hour": "2026-12-02T10:00:00Z", "count": 0},
    ]
    for entry in bad:
        r = client.post(USAGE, json={"batch_id": "bad", "counts": [], "refusals": [entry]}, headers=cluster_headers)
        assert r.status_code == 422, r.text
