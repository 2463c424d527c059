"""Operator errors as one line: busy ports (named with their holder and the setting to change), the
snapshot export through the admin API, the worker's cluster token from the data dir, and import errors
mapped to file:line:col like `apply`'s."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from data_plane.settings import WorkerSettings
from data_plane.sync import ConfigSync
from tests.integration.cli_support import tg
from tests.integration.harness import Cluster, ControlPlane, free_port, tollgate_argv, wait_until
from tollgate.cli import app


@pytest.fixture(scope="module")
def cp(module_cluster: Cluster) -> Iterator[ControlPlane]:
    yield module_cluster.control_plane()


@pytest.fixture
def held_port() -> Iterator[int]:
    port = free_port()
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    yield port
    sock.close()


def test_tollgate_up_on_a_busy_port_is_one_line_and_starts_nothing(held_port: int, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = CliRunner().invoke(app, ["up", "--demo-port", str(held_port), "--data-dir", str(data_dir)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert f"port {held_port} is already in use by pid {os.getpid()}" in lines[0] and "--demo-port" in lines[0]
    assert not data_dir.exists()  # nothing started, nothing written


def test_a_worker_on_a_busy_port_is_one_line(held_port: int, tmp_path: Path) -> None:
    snap = tmp_path / "snap.json"
    snap.write_text("{}")
    result = CliRunner().invoke(app, ["worker", "--snapshot", str(snap), "--port", str(held_port)])
    assert result.exit_code == 1
    # the holder's command line sits in the parentheses (this test process's: under xdist it holds some)
    [line] = result.output.strip().splitlines()
    assert re.fullmatch(
        rf"tollgate worker: port {held_port} is already in use by pid {os.getpid()} \(.+\): stop that process, "
        r"or choose another port with --port / TOLLGATE_WORKER_PORT",
        line,
    ), line


def test_snapshot_export_goes_through_the_admin_api(cp: ControlPlane, tmp_path: Path) -> None:
    wrong_db = tmp_path / "nowhere" / "tollgate.db"
    env = {"TOLLGATE_DATABASE_URL": f"sqlite:///{wrong_db}"}  # no longer read: nothing created there
    out = tmp_path / "snap.json"
    result = CliRunner().invoke(
        app,
        ["snapshot", "export", "-o", str(out)],
        env={**env, "TOLLGATE_ADMIN_URL": cp.url, "TOLLGATE_ADMIN_TOKEN": cp.admin_token},
    )
    assert result.exit_code == 0, result.output
    assert f"wrote revision {cp.revision()}" in result.output and out.read_bytes().startswith(b"{")
    assert not wrong_db.parent.exists()

    unreachable = CliRunner().invoke(
        app, ["snapshot", "export", "-o", str(tmp_path / "x.json")], env={"TOLLGATE_ADMIN_URL": "http://127.0.0.1:9"}
    )
    assert unreachable.exit_code == 1 and len(unreachable.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.json").exists()


def test_the_worker_reads_the_cluster_token_of_its_data_dir(cp: ControlPlane, tmp_path: Path) -> None:
    (tmp_path / "cluster-token").write_text(cp.cluster_token + "\n")
    port, status_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "TOLLGATE_CLUSTER_TOKEN"}
    env.update(TOLLGATE_DATA_DIR=str(tmp_path), TOLLGATE_ACCESS_LOG="off")
    argv = tollgate_argv("worker", "--control-plane", cp.url, "--port", str(port), "--status-port", str(status_port))
    argv += ["--cache-dir", str(tmp_path / "cache"), "--node-id", "token-from-file"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:

        def in_sync() -> bool:
            try:
                status = httpx.get(f"http://127.0.0.1:{status_port}/status", timeout=1).json()
            except httpx.HTTPError:
                return False
            return bool(status.get("revision") == cp.revision())

        wait_until(in_sync, timeout=20, what="the worker synced with the token from the data dir")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stderr is not None
        proc.stderr.close()


def test_a_first_start_without_a_control_plane_says_no_config_yet(caplog: pytest.LogCaptureFixture) -> None:
    async def lose() -> None:
        sync = ConfigSync(
            WorkerSettings(control_plane_url="http://127.0.0.1:9"), lambda _s: None, lambda: {}, keys_used={}
        )
        sync._lost("control plane unreachable")
        sync.known_hash = "abc"  # a config applied: from now on it is the last-known-good one
        sync.connected = True
        sync._lost("control plane unreachable")

    with caplog.at_level(logging.WARNING, logger="data_plane.sync"):
        asyncio.run(lose())
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "control plane unreachable; no config yet, nothing is served",
        "control plane unreachable; serving the last-known-good config",
    ]


def test_import_errors_name_lines_and_duplicate_keys_are_refused(cp: ControlPlane, tmp_path: Path) -> None:
    dup = tmp_path / "dup.yaml"
    dup.write_text("openapi: 3.0.0\ninfo:\n  title: t\n  version: '1'\n  title: again\npaths: {}\n")
    result = tg(cp, "import", str(dup))
    assert result.exit_code == 1
    assert result.stderr.strip() == f"{dup}:5:3: duplicate key 'title'"

    bad = tmp_path / "bad.yaml"
    bad.write_text("openapi: 3.0.0\ninfo:\n  title: t\n  version: '1'\npaths:\n  /pets:\n    get: 7\n")
    result = tg(cp, "import", str(bad), "--upstream", "nowhere")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{bad}:"), result.stderr
    assert "{" not in result.stderr and "detail" not in result.stderr  # no raw JSON
