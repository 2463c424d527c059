"""Rotating the access log the way logrotate does without ``copytruncate``: rename the file, send
SIGHUP, and the worker writes on into a new file at the original path.  Every request is in exactly
one of the two files: lines buffered at the signal go to the renamed file, later ones to the new one.
Once with one worker process, once through the ``--processes 2`` supervisor, which passes SIGHUP on.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import httpx

from tests.integration.harness import (
    Cluster,
    Worker,
    free_port,
    free_ports,
    snapshot_file,
    targets,
    tollgate_argv,
    wait_until,
)

REOPENED = "SIGHUP: access log reopened"  # the worker's log line once the new file is open


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["request_id"] for line in path.read_text().splitlines()] if path.exists() else []


def _snapshot(cluster: Cluster) -> Path:
    echo = cluster.echo("rot")
    upstream = {"id": "u-rot", "name": "rot", "targets": targets(echo)}
    return snapshot_file(cluster.tmp / "rot-snapshot.json", [upstream], {"/shop": "u-rot"})


def _send(client: httpx.Client, tag: str, n: int) -> list[str]:
    ids = [f"{tag}-{i}" for i in range(n)]
    for rid in ids:
        assert client.get("/shop/item", headers={"x-request-id": rid}).status_code == 200
    return ids


def test_sighup_reopens_the_access_log_after_it_was_renamed(cluster: Cluster) -> None:
    access, rotated = cluster.tmp / "access.log", cluster.tmp / "access.log.1"
    w = cluster.worker(snapshot=_snapshot(cluster), name="rot-worker", extra=("--access-log", str(access)))
    assert w.proc.proc is not None
    with httpx.Client(base_url=w.url, timeout=5.0) as client:
        before = _send(client, "before", 30)
        wait_until(lambda: len(_ids(access)) == 30, timeout=5, what="30 lines in the access log")
        os.rename(access, rotated)  # what logrotate does first
        between = _send(client, "between", 10)  # answered; their lines are (mostly) still buffered
        w.proc.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: REOPENED in w.proc.log(), timeout=5, what="the worker to reopen its access log")
        # the buffered lines were written to the renamed file before the path was opened again
        assert _ids(rotated) == before + between
        after = _send(client, "after", 30)
    wait_until(lambda: len(_ids(access)) >= 30, timeout=5, what="30 lines in the new access log")
    assert w.proc.alive()
    assert w.proc.stop(signal.SIGTERM) == 0
    assert _ids(access) == after  # none lost, none duplicated, none in the wrong file
    assert _ids(rotated) == before + between


def _served(children: list[Worker]) -> list[float]:
    return [c.metric("tollgate_requests_total", api="api-0", status_class="2xx") or 0.0 for c in children]


def _spread(url: str, children: list[Worker], tag: str) -> list[str]:
    """One request per new connection until each child process answered at least one (the kernel
    spreads connections over SO_REUSEPORT listeners by hash); bounded."""
    start = _served(children)
    ids: list[str] = []
    for i in range(200):
        rid = f"{tag}-{i}"
        r = httpx.get(f"{url}/shop/item", headers={"x-request-id": rid, "connection": "close"}, timeout=5.0)
        assert r.status_code == 200
        ids.append(rid)
        if all(now > then for now, then in zip(_served(children), start, strict=True)):
            return ids
    raise AssertionError(f"200 connections did not reach both processes: {_served(children)} from {start}")


def test_the_processes_supervisor_passes_sighup_to_every_worker(cluster: Cluster) -> None:
    access, rotated = cluster.tmp / "access.log", cluster.tmp / "access.log.1"
    port, status = free_port(), free_ports(2)
    argv = tollgate_argv(
        "worker", "--processes", "2", "--snapshot", str(_snapshot(cluster)), "--port", str(port),
        "--status-port", str(status), "--cache-dir", str(cluster.tmp / "sup-cache"), "--access-log", str(access),
        "--log-level", "info",
    )  # fmt: skip
    proc = cluster.spawn("rot-supervisor", argv)
    children = [Worker(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{status + i}", port, proc) for i in range(2)]
    for child in children:
        cluster.wait_http(proc, f"{child.status_url}/status")
    url = children[0].url

    before = _spread(url, children, "before")
    wait_until(lambda: len(_ids(access)) == len(before), timeout=5, what="the first lines in the access log")
    os.rename(access, rotated)
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: proc.log_path.read_text().count(REOPENED) == 2, timeout=5, what="both workers to reopen the log")
    after = _spread(url, children, "after")  # both processes answer some of these
    # a child that had not reopened would have written some of these to the renamed file
    wait_until(lambda: len(_ids(access)) >= len(after), timeout=5, what="the new access log")
    assert proc.alive()  # the supervisor passed the signal on instead of dying of it
    assert proc.stop(signal.SIGTERM) == 0  # the children flush what is buffered on the way out
    assert sorted(_ids(access)) == sorted(after) and sorted(_ids(rotated)) == sorted(before)
