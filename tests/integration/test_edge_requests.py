"""The worker at an internet edge (issue 13): one canonical path for routing, auth and upstream;
refusals answered from the head without waiting for a body; the body timeout; Expect; Host rules;
414/431; client faults never held against a target.  Raw bytes over real sockets to a real worker
behind a real control plane."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import pytest

from tests.integration.harness import Backend, Cluster, ControlPlane, Worker, create, wait_until

BODY_TIMEOUT = 2.0  # the worker's TOLLGATE_BODY_TIMEOUT
UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"


class Edge:
    def __init__(self, cp: ControlPlane, worker: Worker, backends: dict[str, Backend], key: str, lab_target: str):
        self.cp, self.worker, self.backends, self.key, self.lab_target = cp, worker, backends, key, lab_target

    def send(self, data: bytes, timeout: float = 8.0, *, check_closed: bool = True) -> tuple[int, bytes, bool]:
        """Send ``data`` on a new connection; read one response (by its Content-Length, or to the
        end of the stream) and whether the worker then closed the connection. ``(0, ...)`` when no
        response came before ``timeout``."""
        with socket.create_connection(("127.0.0.1", self.worker.port), timeout=timeout) as s:
            s.sendall(data)
            out = _read_response(s)
            if not out.startswith(b"HTTP/1.1 "):
                return 0, out, True
            if not check_closed:
                return int(out.split(b" ", 2)[1]), out, False
            s.settimeout(3.0)
            try:
                closed = s.recv(65536) == b""
            except TimeoutError:
                closed = False
            except ConnectionResetError:
                closed = True
            return int(out.split(b" ", 2)[1]), out, closed


def _read_response(s: socket.socket) -> bytes:
    out = b""
    try:
        while b"\r\n\r\n" not in out:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
        head, _, body = out.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        return head + b"\r\n\r\n" + body
    except (TimeoutError, ConnectionResetError):
        return out


@pytest.fixture(scope="module")
def edge(module_cluster: Cluster) -> Edge:
    c = module_cluster
    backends = {"keyed": c.echo("keyed"), "catch": c.echo("catch"), "lab": c.lab("edge-lab")}
    cp = c.control_plane()
    with cp.admin() as a:
        ups = {}
        for name, extra in (
            ("keyed", {}),
            ("catch", {}),
            # passive outlier detection that three failures in a row would trigger
            ("lab", {"read_timeout": 0.5, "passive": {"consecutive_failures": 3, "base_ejection_time": 60}}),
        ):
            up = create(a, "/v1/upstreams", {"name": f"{name}-svc", **extra})
            t = create(a, f"/v1/upstreams/{up['id']}/targets", {"host": "127.0.0.1", "port": backends[name].port})
            ups[name] = (up["id"], t["id"])
        zec = create(a, "/v1/apis", {"name": "zec", "base_path": "/zec", "auth": "api_key", "strip_base_path": False})
        create(a, f"/v1/apis/{zec['id']}/routes", {"path": "/{proxy+}", "upstream_id": ups["keyed"][0]})
        catch = create(a, "/v1/apis", {"name": "catch", "base_path": "/"})
        create(a, f"/v1/apis/{catch['id']}/routes", {"path": "/{proxy+}", "upstream_id": ups["catch"][0]})
        ro = create(a, "/v1/apis", {"name": "ro", "base_path": "/ro"})
        create(
            a, f"/v1/apis/{ro['id']}/routes", {"path": "/only-get", "methods": ["GET"], "upstream_id": ups["catch"][0]}
        )
        lab = create(a, "/v1/apis", {"name": "lab", "base_path": "/lab"})
        create(a, f"/v1/apis/{lab['id']}/routes", {"path": "/{proxy+}", "upstream_id": ups["lab"][0]})
        cust = create(a, "/v1/customers", {"name": "edge-customer", "api_ids": [zec["id"]]})
        key = create(a, f"/v1/customers/{cust['id']}/keys", {"name": "k"})["key"]
    worker = c.worker(cp, name="edge-worker", env={"TOLLGATE_BODY_TIMEOUT": str(BODY_TIMEOUT)})
    worker.wait_revision(cp.revision())
    return Edge(cp, worker, backends, key, ups["lab"][1])


def get(path: str, *headers: str, version: str = "1.1") -> bytes:
    lines = [f"GET {path} HTTP/{version}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def spellings_of_zec() -> list[str]:
    """``/zec/r`` with each of its letters percent-encoded (upper- and lower-case hex), and every
    unreserved character encoded inside a segment under ``/zec``: all the keyed API's."""
    out = []
    word = "/zec/r"
    for i, ch in enumerate(word):
        if ch == "/":
            continue
        for fmt in ("%{:02X}", "%{:02x}"):
            out.append(word[:i] + fmt.format(ord(ch)) + word[i + 1 :])
    for ch in UNRESERVED:
        out.append(f"/zec/a%{ord(ch):02X}b")
        out.append(f"/%7Aec/x%{ord(ch):02x}")
    out += ["//zec/r", "/zec//r", "///zec///r", "/%7a%65%63/r", "/%7A%65%63//r"]
    return out


