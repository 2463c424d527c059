"""The control plane's usage collector against a real Redis (SQLite and PostgreSQL): live hashes are
renamed and applied once, a batch a dead replica left renamed is applied by the next sweep, one left
after its commit is not applied twice, status moves net out, the marker tells workers to count in Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from control_plane.usage_collector import MARKER_TTL, UsageCollector
from tests.helpers import port_open, require_service
from tests.integration.control_plane.factories import created, make_api, make_route, make_upstream

REDIS = "redis://127.0.0.1:6379/14"


@pytest.fixture
def r() -> Iterator[tuple[redis.Redis, str]]:
    require_service("Redis", port_open(6379), "127.0.0.1:6379")
    conn = redis.Redis.from_url(REDIS)
    prefix = f"tgcoll:{uuid.uuid4().hex}:"
    yield conn, prefix
    keys = list(conn.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        conn.delete(*keys)
    conn.close()


def _world(client: TestClient) -> tuple[str, str, str]:
    up = make_upstream(client)
    api = make_api(client, "shop", base_path="/shop", auth="api_key")
    route = make_route(client, api["id"], up["id"], "/other")
    customer = created(client.post("/v1/customers", json={"name": "acme"}))
    return customer["id"], api["id"], route["id"]


def _hour() -> int:
    return int(datetime.now(UTC).timestamp() // 3600) * 3600


def _sweep(client: TestClient, prefix: str) -> int:
    collector = UsageCollector(client.app.state.sessions, url=REDIS, prefix=prefix)  # type: ignore[attr-defined]

    async def run() -> int:
        try:
            return await collector.sweep()
        finally:
            await collector.stop()

    return asyncio.run(run())


def _requests_today(client: TestClient, customer_id: str) -> int:
    day = datetime.now(UTC).date().isoformat()
    r = client.get(f"/v1/customers/{customer_id}/usage", params={"start": day, "end": day})
    assert r.status_code == 200, r.text
    return int(r.json()["days"][0]["requests"])


def _classes(client: TestClient, customer_id: str) -> dict[str, int]:
    day = datetime.now(UTC).date().isoformat()
    r = client.get(
        "/v1/usage/export",
        params={"start": day, "end": day, "format": "jsonl", "granularity": "hour", "customer_id": customer_id},
    )
    assert r.status_code == 200, r.text
    out: dict[str, int] = {}
    for line in r.text.splitlines():
        row: dict[str, Any] = json.loads(line)
        out[row["status_class"]] = out.get(row["status_class"], 0) + int(row["requests"])
    return {k: v for k, v in out.items() if v}


def test_live_hash_collected_once_and_marker_set(client: TestClient, r: tuple[redis.Redis, str]) -> None:
    conn, prefix = r
    cid, api, route = _world(client)
    key = f"{prefix}{{{cid}}}:u"
    conn.hset(key, mapping={f"{api}|{route}||{_hour()}|2|0": 40, f"{api}|{route}||{_hour()}|5|0": 2})
    assert _sweep(client, prefix) == 42
    assert _requests_today(client, cid) == 42
    assert _classes(client, cid) == {"2xx": 40, "5xx": 2}
    assert not conn.exists(key) and not list(conn.scan_iter(match=f"{prefix}*:uc:*"))
    assert conn.get(f"{prefix}usage:collector") is not None
    assert 0 < conn.ttl(f"{prefix}usage:collector") <= MARKER_TTL
    assert _sweep(client, prefix) == 0  # nothing new: nothing added
    assert _requests_today(client, cid) == 42


def test_renamed_batch_left_by_a_dead_replica(client: TestClient, r: tuple[redis.Redis, str]) -> None:
    conn, prefix = r
    cid, api, route = _world(client)
    batch = uuid.uuid4().hex
    left = f"{prefix}{{{cid}}}:uc:{batch}"
    fields = {f"{api}|{route}||{_hour()}|2|0": 7}
    conn.hset(left, mapping=fields)  # renamed, then the replica died before applying it
    assert _sweep(client, prefix) == 7
    assert _requests_today(client, cid) == 7
    conn.hset(left, mapping=fields)  # applied, then the replica died before deleting it
    _sweep(client, prefix)
    assert _requests_today(client, cid) == 7  # its batch id was recorded: not applied twice
    assert not conn.exists(left)


def test_status_move_after_collection_nets_out(client: TestClient, r: tuple[redis.Redis, str]) -> None:
    conn, prefix = r
    cid, api, route = _world(client)
    key = f"{prefix}{{{cid}}}:u"
    field = f"{api}|{route}||{_hour()}"
    conn.hincrby(key, f"{field}|5|0", 3)  # three admitted, still running
    _sweep(client, prefix)
    assert _classes(client, cid) == {"5xx": 3}
    for _ in range(3):  # they end 2xx after their provisional counts were collected
        conn.hincrby(key, f"{field}|5|0", -1)
        conn.hincrby(key, f"{field}|2|0", 1)
    _sweep(client, prefix)
    assert _classes(client, cid) == {"2xx": 3}
    assert _requests_today(client, cid) == 3


def test_unreadable_field_is_skipped(client: TestClient, r: tuple[redis.Redis, str]) -> None:
    conn, prefix = r
    cid, api, route = _world(client)
    conn.hset(f"{prefix}{{{cid}}}:u", mapping={"garbage": 5, f"{api}|{route}||notanhour|2|0": 4})
    assert _sweep(client, prefix) == 0
    assert _requests_today(client, cid) == 0
