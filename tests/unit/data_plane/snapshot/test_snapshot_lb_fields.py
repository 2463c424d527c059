"""Snapshot 1.1 fields: round trip, validation naming the field, 1.0 documents keep their hash."""

from __future__ import annotations

import pytest

from data_plane.snapshot import Snapshot, SnapshotError

BASE = {
    "schema_version": "1.0",
    "revision": 3,
    "upstreams": [{"id": "u", "name": "u", "targets": [{"id": "t", "host": "127.0.0.1", "port": 9000}]}],
    "apis": [{"id": "a", "name": "a", "routes": [{"id": "r", "path": "/x", "upstream_id": "u"}]}],
}


def test_a_1_0_document_keeps_its_hash() -> None:
    snap = Snapshot.from_dict(BASE)
    again = Snapshot.from_dict(snap.to_dict())
    assert again.hash == snap.hash
    assert snap.upstreams[0].health_check is None and snap.upstreams[0].hash_on == "ip"


def test_new_fields_round_trip_and_change_the_hash() -> None:
    doc = {
        **BASE,
        "schema_version": "1.1",
        "upstreams": [
            {
                **BASE["upstreams"][0],
                "algorithm": "consistent_hash",
                "hash_on": "header",
                "hash_key": "x-user",
                "health_check": {"path": "/health", "interval": 1, "unhealthy_threshold": 2},
                "passive": {"consecutive_failures": 2, "statuses": [500]},
                "panic": True,
                "total_timeout": 9,
                "max_connections": 4,
            }
        ],
        "apis": [{**BASE["apis"][0], "routes": [{**BASE["apis"][0]["routes"][0], "read_timeout": 2}]}],
    }
    snap = Snapshot.from_dict(doc)
    u = snap.upstreams[0]
    assert u.health_check is not None and u.health_check.path == "/health" and u.health_check.interval == 1.0
    assert u.passive is not None and u.passive.statuses == (500,)
    assert (u.panic, u.total_timeout, u.max_connections, u.hash_key) == (True, 9.0, 4, "x-user")
    assert snap.apis[0].routes[0].read_timeout == 2.0
    assert Snapshot.from_dict(snap.to_dict()) == snap
    assert snap.hash != Snapshot.from_dict(BASE).hash


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"hash_on": "header"}, "hash_key"),
        ({"hash_on": "moon"}, "hash_on"),
        ({"health_check": {"path": "no-slash"}}, "health_check.path"),
        ({"health_check": {"healthy_threshold": 0}}, "thresholds"),
        ({"passive": {"max_ejection_percent": 101}}, "passive.max_ejection_percent"),
        ({"total_timeout": 0}, "total_timeout"),
        ({"max_connections": -1}, "max_connections"),
    ],
)
def test_invalid_fields_are_named(patch: dict[str, object], field: str) -> None:
    doc = {**BASE, "upstreams": [{**BASE["upstreams"][0], **patch}]}
    with pytest.raises(SnapshotError, match=field.replace(".", r"\.")):
        Snapshot.from_dict(doc)


def test_keepalive_timeout_round_trips_and_is_hashed_only_when_not_the_default() -> None:
    # 1.5: an older document (a 1.4 worker's cache file) has no keepalive_timeout and keeps its hash.
    old = Snapshot.from_dict({**BASE, "schema_version": "1.4"})
    assert old.upstreams[0].keepalive_timeout == 4.0
    assert "keepalive_timeout" not in old.content()["upstreams"][0]
    explicit_default = {
        **BASE,
        "schema_version": "1.4",
        "upstreams": [{**BASE["upstreams"][0], "keepalive_timeout": 4}],
    }
    assert Snapshot.from_dict(explicit_default).hash == old.hash

    doc = {**BASE, "schema_version": "1.5", "upstreams": [{**BASE["upstreams"][0], "keepalive_timeout": 1.5}]}
    snap = Snapshot.from_dict(doc)
    assert snap.upstreams[0].keepalive_timeout == 1.5
    assert Snapshot.from_dict(snap.to_dict()) == snap
    assert snap.hash != Snapshot.from_dict({**doc, "upstreams": [BASE["upstreams"][0]]}).hash


@pytest.mark.parametrize("value", [0, -1, "4", None])
def test_keepalive_timeout_must_be_a_positive_number(value: object) -> None:
    doc = {**BASE, "upstreams": [{**BASE["upstreams"][0], "keepalive_timeout": value}]}
    with pytest.raises(SnapshotError, match="keepalive_timeout"):
        Snapshot.from_dict(doc)