REFUSED = [
    "/zec%2Fr",
    "/zec%2fr",
    "/%2Fzec/r",
    "/zec%5Cr",
    "/zec%5cr",
    "/zec\\r",
    "/\\zec/r",
    "/zec;x=y/r",
    "/zec/r;x=y",
    "/z%00ec/r",
    "/zec%00/r",
    "/zec%0d%0a/r",
    "/%C0%AFzec/r",  # overlong '/'
    "/zec%C0%AFr",
    "/%C0%AE%C0%AE/zec/r",  # overlong '..'
    "/%E0%80%AFzec/r",
    "/%FFzec/r",
    "/x/../zec/r",
    "/x/%2E%2E/zec/r",
    "/x/%2e./zec/r",
    "/./zec/r",
    "/zec%",
    "/zec%2",
    "/zec%zz/r",
    "/zec/r#frag",
]


def test_no_spelling_of_a_keyed_path_reaches_the_catch_all(edge: Edge) -> None:
    catch = edge.backends["catch"]
    before = catch.count()
    wrong = []
    for path in spellings_of_zec():
        status, out, _ = edge.send(get(path, "host: gw.test"), check_closed=False)
        if status != 401:  # the keyed API's answer to a request without a key
            wrong.append((path, status, out[:80]))
    for path in REFUSED:
        status, out, closed = edge.send(get(path, "host: gw.test"))
        if status != 400 or not closed:
            wrong.append((path, status, out[:80]))
    assert wrong == []
    assert catch.count() == before, "a spelling of /zec reached the catch-all API"


def test_the_upstream_gets_the_canonical_path(edge: Edge) -> None:
    r = httpx.get(f"{edge.worker.url}/%7Aec//%61%2a%7e", headers={"x-api-key": edge.key}, timeout=5)
    assert r.status_code == 200, r.text
    assert r.json()["server"] == "keyed"
    assert r.json()["path"] == "/zec/a%2A~"  # strip_base_path false: the whole canonical path


def test_the_catch_all_still_serves_its_own_paths(edge: Edge) -> None:
    cases = (("/other/%7Eme", "/other/~me"), ("/zecx/r", "/zecx/r"), ("/zec%2Dr", "/zec-r"), ("/f/a%2fb", "/f/a%2Fb"))
    for path, seen in cases:  # (an encoded slash inside one route either way stays encoded)
        r = httpx.get(f"{edge.worker.url}{path}", timeout=5)
        assert r.status_code == 200 and r.json()["server"] == "catch", (path, r.text)
        assert r.json()["path"] == seen


HEAD_REFUSALS = [
    ("unrouted", "POST /ro/missing HTTP/1.1", 404),
    ("method", "POST /ro/only-get HTTP/1.1", 405),
    ("no key", "POST /zec/r HTTP/1.1", 401),
    ("bad key", "POST /zec/r HTTP/1.1\r\nx-api-key: tg_nope_0123456789012345678901234567890123", 403),
]


