"""Fakes for driving the request path without sockets: transports, a gateway, canned responses.

One set for the unit tests and ``bench/hotpath.py``: a real :class:`Worker` (compiled config,
memory limit store, observer) and real :class:`ClientConnection` / :class:`UpstreamConnection`
objects, with :class:`FakeTransport` in place of the sockets.  Upstream connections are put in
their target's pool up front, so no request ever dials; time is the loop's, and timeouts are
driven by calling ``Exchange.check_timeout(now)`` with the ``now`` a test wants.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import uvloop

from data_plane import snapshot as snap
from data_plane.http.exchange import Exchange
from data_plane.http.protocol import ClientConnection
from data_plane.http.upstream import UpstreamConnection
from data_plane.server import Worker
from data_plane.settings import WorkerSettings


class FakeTransport(asyncio.Transport):
    """Counts what is written (and keeps it when ``keep``); records pause, close and abort."""

    def __init__(self, *, keep: bool = True, peer: str = "127.0.0.1") -> None:
        super().__init__()
        self.keep = keep
        self.peer = peer
        self.written = 0
        self.chunks: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.paused = False
        self.eof = False  # write_eof: a FIN after what was written (lingering close)
        self.protocol: asyncio.BaseProtocol | None = None

    def write(self, data: Any) -> None:
        self.written += len(data)
        if self.keep:
            self.chunks.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        # (inline, not self.write per chunk: bench/hotpath.py counts this fake's cost with the worker's)
        if self.keep:
            self.chunks += [bytes(c) for c in chunks]
        for c in chunks:
            self.written += len(c)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return (self.peer, 40000) if name == "peername" else default

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def take(self) -> bytes:
        """What was written since the last take."""
        out = b"".join(self.chunks)
        self.chunks = []
        return out


def response(status: int = 200, body: bytes = b"ok", headers: bytes = b"") -> bytes:
    """A complete upstream response with a Content-Length."""
    return b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n%s\r\n%s" % (status, len(body), headers, body)


def pool_connection(worker: Worker, target_id: str, *, reused: bool = True, keep: bool = True) -> FakeTransport:
    """Put one idle upstream connection (on a fake transport) into a target's pool; returns the transport."""
    config = worker.config
    assert config is not None
    for upstream in config.upstreams.values():
        for target in upstream.targets:
            if target.id == target_id:
                transport = FakeTransport(keep=keep)
                conn = UpstreamConnection(target.pool)
                conn.connection_made(transport)
                conn.reused = reused  # (as a connection back from an earlier request is)
                target.pool.put(conn)
                return transport
    raise KeyError(target_id)


class Gateway:
    """A worker serving ``snapshot`` and one client connection into it, over fake transports.

    ``upstreams`` ids get one pooled connection per target (``pool_connection`` adds more)."""

    def __init__(self, snapshot: snap.Snapshot, tmp: Path, *, keep: bool = True, **settings: Any) -> None:
        self.loop = uvloop.new_event_loop()
        asyncio.set_event_loop(self.loop)
        settings.setdefault("access_log", "off")
        self.worker = Worker(WorkerSettings(cache_dir=tmp, **settings), self.loop)
        self.worker.apply(snapshot)
        self.upstream_transports: dict[str, FakeTransport] = {}
        config = self.worker.config
        assert config is not None
        for upstream in config.upstreams.values():
            for target in upstream.targets:
                self.upstream_transports[target.id] = pool_connection(self.worker, target.id, keep=keep)
        self.client = ClientConnection(self.worker)
        self.client_transport = FakeTransport(keep=keep)
        self.client.connection_made(self.client_transport)

    def send(self, data: bytes) -> None:
        self.client.data_received(data)

    @property
    def exchange(self) -> Exchange:
        ex = self.client.active
        assert ex is not None, "no active exchange"
        return ex

    def upstream(self) -> UpstreamConnection:
        """The upstream connection the active exchange is attached to."""
        conn = self.exchange.conn
        assert conn is not None, "the exchange has no upstream connection"
        return conn

    def respond(self, data: bytes) -> None:
        self.upstream().data_received(data)

    def sent_upstream(self, target_id: str) -> bytes:
        return self.upstream_transports[target_id].take()

    def received(self) -> bytes:
        return self.client_transport.take()

    def close(self) -> None:
        if not self.client._closed:
            self.client.connection_lost(None)
        self.worker.observer.close()
        if self.worker.metering is not None:
            self.worker.metering.spool.close()
        asyncio.set_event_loop(None)
        self.loop.close()


def upstream_with_targets(n: int = 2, **fields: Any) -> snap.Upstream:
    targets = tuple(snap.Target(id=f"t{i}", host="127.0.0.1", port=9001 + i) for i in range(n))
    return snap.Upstream(id="u", name="u", targets=targets, **fields)


def one_api_snapshot(
    upstream: snap.Upstream, *, routes: tuple[snap.Route, ...] | None = None, **api: Any
) -> snap.Snapshot:
    routes = routes or (snap.Route(id="r", path="/{p+}", upstream_id=upstream.id),)
    return snap.Snapshot(
        revision=1, upstreams=(upstream,), apis=(snap.Api(id="a", name="a", routes=routes, **api),)
    ).sealed()
