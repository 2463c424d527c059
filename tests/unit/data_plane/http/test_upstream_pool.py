"""data_plane/http/upstream.py's ConnectionPool: idle connections past keepalive_timeout are never reused.

The pool's clock is injected; connections get a fake transport that records whether it was closed.
The compiler part: upstreams sharing a host:port share one pool, whose timeout is the smallest.
"""

from __future__ import annotations

import asyncio
from typing import Any

from data_plane.compiler import compile_snapshot
from data_plane.http.upstream import ConnectionPool, UpstreamConnection
from data_plane.snapshot import DEFAULT_KEEPALIVE_TIMEOUT, Snapshot, Target, Upstream


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def _pool(keepalive: float = 4.0) -> tuple[ConnectionPool, Clock]:
    clock = Clock()
    return ConnectionPool("127.0.0.1", 9000, keepalive_timeout=keepalive, clock=clock), clock


def _released(pool: ConnectionPool) -> tuple[UpstreamConnection, FakeTransport]:
    """A connection that served a response and went back to the pool (what release() does)."""
    conn = UpstreamConnection(pool)
    transport = FakeTransport()
    conn.connection_made(transport)
    pool.count += 1  # as pool.connect() counts it
    conn.release()
    return conn, transport


def test_a_connection_idle_less_than_the_timeout_is_reused() -> None:
    pool, clock = _pool(4.0)
    conn, transport = _released(pool)
    clock.now += 3.9
    assert pool.get_idle() is conn and not transport.closed


def test_a_connection_idle_past_the_timeout_is_closed_not_reused() -> None:
    pool, clock = _pool(4.0)
    old, old_t = _released(pool)
    clock.now += 1.0
    new, new_t = _released(pool)
    clock.now += 3.5  # old: 4.5 s idle, new: 3.5 s
    assert pool.get_idle() is new and not new_t.closed
    assert pool.get_idle() is None  # the older one is expired: closed, not handed out
    assert old_t.closed and old.closed
    assert pool.count == 1  # its slot is free at once (max_connections), not after connection_lost


def test_when_the_newest_idle_connection_expired_all_are_closed() -> None:
    pool, clock = _pool(0.5)
    conns = [_released(pool) for _ in range(3)]
    clock.now += 0.5
    assert pool.get_idle() is None
    assert all(t.closed for _, t in conns) and not pool.idle and pool.count == 0


def test_the_idle_clock_restarts_each_time_a_connection_comes_back() -> None:
    pool, clock = _pool(4.0)
    conn, transport = _released(pool)
    for _ in range(5):  # busy every 3 s: always reused, however old the connection
        clock.now += 3.0
        assert pool.get_idle() is conn
        conn.release()
    assert not transport.closed


def test_the_sweep_closes_expired_connections_nobody_asked_for() -> None:
    pool, clock = _pool(4.0)
    old, old_t = _released(pool)
    clock.now += 2.0
    new, new_t = _released(pool)
    clock.now += 2.0  # old: 4 s idle, new: 2 s
    assert pool.expire_idle() == 1
    assert old_t.closed and not new_t.closed and list(pool.idle) == [new]
    clock.now += 2.0
    assert pool.expire_idle() == 1 and new_t.closed and not pool.idle
    assert pool.expire_idle() == 0


def _snapshot(*upstreams: Upstream) -> Snapshot:
    return Snapshot(revision=1, upstreams=upstreams).sealed()


def test_shared_pools_take_the_smallest_keepalive_timeout_and_follow_config_changes() -> None:
    shared = Target(id="t1", host="10.0.0.1", port=80)
    alone = Target(id="t3", host="10.0.0.2", port=80)
    a = Upstream(id="a", name="a", targets=(shared,), keepalive_timeout=1.5)
    b = Upstream(id="b", name="b", targets=(Target(id="t2", host="10.0.0.1", port=80), alone))
    cfg = compile_snapshot(_snapshot(a, b))
    assert cfg.pools[("10.0.0.1", 80, "")].keepalive_timeout == 1.5  # a's, smaller than b's default
    assert cfg.pools[("10.0.0.2", 80, "")].keepalive_timeout == DEFAULT_KEEPALIVE_TIMEOUT == 4.0

    # The pool survives the swap (warm connections kept) and takes the new timeout.
    pool = cfg.pools[("10.0.0.1", 80, "")]
    again = compile_snapshot(_snapshot(Upstream(id="a", name="a", targets=(shared,), keepalive_timeout=9.0), b), cfg)
    assert again.pools[("10.0.0.1", 80, "")] is pool and pool.keepalive_timeout == 4.0  # b's default is now smaller
