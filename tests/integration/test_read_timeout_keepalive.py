"""Read timeouts on a reused client connection (one timer per connection, re-armed lazily).

In-process worker and backend on 127.0.0.1: a first request through an upstream with a long read
timeout leaves the connection's timer far in the future; a second request on the same connection
through an upstream with a short timeout must still time out on its own deadline.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import uvloop

from data_plane import snapshot as snap
from data_plane.http.protocol import ClientConnection
from data_plane.server import Worker
from data_plane.settings import WorkerSettings

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


async def _backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # Answers /fast at once and never answers /hang: it reads on until the proxy gives up and closes.
    while line := await reader.readline():
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        if b"/hang" not in line:
            writer.write(OK)
            await writer.drain()
    writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))
    return status, await reader.readexactly(length)


async def _scenario(cache_dir: Path) -> tuple[int, int, float]:
    backend = await asyncio.start_server(_backend, "127.0.0.1", 0)
    port = backend.sockets[0].getsockname()[1]
    target = (snap.Target(id="t", host="127.0.0.1", port=port),)
    upstreams = (
        snap.Upstream(id="patient", name="patient", read_timeout=60.0, targets=target),
        snap.Upstream(id="hasty", name="hasty", read_timeout=0.3, targets=target),
    )
    routes = (
        snap.Route(id="r1", path="/fast", upstream_id="patient"),
        snap.Route(id="r2", path="/hang", upstream_id="hasty"),
    )
    api = snap.Api(id="a", name="a", routes=routes)
    loop = asyncio.get_running_loop()
    worker = Worker(WorkerSettings(cache_dir=cache_dir), loop)
    worker.apply(snap.Snapshot(revision=1, upstreams=upstreams, apis=(api,)).sealed())
    server = await loop.create_server(lambda: ClientConnection(worker), "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        writer.write(b"GET /fast HTTP/1.1\r\nhost: x\r\n\r\n")
        first, _ = await asyncio.wait_for(_read_response(reader), 5)
        started = loop.time()
        writer.write(b"GET /hang HTTP/1.1\r\nhost: x\r\n\r\n")
        second, _ = await asyncio.wait_for(_read_response(reader), 5)
        elapsed = loop.time() - started
        writer.close()
        await writer.wait_closed()
        return first, second, elapsed
    finally:
        server.close()
        for conn in list(worker.connections):
            conn.close()
        assert worker.config is not None
        for pool in worker.config.pools.values():
            pool.close_idle()
        await server.wait_closed()
        backend.close()
        await backend.wait_closed()
        await worker.close_limits()  # closes the usage spool's lock file (else a ResourceWarning at GC)


def test_short_read_timeout_applies_on_a_connection_armed_with_a_long_one(tmp_path: Path) -> None:
    first, second, elapsed = uvloop.run(_scenario(tmp_path))
    assert first == 200
    assert second == 504
    assert elapsed < 5  # its own 0.3 s deadline, not the 60 s one armed by the first request