@pytest.mark.parametrize(("name", "line", "status"), HEAD_REFUSALS, ids=[n for n, _, _ in HEAD_REFUSALS])
def test_a_refusal_from_the_head_does_not_wait_for_the_body(edge: Edge, name: str, line: str, status: int) -> None:
    # 10 of 100 announced bytes: an answer that waited for the body would be the body timeout's 408.
    data = f"{line}\r\nhost: gw.test\r\ncontent-length: 100\r\n\r\n".encode() + b"x" * 10
    got, out, closed = edge.send(data)
    assert got == status, out[:200]
    assert b"connection: close" in out.lower()
    assert closed


@pytest.mark.parametrize(("name", "line", "status"), HEAD_REFUSALS, ids=[n for n, _, _ in HEAD_REFUSALS])
def test_expect_100_continue_to_a_refused_request_gets_the_final_status(edge, name, line, status) -> None:
    data = f"{line}\r\nhost: gw.test\r\ncontent-length: 100\r\nexpect: 100-continue\r\n\r\n".encode()
    got, out, closed = edge.send(data)
    assert got == status, out[:200]  # not a 100, and no hang
    assert closed


def test_expect_100_continue_is_answered_by_the_gateway_once_admitted(edge: Edge) -> None:
    with socket.create_connection(("127.0.0.1", edge.worker.port), timeout=5) as s:
        s.sendall(b"POST /anything HTTP/1.1\r\nhost: gw.test\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n")
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"hello")
        out = b""
        while b"}" not in out:
            chunk = s.recv(65536)
            assert chunk
            out += chunk
    assert out.startswith(b"HTTP/1.1 200 ")
    echoed = json.loads(out.split(b"\r\n\r\n", 1)[1])
    assert echoed["body"] == "hello"
    assert "expect" not in echoed["headers"]  # the upstream is not asked for a second 100


def test_an_unknown_expectation_is_417(edge: Edge) -> None:
    status, _, closed = edge.send(b"GET /x HTTP/1.1\r\nhost: gw.test\r\nexpect: teapot\r\n\r\n")
    assert status == 417 and closed


def test_a_stalled_body_gets_408_and_the_connection_closes(edge: Edge) -> None:
    catch = edge.backends["catch"]
    before = catch.count()
    status, out, closed = edge.send(
        b"POST /anything HTTP/1.1\r\nhost: gw.test\r\ncontent-length: 100\r\n\r\n0123456789"
    )
    assert status == 408, out[:200]
    assert closed
    assert catch.count() == before  # the backend never got a complete request


@pytest.mark.parametrize(
    "data",
    [
        b"GET /x HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
        b"GET /x HTTP/1.1\r\nhost: gw.test\r\nhost: gw.test\r\n\r\n",
        b"GET /x HTTP/1.1\r\nuser-agent: t\r\n\r\n",
        b"GET /x HTTP/1.1\r\nhost: a b\r\n\r\n",
        b"GET /x HTTP/1.1\r\nhost: a/b\r\n\r\n",
        b"GET /x HTTP/1.1\r\nhost: user@gw.test\r\n\r\n",
        b"GET /x HTTP/1.1\r\nhost: gw.test:99999\r\n\r\n",
        b"GET /x HTTP/1.1\r\nhost: gw.test:8o\r\n\r\n",
        b"GET http://gw.test/x HTTP/1.1\r\nhost: other.test\r\n\r\n",
        b"GET http://user@gw.test/x HTTP/1.1\r\nhost: gw.test\r\n\r\n",
        b"GET ftp://gw.test/x HTTP/1.1\r\nhost: gw.test\r\n\r\n",
        b"GET * HTTP/1.1\r\nhost: gw.test\r\n\r\n",
    ],
    ids=lambda d: d.split(b"\r\n\r\n")[0].decode("latin-1").replace("\r\n", " | "),
)
def test_host_rules(edge: Edge, data: bytes) -> None:
    catch = edge.backends["catch"]
    before = catch.count()
    status, out, closed = edge.send(data)
    assert status == 400, out[:200]
    assert closed
    assert catch.count() == before


