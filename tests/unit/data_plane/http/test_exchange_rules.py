"""The exchange's retry and timeout rules, on fake transports (tests/fakes.py): no sockets, no sleeps.

Each test drives a real worker and client connection: a request goes in, the test plays the upstream
(a response, a lost connection) or moves the clock (``check_timeout(now)``), and reads what the
client got and what each target was sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from data_plane import snapshot as snap
from tests.fakes import Gateway, one_api_snapshot, pool_connection, response, upstream_with_targets

GET = b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n"
POST = b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n\r\nhi"
POST_NO_BODY = b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n"  # only idempotency decides
POST_WITH_KEY = b"POST /x HTTP/1.1\r\nhost: a\r\nidempotency-key: k1\r\ncontent-length: 0\r\n\r\n"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    gws: list[Gateway] = []

    def make(**upstream_fields: object) -> Gateway:
        gw = Gateway(one_api_snapshot(upstream_with_targets(2, **upstream_fields)), tmp_path / str(len(gws)))
        gws.append(gw)
        return gw

    yield make  # type: ignore[misc]
    for gw in gws:
        gw.close()


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def _target(gw: Gateway) -> str:
    t = gw.exchange.target
    assert t is not None
    return t.id


# ---------------------------------------------------------------- retries


def test_a_502_to_an_idempotent_request_is_retried_on_another_target(gateway) -> None:
    gw = gateway(retries=1)
    gw.send(GET)
    first = _target(gw)
    gw.respond(response(502, b"bad"))
    second = _target(gw)
    assert second != first
    assert gw.sent_upstream(second).startswith(b"GET /x HTTP/1.1\r\n")
    gw.respond(response(200, b"fine"))
    out = gw.received()
    assert _status(out) == 200 and out.endswith(b"fine")


def test_a_502_to_a_post_is_the_answer(gateway) -> None:
    gw = gateway(retries=1)
    gw.send(POST_NO_BODY)
    first = _target(gw)
    gw.respond(response(502, b"upstream says"))
    out = gw.received()
    assert _status(out) == 502 and out.endswith(b"upstream says")  # passed through, not retried
    other = "t1" if first == "t0" else "t0"
    assert gw.sent_upstream(other) == b""


def test_an_idempotency_key_makes_a_post_retryable(gateway) -> None:
    gw = gateway(retries=1)
    gw.send(POST_WITH_KEY)
    first = _target(gw)
    gw.respond(response(503))
    second = _target(gw)
    assert second != first
    assert gw.sent_upstream(second).startswith(b"POST /x HTTP/1.1\r\n")  # sent again
    gw.respond(response(200, b"once"))
    assert _status(gw.received()) == 200


def test_no_retry_without_budget(gateway) -> None:
    gw = gateway(retries=0)
    gw.send(GET)
    gw.respond(response(503, b"busy"))
    assert _status(gw.received()) == 503


def test_a_connection_lost_before_the_response_retries_a_get_but_not_a_post(gateway) -> None:
    gw = gateway(retries=1)
    gw.send(GET)
    first = _target(gw)
    conn = gw.upstream()
    conn.reused = False  # a fresh connection: its loss says something about the target
    conn.connection_lost(ConnectionResetError())
    assert _target(gw) != first
    gw.respond(response(200))
    assert _status(gw.received()) == 200

    gw.send(POST_NO_BODY)
    conn = gw.upstream()
    conn.reused = False
    conn.connection_lost(ConnectionResetError())
    out = gw.received()
    assert _status(out) == 502 and b"upstream connection failed" in out  # the POST may have run: not resent


def test_a_stale_pooled_connection_is_resent_outside_the_budget_for_idempotent_requests(gateway) -> None:
    gw = gateway(retries=0)
    gw.send(GET)
    pool_connection(gw.worker, _target(gw))  # one more idle connection
    gw.upstream().connection_lost(None)  # reused, closed by the upstream before any response byte
    assert gw.exchange.stale_retries == 1
    assert gw.exchange.tried is None  # not excluded: a stale connection says nothing about the target
    gw.respond(response(200))
    assert _status(gw.received()) == 200


def test_a_stale_pooled_connection_does_not_resend_a_post(gateway) -> None:
    gw = gateway(retries=3)
    gw.send(POST_NO_BODY)
    gw.upstream().connection_lost(None)
    assert _status(gw.received()) == 502


def test_no_retry_once_body_bytes_went_upstream(gateway) -> None:
    gw = gateway(retries=3)
    gw.send(b"PUT /x HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\n\r\nab")  # PUT is idempotent
    ex = gw.exchange
    assert ex.body_started
    assert not ex.may_retry(sent=True)
    assert not ex.may_retry(sent=False)
    gw.send(b"cd")
    gw.respond(response(503))
    assert _status(gw.received()) == 503  # the body is streamed, not kept for a replay


def test_no_retry_after_the_total_deadline(gateway) -> None:
    gw = gateway(retries=3, total_timeout=5.0)
    gw.send(GET)
    ex = gw.exchange
    assert ex.may_retry(sent=True)
    ex.deadline = gw.loop.time() - 0.001
    assert not ex.may_retry(sent=True)
    assert ex.may_retry(sent=True, stale=True)  # a stale resend is not a retry: no deadline check
    ex.stale_retries = 2
    assert not ex.may_retry(sent=True, stale=True)


# ---------------------------------------------------------------- timeouts


def test_read_timeout_is_a_504_once_the_upstream_was_idle_that_long(gateway) -> None:
    gw = gateway(read_timeout=2.0)
    gw.send(GET)
    ex = gw.exchange
    now = gw.loop.time()
    ex.check_timeout(now + 1.9)  # idle since the request went out, not for long enough
    assert not ex.finished
    ex.check_timeout(now + 2.01)
    assert ex.finished and _status(gw.received()) == 504


def test_upstream_activity_keeps_the_read_timeout_away(gateway) -> None:
    gw = gateway(read_timeout=2.0)
    gw.send(GET)
    ex = gw.exchange
    now = gw.loop.time()
    gw.respond(b"HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\n12345")
    for step in range(1, 6):  # a look every 1.5 s, each after some bytes: 7.5 s in all, never idle 2 s
        ex.check_timeout(now + 1.5 * step)
        gw.respond(b"6" if step < 5 else b"7890")
    out = gw.received()
    assert _status(out) == 200 and out.endswith(b"12345" + b"6666" + b"7890")


def test_total_timeout_ends_a_busy_exchange(gateway) -> None:
    gw = gateway(read_timeout=10.0, total_timeout=1.0)
    gw.send(GET)
    ex = gw.exchange
    ex.check_timeout(gw.loop.time() + 1.01)
    assert _status(gw.received()) == 504


def test_total_timeout_mid_response_cuts_the_connection(gateway) -> None:
    gw = gateway(total_timeout=1.0)
    gw.send(GET)
    ex = gw.exchange
    gw.respond(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n123")
    ex.check_timeout(gw.loop.time() + 1.01)
    assert gw.client_transport.aborted  # a truncated response must not look complete
    assert gw.client.active is None


def test_a_stalled_body_is_a_408_and_never_blamed_on_the_target(gateway) -> None:
    gw = gateway(read_timeout=1.0, passive=snap.Passive(consecutive_failures=1))
    gw.send(b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nabc")
    ex = gw.exchange
    target = ex.target
    assert target is not None
    now = gw.loop.time()
    ex.check_timeout(now + 30.0)  # far past the read timeout: only the body timeout runs
    assert not ex.finished  # (and this look saw the 3 bytes: the body clock restarts here)
    ex.check_timeout(now + 30.0 + gw.worker.settings.body_timeout - 0.01)
    assert not ex.finished
    ex.check_timeout(now + 30.0 + gw.worker.settings.body_timeout + 0.01)
    out = gw.received()
    assert _status(out) == 408 and b"connection: close" in out
    assert gw.client_transport.eof  # FIN, then the unread rest of the body is read and dropped
    assert target.state.failures == 0 and target.state.healthy


def test_a_failed_connection_counts_against_the_target_when_the_body_was_complete(gateway) -> None:
    gw = gateway(passive=snap.Passive(consecutive_failures=2))
    gw.send(POST)
    target = gw.exchange.target
    assert target is not None
    conn = gw.upstream()
    conn.reused = False
    conn.connection_lost(ConnectionResetError())
    assert _status(gw.received()) == 502
    assert target.state.failures == 1


def test_an_early_response_while_the_body_is_owed_is_not_retried(gateway) -> None:
    gw = gateway(retries=2)
    gw.send(b"PUT /x HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\n\r\n")
    ex = gw.exchange
    assert not ex.body_started and not ex.body_done
    gw.respond(response(503, b"early"))
    out = gw.received()
    assert _status(out) == 503 and out.endswith(b"early")


def test_upgrade_opens_a_tunnel_owned_by_the_connection(gateway) -> None:
    gw = gateway()
    gw.send(b"GET /ws HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\nearly-bytes")
    target = _target(gw)
    conn = gw.upstream()
    assert gw.client_transport.paused  # bytes after the upgrade request wait for the 101
    conn.data_received(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\nhello")
    out = gw.received()
    assert out.startswith(b"HTTP/1.1 101") and out.endswith(b"\r\n\r\nhello")
    assert gw.sent_upstream(target).endswith(b"early-bytes")
    assert not gw.client_transport.paused
    gw.send(b"more")
    assert gw.sent_upstream(target) == b"more"
