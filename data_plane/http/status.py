"""The worker's status listener (default port 8100): ``/healthz``, ``/status``, ``/metrics``.

Off the request path; answers small GETs and closes nothing it does not have to.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import httptools

from data_plane.http.responses import status_line
from data_plane.observe.metrics import CONTENT_TYPE, render

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from data_plane.server import Worker


class StatusConnection(asyncio.Protocol):
    def __init__(self, worker: Worker, registry: CollectorRegistry) -> None:
        self.worker = worker
        self.registry = registry
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        path = self.url.split(b"?", 1)[0]
        status = self.worker.status()
        if path == b"/healthz":
            # Healthy means: able to route traffic (has a config).
            code = 200 if status["revision"] is not None else 503
            body = json.dumps({"status": "ok" if code == 200 else "no config", "revision": status["revision"]})
            self._respond(code, body.encode(), b"application/json")
        elif path == b"/status":
            self._respond(200, json.dumps(status).encode(), b"application/json")
        elif path == b"/metrics":
            self._respond(200, render(self.registry), CONTENT_TYPE)
        else:
            self._respond(404, b'{"message":"not found"}', b"application/json")

    def _respond(self, code: int, body: bytes, ctype: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        keep = self.parser.should_keep_alive()
        self.transport.write(
            status_line(code)
            + b"content-type: "
            + ctype
            + b"\r\ncontent-length: "
            + str(len(body)).encode()
            + (b"\r\n\r\n" if keep else b"\r\nconnection: close\r\n\r\n")
            + body
        )
        if not keep:
            self.transport.close()
