"""HTTP/1.1 correctness through a real worker: smuggling/malformed requests, pipelining, hop-by-hop
headers, WebSocket tunnelling, streaming memory, slow clients and graceful shutdown."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.harness import Cluster, raw_exchange, snapshot_file, targets, wait_until

MB = 1024 * 1024
WS_IDLE = 0.5  # read_timeout of the /ws route: an idle tunnel is closed after it


@pytest.fixture(scope="module")
def gw(module_cluster: Cluster) -> dict[str, Any]:
    c = module_cluster
    lab = c.lab("h")
    solo = c.lab("o")  # its own host:port, so its connection pool is used by the "one" upstream alone
    ws = c.lab("w")  # its own process, so its count of open tunnels is the idle-tunnel tests' alone
    upstreams = [
        {"id": "h", "name": "h", "targets": targets(lab)},
        {"id": "t", "name": "t", "read_timeout": 5.0, "total_timeout": 0.5, "targets": targets(lab)},
        {"id": "one", "name": "one", "max_connections": 1, "targets": targets(solo)},
        {"id": "w", "name": "w", "targets": targets(ws)},  # default read_timeout (60 s): the route's wins
    ]
    mounts = {"/h": "h", "/t": "t", "/one": "one", "/ws": "w"}
    route_fields = {"/ws": {"read_timeout": WS_IDLE}}
    snap = snapshot_file(c.tmp / "http-snapshot.json", upstreams, mounts, route_fields)
    worker = c.worker(snapshot=snap, name="http-worker")
    return {"worker": worker, "lab": lab, "solo": solo, "ws": ws}


SMUGGLING = {
    "cl_and_te": b"POST /h/x HTTP/1.1\r\nhost: t\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_xchunked": b"POST /h/x HTTP/1.1\r\nhost: t\r\ntransfer-encoding: xchunked\r\n\r\n0\r\n\r\n",
    "te_chunked_identity": b"POST /h/x HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "te_two_fields": b"POST /h/x HTTP/1.1\r\nhost: t\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n"
    b"0\r\n\r\n",
    "te_http10": b"POST /h/x HTTP/1.0\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    "cl_list": b"POST /h/x HTTP/1.1\r\nhost: t\r\ncontent-length: 1, 2\r\n\r\nab",
    "cl_negative": b"POST /h/x HTTP/1.1\r\nhost: t\r\ncontent-length: -1\r\n\r\n",
    "cl_twice": b"POST /h/x HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nabc",
    "chunk_negative": b"POST /h/x HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n-1\r\nab\r\n0\r\n\r\n",
    "chunk_huge": b"POST /h/x HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\nfffffffffffffffffff\r\nab\r\n",
    "nul_in_field": b"GET /h/x HTTP/1.1\r\nhost: t\r\nx-a: a\x00b\r\n\r\n",
    "obs_fold": b"GET /h/x HTTP/1.1\r\nhost: t\r\nx-a: a\r\n b\r\n\r\n",
    "bare_lf": b"GET /h/x HTTP/1.1\nhost: t\n\n",
    "bare_cr": b"GET /h/x HTTP/1.1\r\nhost: t\r\nx-a: a\rx-b: b\r\n\r\n",
    "space_before_colon": b"GET /h/x HTTP/1.1\r\nhost: t\r\ntransfer-encoding : chunked\r\n\r\n0\r\n\r\n",
    "connect": b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nhost: 127.0.0.1:22\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(SMUGGLING))
def test_malformed_request_is_rejected_and_never_forwarded(gw, name: str) -> None:
    lab = gw["lab"]
    before = lab.count()
    out, closed = raw_exchange(gw["worker"].port, SMUGGLING[name])
    assert out.startswith(b"HTTP/1.1 400 "), out[:200]
    assert b"x-request-id: " in out.lower()
    assert closed
    assert lab.count() == before


def _read_responses(sock: socket.socket, n: int) -> list[tuple[int, dict[str, str], bytes]]:
    buf = b""
    out = []
    sock.settimeout(5)
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, "connection closed early"
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers["content-length"])
        while len(buf) < length:
            buf += sock.recv(65536)
        out.append((int(lines[0].split()[1]), headers, buf[:length]))
        buf = buf[length:]
    return out


def test_pipelined_requests_are_answered_in_order(gw) -> None:
    with socket.create_connection(("127.0.0.1", gw["worker"].port)) as s:
        s.sendall(b"".join(b"GET /h/p%d HTTP/1.1\r\nhost: t\r\n\r\n" % i for i in range(3)))
        responses = _read_responses(s, 3)
        # The connection is still usable afterwards.
        s.sendall(b"GET /h/p3 HTTP/1.1\r\nhost: t\r\n\r\n")
        responses += _read_responses(s, 1)
    assert [status for status, _, _ in responses] == [200] * 4
    assert [json.loads(body)["path"] for _, _, body in responses] == ["/p0", "/p1", "/p2", "/p3"]


def test_hop_by_hop_headers_are_removed_both_ways(gw) -> None:
    r = httpx.get(
        f"{gw['worker'].url}/h/hop",
        headers={
            "connection": "keep-alive, x-conn-named",
            "x-conn-named": "drop me",
            "keep-alive": "timeout=5",
            "proxy-connection": "keep-alive",
            "te": "trailers, deflate",
            "x-end-to-end": "keep me",
        },
    )
    assert r.status_code == 200
    seen = dict(r.json()["headers"])
    for name in ("x-conn-named", "keep-alive", "proxy-connection", "connection", "upgrade", "transfer-encoding"):
        assert name not in seen, name
    assert seen["te"] == "trailers"
    assert seen["x-end-to-end"] == "keep me"
    assert seen["via"] == "1.1 tollgate"
    # Response direction: the backend sent connection: x-internal, x-internal, keep-alive, proxy-connection.
    for name in ("x-internal", "keep-alive", "proxy-connection"):
        assert name not in r.headers, name
    assert r.headers["x-public"] == "yes"
    assert r.headers["via"] == "1.1 tollgate"


def test_websocket_upgrade_is_tunnelled(gw) -> None:
    with socket.create_connection(("127.0.0.1", gw["worker"].port), timeout=5) as s:
        s.sendall(b"GET /h/ws HTTP/1.1\r\nhost: t\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\nhello")
        buf = b""
        while b"echo:hello" not in buf:
            chunk = s.recv(4096)
            assert chunk, buf
            buf += chunk
        head = buf.split(b"\r\n\r\n", 1)[0].lower()
        assert head.startswith(b"http/1.1 101")
        assert b"upgrade: websocket" in head and b"connection: upgrade" in head
        s.sendall(b"ping")
        got = b""
        while got != b"echo:ping":
            chunk = s.recv(4096)
            assert chunk
            got += chunk


def _open_tunnel(port: int, query: bytes) -> tuple[socket.socket, bytes]:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /ws/ws%s HTTP/1.1\r\nhost: t\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n" % query)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        assert chunk, buf
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s, rest


def _recv_exactly(s: socket.socket, n: int, got: bytes = b"") -> bytes:
    while len(got) < n:
        chunk = s.recv(4096)
        assert chunk, f"tunnel closed while active (got {got!r})"
        got += chunk
    return got


def _open_tunnels(lab: Any) -> int:
    return int(httpx.get(f"{lab.url}/__echo/count", timeout=2.0).json()["tunnels"])


@pytest.mark.parametrize("traffic", ["echo", "client_to_upstream", "upstream_to_client"])
def test_tunnel_stays_open_while_bytes_move_and_is_closed_once_idle(gw, traffic: str) -> None:
    """Bytes moving in either direction alone keep a tunnel open past its read timeout; once no byte
    moves for that long the gateway closes both sides (the client sees EOF, the backend its close)."""
    worker, lab = gw["worker"], gw["ws"]
    rounds = 8  # one every 0.2 s: 1.6 s of traffic, over three times the idle limit
    query = {"echo": b"", "client_to_upstream": b"?echo=0", "upstream_to_client": b"?echo=0&ticks=8&every=200"}
    s, rest = _open_tunnel(worker.port, query[traffic])
    with s:
        if traffic == "upstream_to_client":
            # The backend pushes a tick every 0.2 s; the client sends nothing.
            assert _recv_exactly(s, 4 * rounds, rest) == b"tick" * rounds
        else:
            for _ in range(rounds):
                time.sleep(0.2)  # the pace of the traffic under test
                s.sendall(b"ping")
                if traffic == "echo":
                    assert _recv_exactly(s, 9) == b"echo:ping"
        last_activity = time.monotonic()
        # Still open on both sides after 1.6 s: the client has no EOF waiting, the backend its tunnel.
        s.settimeout(0.05)
        with pytest.raises(TimeoutError):
            s.recv(4096)
        assert _open_tunnels(lab) == 1
        # Idle from here: closed within [1, 2] x the limit (the connection's timer looks every
        # read_timeout); 2 s of slack for a loaded machine.
        s.settimeout(2 * WS_IDLE + 2.0)
        assert s.recv(4096) == b"", "expected EOF from the gateway"
        idle_for = time.monotonic() - last_activity
    assert idle_for >= WS_IDLE * 0.8, idle_for  # not before the limit (0.8: clock granularity)
    wait_until(lambda: _open_tunnels(lab) == 0, timeout=5, what="the backend side of the tunnel to be closed")


def test_total_timeout_answers_504(gw) -> None:
    start = time.monotonic()
    r = httpx.get(f"{gw['worker'].url}/t/slow?ms=3000", timeout=10)
    assert r.status_code == 504 and r.json()["message"] == "upstream timed out"
    assert r.headers["x-request-id"] == r.json()["request_id"]
    assert time.monotonic() - start < 2.5  # the 5 s read timeout did not apply


def test_per_target_connection_limit_answers_503(gw) -> None:
    worker, lab = gw["worker"], gw["solo"]
    before = lab.count()
    with socket.create_connection(("127.0.0.1", worker.port), timeout=5) as held:
        held.sendall(b"GET /one/slow?ms=1500 HTTP/1.1\r\nhost: t\r\n\r\n")
        wait_until(lambda: lab.count() > before, what="the slow request to hold the one connection")
        r = httpx.get(f"{worker.url}/one/x")
        assert r.status_code == 503 and r.json()["message"] == "upstream connection limit reached"
        ((status, _, _),) = _read_responses(held, 1)
        assert status == 200
    assert httpx.get(f"{worker.url}/one/x").status_code == 200  # the connection went back to the pool


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class _PeakRss:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.base = _rss_kb(pid)
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss_kb(self.pid))

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 1024


def test_200mb_download_and_upload_stream_without_buffering(gw) -> None:
    worker = gw["worker"]
    size = 200 * MB
    pid = worker.proc.proc.pid  # type: ignore[union-attr]
    with _PeakRss(pid) as rss, socket.create_connection(("127.0.0.1", worker.port), timeout=30) as s:
        s.sendall(b"GET /h/download?bytes=%d HTTP/1.1\r\nhost: t\r\n\r\n" % size)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        head, body = buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200")
        received = len(body)
        while received < size:
            chunk = s.recv(1 << 20)
            assert chunk, received
            received += len(chunk)
        assert received == size

        block = b"u" * MB
        s.sendall(b"POST /h/upload HTTP/1.1\r\nhost: t\r\ncontent-length: %d\r\n\r\n" % size)
        for _ in range(200):
            s.sendall(block)
        ((status, _, body),) = _read_responses(s, 1)
        assert status == 200 and json.loads(body)["received"] == size
    print(f"worker RSS growth during 200 MB down + 200 MB up: {rss.growth_mb:.1f} MB")
    assert rss.growth_mb < 50, rss.growth_mb


@pytest.fixture
def drain_gw(cluster: Cluster) -> dict[str, Any]:
    lab = cluster.lab("slow")
    snap = snapshot_file(cluster.tmp / "drain.json", [{"id": "s", "name": "s", "targets": targets(lab)}], {"/s": "s"})
    env = {"TOLLGATE_HEADER_TIMEOUT": "0.5", "TOLLGATE_SHUTDOWN_TIMEOUT": "10"}
    worker = cluster.worker(snapshot=snap, name="drain-worker", env=env)
    return {"worker": worker, "lab": lab}


def test_slow_request_head_is_cut_off(drain_gw) -> None:
    worker = drain_gw["worker"]
    start = time.monotonic()
    out, closed = raw_exchange(worker.port, b"GET /s/x HTTP/1.1\r\nhost: t\r\nx-slow: ", timeout=5)
    assert closed and time.monotonic() - start < 4
    assert drain_gw["lab"].count() == 0


def test_sigterm_finishes_in_flight_request_and_refuses_new_ones(drain_gw) -> None:
    worker, lab = drain_gw["worker"], drain_gw["lab"]
    result: dict[str, Any] = {}

    def slow() -> None:
        r = httpx.get(f"{worker.url}/s/slow?ms=1500", timeout=10)
        result["status"] = r.status_code
        result["body"] = r.json()

    t = threading.Thread(target=slow)
    t.start()
    wait_until(lambda: lab.count() == 1, what="the slow request to reach the backend")
    worker.proc.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]

    def refused() -> bool:
        try:
            socket.create_connection(("127.0.0.1", worker.port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        return False

    wait_until(refused, timeout=5, what="the worker to stop accepting")
    t.join(timeout=10)
    assert result.get("status") == 200 and result["body"]["slow"] is True
    assert worker.proc.proc.wait(timeout=10) == 0  # type: ignore[union-attr]


def test_a_pipelined_chunked_body_behind_another_request_is_forwarded_framed(gw) -> None:
    # The second request's body is read (and buffered) while the first is in flight: it must reach
    # the backend re-framed, like a body that arrives after its request started. Sent unframed, its
    # data (which looks like the end of a body and a request) would be framing to the backend.
    data = b"0\r\n\r\nGET /h/smuggled HTTP/1.1\r\nhost: t\r\n\r\n"
    head = b"POST /h/upload HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"
    post = head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)
    with socket.create_connection(("127.0.0.1", gw["worker"].port), timeout=5) as s:
        s.sendall(b"GET /h/p0 HTTP/1.1\r\nhost: t\r\n\r\n" + post + b"GET /h/p2 HTTP/1.1\r\nhost: t\r\n\r\n")
        responses = _read_responses(s, 3)
    assert [status for status, _, _ in responses] == [200] * 3
    assert json.loads(responses[1][2])["received"] == len(data)
    assert json.loads(responses[2][2])["path"] == "/p2"
