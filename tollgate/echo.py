"""A small echo backend: answers every request with a JSON description of what it received.

Used by ``tollgate up`` (the demo upstream) and by the integration tests as a real backend
process.  ``GET /__echo/count`` returns how many requests it has served (not counting itself).
Response body: ``{"server": NAME, "method", "path", "query", "headers": {...}, "body", "body_bytes"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

import httptools
import uvloop


class EchoProtocol(asyncio.Protocol):
    count = 0

    def __init__(self, name: str) -> None:
        self.name = name
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        url = self.url.decode("latin-1")
        path, _, query = url.partition("?")
        if path == "/__echo/count":
            payload: dict[str, object] = {"server": self.name, "count": EchoProtocol.count}
        else:
            EchoProtocol.count += 1
            body = b"".join(self.body)
            payload = {
                "server": self.name,
                "method": self.parser.get_method().decode(),
                "path": path,
                "query": query,
                "headers": dict(self.headers),
                "header_list": self.headers,
                "body": body.decode("utf-8", "replace"),
                "body_bytes": len(body),
            }
        out = json.dumps(payload).encode()
        keep = self.parser.should_keep_alive()
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\nx-echo-server: %s\r\n%s\r\n"
            % (len(out), self.name.encode(), b"" if keep else b"connection: close\r\n")
            + out
        )
        if not keep:
            self.transport.close()


async def serve(host: str, port: int, name: str, ready: asyncio.Event | None = None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: EchoProtocol(name), host, port)
    if ready is not None:
        ready.set()
    async with server:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Tollgate echo backend")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--name", default="echo")
    args = parser.parse_args(argv)
    uvloop.run(serve(args.host, args.port, args.name))


if __name__ == "__main__":
    main()