def test_http10_without_host_and_the_absolute_form_are_routed(edge: Edge) -> None:
    status, out, _ = edge.send(get("/plain", version="1.0"), check_closed=False)
    assert status == 200 and b'"server": "catch"' in out.replace(b'":"', b'": "'), out[:300]
    status, out, _ = edge.send(get("http://GW.test:80/zec/r", "host: gw.test"), check_closed=False)
    assert status == 401  # routed by its authority and path: the keyed API
    status, out, _ = edge.send(get("http://gw.test/abs%7E?q=1", "host: gw.test"), check_closed=False)
    assert status == 200, out[:300]
    body = json.loads(out.split(b"\r\n\r\n", 1)[1])
    assert body["path"] == "/abs~" and body["query"] == "q=1"  # origin form upstream


def test_oversized_heads_are_414_and_431(edge: Edge) -> None:
    cases = [
        (get("/x" + "a" * 33 * 1024, "host: gw.test"), 414),
        (get("/x", "host: gw.test", "x-big: " + "b" * 33 * 1024), 431),
        (get("/x", "host: gw.test", *[f"x-h{i}: v" for i in range(100)]), 431),  # 101 fields
        (get("/x", "host: gw.test", *[f"x-h{i}: v" for i in range(10_000)]), 431),
    ]
    for data, expected in cases:
        status, out, closed = edge.send(data)
        assert status == expected, out[:200]
        assert closed
    status, _, _ = edge.send(get("/x", "host: gw.test", *[f"x-h{i}: v" for i in range(99)]), check_closed=False)
    assert status == 200


def _lab_target_state(edge: Edge) -> dict[str, Any]:
    return edge.worker.status()["targets"][edge.lab_target]  # type: ignore[no-any-return]


def test_misbehaving_clients_cannot_eject_a_target(edge: Edge) -> None:
    """100 clients that announce 5 body bytes and send 3 get 408; the target stays in rotation."""
    socks = []
    try:
        for _ in range(100):
            s = socket.create_connection(("127.0.0.1", edge.worker.port), timeout=10)
            s.sendall(b"POST /lab/upload HTTP/1.1\r\nhost: gw.test\r\ncontent-length: 5\r\n\r\nabc")
            socks.append(s)
        statuses = []
        for s in socks:
            out = b""
            while b"\r\n\r\n" not in out:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
            statuses.append(int(out.split(b" ", 2)[1]) if out.startswith(b"HTTP/1.1 ") else 0)
    finally:
        for s in socks:
            s.close()
    assert statuses == [408] * 100
    state = _lab_target_state(edge)
    assert state["ejected_until"] is None and state["healthy"], state
    r = httpx.get(f"{edge.worker.url}/lab/after", timeout=5)
    assert r.status_code == 200
    assert (edge.worker.metric("tollgate_requests_total", api="lab", status_class="4xx") or 0) >= 100  # client errors
    assert (edge.worker.metric("tollgate_requests_total", api="lab", status_class="5xx") or 0) == 0


def _half_close(edge: Edge, data: bytes) -> bytes:
    """Send ``data``, half-close, read until the worker closes."""
    with socket.create_connection(("127.0.0.1", edge.worker.port), timeout=5) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_a_client_that_half_closes_mid_body_gets_400_not_a_gateway_error(edge: Edge) -> None:
    for _ in range(5):  # more than consecutive_failures, had it counted
        out = _half_close(
            edge, b"POST /lab/upload HTTP/1.1\r\nhost: gw.test\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab"
        )
        assert out.startswith(b"HTTP/1.1 400 "), out[:200]
    state = _lab_target_state(edge)
    assert state["ejected_until"] is None and state["healthy"], state


def test_a_half_closed_client_still_gets_its_response(edge: Edge) -> None:
    out = _half_close(edge, b"POST /anything HTTP/1.1\r\nhost: gw.test\r\ncontent-length: 2\r\n\r\nok")
    assert out.startswith(b"HTTP/1.1 200 "), out[:200]
    assert json.loads(out.split(b"\r\n\r\n", 1)[1])["body"] == "ok"


def test_the_worker_serves_normally_after_all_this(edge: Edge) -> None:
    wait_until(lambda: httpx.get(f"{edge.worker.url}/fine", timeout=2).status_code == 200, what="a normal request")
