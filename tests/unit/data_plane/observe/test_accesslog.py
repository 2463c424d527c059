"""The access log's reopen (SIGHUP after logrotate renamed the file): buffered lines go to the old
file, later ones to a new file at the same path; stdout is left alone; a failed open loses nothing."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from data_plane.observe.accesslog import AccessLog, Entry, open_access_log


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    # The flush timer is armed on this loop but never run: flushes happen only where a test says.
    lp = asyncio.new_event_loop()
    try:
        yield lp
    finally:
        lp.close()


def entry(request_id: str, trace: bytes = b"") -> Entry:
    labels = '"api":"shop","route":"GET /shop/{proxy+}"'
    client, peer = b"203.0.113.7", b"127.0.0.1"
    path = b"/shop/x?k=1"
    return (1700000000.5, request_id.encode(), labels, b"", "GET", path, 200, "t", 0.001, 0, 2, client, peer, trace)


def ids(path: Path) -> list[str]:
    return [json.loads(line)["request_id"] for line in path.read_text().splitlines()]


def test_line_has_the_client_ip_and_the_socket_peer(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    path = tmp_path / "access.log"
    access = open_access_log(str(path), loop)
    assert access is not None
    access.add(entry("r1"))
    access.close()
    (line,) = [json.loads(text) for text in path.read_text().splitlines()]
    assert line["client_ip"] == "203.0.113.7" and line["peer_ip"] == "127.0.0.1"
    assert line["path"] == "/shop/x" and line["status"] == 200


def test_reopen_flushes_to_the_renamed_file_then_writes_a_new_one(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    path = tmp_path / "access.log"
    access = open_access_log(str(path), loop)
    assert access is not None
    access.add(entry("a1"))
    access.flush()
    access.add(entry("a2"))  # buffered (the 100 ms timer has not fired) when logrotate renames
    os.rename(path, tmp_path / "access.log.1")
    assert access.reopen() is True
    assert ids(tmp_path / "access.log.1") == ["a1", "a2"]
    assert path.exists() and path.read_text() == ""
    access.add(entry("b1"))
    access.close()
    assert ids(path) == ["b1"]
    assert ids(tmp_path / "access.log.1") == ["a1", "a2"]
    assert access.reopen() is False  # a SIGHUP during the rest of the shutdown: nothing to reopen
    assert ids(path) == ["b1"]


def test_reopen_leaves_stdout_alone(loop: asyncio.AbstractEventLoop) -> None:
    access = open_access_log("-", loop)
    assert access is not None
    stream = access.stream
    assert access.reopen() is False
    assert access.stream is stream and access.path is None and not stream.closed


def test_a_failed_reopen_keeps_the_old_file_and_a_reopen_revives_a_failed_log(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "access.log"
    access = open_access_log(str(path), loop)
    assert access is not None
    os.rename(logs, tmp_path / "gone")  # the directory is no longer there: the open fails
    access.add(entry("kept"))
    assert access.reopen() is False
    access.flush()
    assert ids(tmp_path / "gone" / "access.log") == ["kept"]

    logs.mkdir()
    access.failed = True  # as after a write error (disk full): lines were being dropped
    access.reopen()
    assert access.failed is False
    access.add(entry("again"))
    access.flush()
    assert ids(path) == ["again"]
    access.close()


def test_a_stream_log_has_nothing_to_reopen(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    with open(tmp_path / "given.log", "ab") as f:
        access = AccessLog(f, loop, owned=False)
        access.add(entry("x"))
        access.reopen()
        assert access.stream is f and ids(tmp_path / "given.log") == ["x"]


def test_trace_id_is_in_the_line_of_a_traced_route_only(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    path = tmp_path / "access.log"
    access = open_access_log(str(path), loop)
    assert access is not None
    access.add(entry("traced", b"4bf92f3577b34da6a3ce929d0e0e4736"))
    access.add(entry("plain"))
    access.close()
    traced, plain = [json.loads(text) for text in path.read_text().splitlines()]
    assert traced["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736" and traced["peer_ip"] == "127.0.0.1"
    assert "trace_id" not in plain
