"""The client IP through a real worker: X-Forwarded-For forwarding, and the client behind trusted
proxies (``--trusted-proxies``) as ``hash_on: ip`` and the access log see it.

The worker trusts 127.0.0.2 only: connections from 127.0.0.1 (the default source address) play an
untrusted client, connections bound to 127.0.0.2 a load balancer in front of the gateway.  The
203.0.113.0/24 and 198.51.100.0/24 addresses are header values only, never connected to.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Cluster, snapshot_file, targets, tollgate_argv, wait_until

BALANCER = "127.0.0.2"  # trusted
DIRECT = "127.0.0.1"  # not trusted


@pytest.fixture(scope="module")
def gw(module_cluster: Cluster) -> dict[str, Any]:
    c = module_cluster
    echo = c.echo("ip")
    ring = [c.echo(f"ring{i}") for i in range(3)]
    upstreams = [
        {"id": "e", "name": "e", "targets": targets(echo)},
        {"id": "h", "name": "h", "algorithm": "consistent_hash", "hash_on": "ip", "targets": targets(*ring)},
    ]
    snap = snapshot_file(c.tmp / "client-ip.json", upstreams, {"/e": "e", "/h": "h"})
    access = c.tmp / "client-ip-access.log"
    extra = ("--trusted-proxies", f"{BALANCER}/32, 2001:db8::/32", "--access-log", str(access))
    worker = c.worker(snapshot=snap, name="client-ip-worker", extra=extra)
    return {"worker": worker, "access": access}


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


def access_line(path: Path, rid: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        for line in path.read_text().splitlines() if path.exists() else ():
            entry = json.loads(line)
            if entry["request_id"] == rid:
                return entry  # type: ignore[no-any-return]
        return None

    return wait_until(find, timeout=5, what=f"the access-log line of {rid}")


def test_every_xff_line_is_forwarded_in_order_then_the_peer(gw) -> None:
    port = gw["worker"].port
    seen = request(port, "/e/x", source=DIRECT, xff=("198.51.100.1", "198.51.100.2, 198.51.100.3"))
    assert forwarded(seen) == ["198.51.100.1, 198.51.100.2, 198.51.100.3, 127.0.0.1"]  # one line
    # From a trusted proxy the appended hop is still the socket peer (the real previous hop), not
    # the client derived from the list: nginx's $proxy_add_x_forwarded_for.
    seen = request(port, "/e/x", source=BALANCER, xff=("203.0.113.7",))
    assert forwarded(seen) == ["203.0.113.7, 127.0.0.2"]
    assert forwarded(request(port, "/e/x", source=DIRECT)) == ["127.0.0.1"]
    assert forwarded(request(port, "/e/x", source=DIRECT, xff=("", "198.51.100.1"))) == ["198.51.100.1, 127.0.0.1"]


@pytest.mark.parametrize(
    ("source", "xff", "client"),
    [
        (BALANCER, ("203.0.113.7",), "203.0.113.7"),
        (BALANCER, ("198.51.100.9, 203.0.113.7", BALANCER), "203.0.113.7"),  # trusted hops skipped
        (BALANCER, ("not-an-address",), BALANCER),  # malformed: the last good address, the peer
        (BALANCER, (), BALANCER),
        (DIRECT, ("203.0.113.7",), DIRECT),  # an untrusted peer's XFF is not believed
    ],
    ids=["trusted", "trusted-recursive", "trusted-garbage", "trusted-no-xff", "untrusted"],
)
def test_access_log_records_the_derived_client_and_the_peer(gw, source: str, xff: tuple[str, ...], client: str) -> None:
    rid = f"cip-{uuid.uuid4().hex}"
    request(gw["worker"].port, "/e/x", source=source, xff=xff, rid=rid)
    line = access_line(gw["access"], rid)
    assert (line["client_ip"], line["peer_ip"]) == (client, source)


def test_hash_on_ip_hashes_the_client_behind_a_trusted_proxy(gw) -> None:
    """Behind the trusted balancer, each client keeps its backend and clients spread over the ring;
    from an untrusted peer the same XFF values are ignored: everything hashes to that peer."""
    port = gw["worker"].port
    clients = [f"203.0.113.{i}" for i in range(1, 25)]
    trusted = {ip: {request(port, "/h/x", source=BALANCER, xff=(ip,))["server"] for _ in range(3)} for ip in clients}
    assert all(len(servers) == 1 for servers in trusted.values()), trusted  # sticky per client
    assert len(set().union(*trusted.values())) >= 2, trusted  # 24 clients do not all share one backend
    direct = {request(port, "/h/x", source=DIRECT, xff=(ip,))["server"] for ip in clients}
    assert len(direct) == 1, direct


@pytest.mark.parametrize(
    ("args", "env", "bad"),
    [
        (
            ("--trusted-proxies", "10.0.0.1/8"),
            {},
            "'10.0.0.1/8' is not an IP address or CIDR (10.0.0.1/8 has host bits set)",
        ),
        ((), {"TOLLGATE_TRUSTED_PROXIES": "10.0.0.0/8,localhost"}, "'localhost' is not an IP address or CIDR"),
    ],
    ids=["option", "environment"],
)
def test_invalid_trusted_proxies_stop_the_worker_at_start(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], bad: str
) -> None:
    snap = snapshot_file(tmp_path / "s.json", [], {})
    argv = tollgate_argv("worker", "--snapshot", str(snap), "--port", "1", "--status-port", "1", *args)
    env = {**os.environ, "COLUMNS": "200", **env}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done
    message = " ".join(re.sub("[\u2500-\u257f]", " ", done.stderr).split())  # without the box rich draws
    assert f"(TOLLGATE_TRUSTED_PROXIES): {bad}" in message, done.stderr
