"""The client IP through a real worker: X-Forwarded-For as the backend gets it."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from tests.integration.harness import Cluster, snapshot_file, targets

DIRECT = "127.0.0.1"


@pytest.fixture(scope="module")
def gw(module_cluster: Cluster) -> dict[str, Any]:
    c = module_cluster
    echo = c.echo("ip")
    snap = snapshot_file(c.tmp / "client-ip.json", [{"id": "e", "name": "e", "targets": targets(echo)}], {"/e": "e"})
    worker = c.worker(snapshot=snap, name="client-ip-worker")
    return {"worker": worker}


def request(port: int, path: str, *, source: str, xff: tuple[str, ...] = (), rid: str = "") -> dict[str, Any]:
    """One GET from ``source`` with these X-Forwarded-For field lines; the echo backend's JSON."""
    head = [f"GET {path} HTTP/1.1", "host: t", "connection: close"]
    head += [f"x-forwarded-for: {value}" for value in xff]
    if rid:
        head.append(f"x-request-id: {rid}")
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status_head, body = data.split(b"\r\n\r\n", 1)
    assert status_head.startswith(b"HTTP/1.1 200 "), data[:300]
    return json.loads(body)  # type: ignore[no-any-return]


def forwarded(echoed: dict[str, Any]) -> list[str]:
    return [value for name, value in echoed["header_list"] if name == "x-forwarded-for"]


def test_every_xff_line_is_forwarded_in_order_then_the_peer(gw) -> None:
    port = gw["worker"].port
    seen = request(port, "/e/x", source=DIRECT, xff=("198.51.100.1", "198.51.100.2, 198.51.100.3"))
    assert forwarded(seen) == ["198.51.100.1, 198.51.100.2, 198.51.100.3, 127.0.0.1"]  # one line
    assert forwarded(request(port, "/e/x", source=DIRECT)) == ["127.0.0.1"]
    assert forwarded(request(port, "/e/x", source=DIRECT, xff=("", "198.51.100.1"))) == ["198.51.100.1, 127.0.0.1"]
