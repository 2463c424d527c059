"""Usage metering from the exchange, on fake transports (tests/fakes.py): an admitted request of a
known customer is counted exactly once, when it ends, with the status class it ended on, whichever
way it ends; a request refused by authentication or by the plan's limits is not counted."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from data_plane import snapshot as snap
from tests.fakes import Gateway, pool_connection, response, upstream_with_targets

KEY = "tg_metering_0123456789abcdefghijklmnopqrstuvwxyz"
OTHER_KEY = "tg_metering_unknown_0123456789abcdefghijklmnopqrs"


def _snapshot(quota: int) -> snap.Snapshot:
    routes = (
        snap.Route(id="items", path="/items/{id}", upstream_id="u", read_timeout=1.0),
        snap.Route(id="cached", path="/cached", upstream_id="u", policies={"cache": {"ttl": 60}}),
        snap.Route(id="ws", path="/ws", upstream_id="u"),
    )
    api = snap.Api(id="a", name="shop", auth="api_key", routes=routes)
    customer = snap.Customer(id="c1", name="one", plan_id="gold")
    key = snap.ApiKey(id="k", customer_id="c1", key_hash=hashlib.sha256(KEY.encode()).hexdigest(), prefix=KEY[:11])
    plan = snap.Plan(id="gold", name="gold", quota=snap.PlanQuota(limit=quota, period="DAY"), apis=(snap.PlanApi("a"),))
    return snap.Snapshot(
        revision=1,
        upstreams=(upstream_with_targets(1),),
        apis=(api,),
        customers=(customer,),
        keys=(key,),
        plans=(plan,),
    ).sealed()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(_snapshot(quota=100), tmp_path)
    yield gw
    gw.close()


def _get(path: str, key: str = KEY, extra: bytes = b"") -> bytes:
    return b"GET %s HTTP/1.1\r\nhost: a\r\nx-api-key: %s\r\n%s\r\n" % (path.encode(), key.encode(), extra)


def counted(gw: Gateway) -> dict[tuple[str, str, str, str, int], int]:
    """The meter's counts without the hour: (customer, api, route, plan, status class) -> requests."""
    metering = gw.worker.metering
    assert metering is not None
    out: dict[tuple[str, str, str, str, int], int] = {}
    for (customer, api, route, plan, klass, _hour, _overage), n in metering.counts.items():
        out[(customer, api, route, plan, klass)] = out.get((customer, api, route, plan, klass), 0) + n
    return out


def _fresh_upstream(gw: Gateway) -> None:
    pool_connection(gw.worker, "t0")


def test_a_request_is_counted_when_it_ends_with_its_status_class(gateway: Gateway) -> None:
    gw = gateway
    gw.send(_get("/items/1"))
    assert counted(gw) == {}  # admitted, but not over yet: the status class is not known
    gw.respond(response(200, b"fine"))
    assert counted(gw) == {("c1", "a", "items", "gold", 2): 1}
    gw.send(_get("/items/2"))
    gw.respond(response(404, b"no such item"))
    assert counted(gw) == {("c1", "a", "items", "gold", 2): 1, ("c1", "a", "items", "gold", 4): 1}
    gw.received()


def test_refused_by_authentication_is_not_counted(gateway: Gateway) -> None:
    gateway.send(_get("/items/1", key=OTHER_KEY))
    assert b" 403 " in gateway.received()
    gateway.send(b"GET /items/1 HTTP/1.1\r\nhost: a\r\n\r\n")
    assert b" 401 " in gateway.received()
    assert counted(gateway) == {}


def test_refused_by_the_plan_is_not_counted(tmp_path: Path) -> None:
    gw = Gateway(_snapshot(quota=1), tmp_path)
    try:
        gw.send(_get("/items/1"))
        gw.respond(response(200))
        _fresh_upstream(gw)
        gw.send(_get("/items/2"))  # the quota of 1 is used up
        assert b"HTTP/1.1 429 " in gw.received()
        assert counted(gw) == {("c1", "a", "items", "gold", 2): 1}
        assert gw.worker.observer.limits["quota"] == 1
    finally:
        gw.close()


def test_a_truncated_response_is_counted_once_with_the_status_it_started(gateway: Gateway) -> None:
    gw = gateway
    gw.send(_get("/items/1"))
    conn = gw.upstream()
    conn.data_received(b"HTTP/1.1 503 X\r\ncontent-length: 100\r\n\r\npartial")
    conn.connection_lost(None)  # the upstream died mid-body: the client connection is cut
    assert counted(gw) == {("c1", "a", "items", "gold", 5): 1}
    gw.client.connection_lost(None)  # ... and the client's side going away later adds nothing
    assert counted(gw) == {("c1", "a", "items", "gold", 5): 1}


def test_a_client_gone_before_the_answer_is_counted_as_4xx(gateway: Gateway) -> None:
    gw = gateway
    gw.send(_get("/items/1"))
    gw.client.connection_lost(None)
    assert counted(gw) == {("c1", "a", "items", "gold", 4): 1}  # 499


def test_an_upstream_timeout_is_counted_as_5xx(gateway: Gateway) -> None:
    gw = gateway
    gw.send(_get("/items/1"))
    ex = gw.exchange
    ex.check_timeout(gw.loop.time())
    ex.check_timeout(gw.loop.time() + 5)  # read timeout 1 s: 504
    assert b" 504 " in gw.received()
    assert counted(gw) == {("c1", "a", "items", "gold", 5): 1}


def test_a_malformed_rest_of_an_admitted_request_is_still_counted(gateway: Gateway) -> None:
    gw = gateway
    gw.send(_get("/items/1", extra=b"transfer-encoding: chunked\r\n") + b"zz\r\n")  # not a chunk size
    assert b" 400 " in gw.received()
    assert counted(gw) == {("c1", "a", "items", "gold", 4): 1}
    gw.client.connection_lost(None)
    assert counted(gw) == {("c1", "a", "items", "gold", 4): 1}


def test_an_upgrade_is_counted_once_as_1xx(gateway: Gateway) -> None:
    gw = gateway
    gw.send(_get("/ws", extra=b"connection: upgrade\r\nupgrade: websocket\r\n"))
    gw.respond(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n")
    assert counted(gw) == {("c1", "a", "ws", "gold", 1): 1}
    gw.client.connection_lost(None)  # the tunnel closes: not a second request
    assert counted(gw) == {("c1", "a", "ws", "gold", 1): 1}


def test_a_response_cache_hit_is_counted_like_any_admitted_request(gateway: Gateway) -> None:
    gw = gateway
    gw.send(_get("/cached"))
    gw.respond(response(200, b"stored", b"cache-control: max-age=60\r\n"))
    first = gw.received()
    assert b"x-cache: MISS" in first
    gw.send(_get("/cached"))  # answered from the cache, without the upstream
    assert b"x-cache: HIT" in gw.received()
    assert counted(gw) == {("c1", "a", "cached", "gold", 2): 2}
