"""A small HTTPS backend for the TLS tests: asyncio + ssl on its own thread and loop, on 127.0.0.1.

It answers every request with JSON saying what it saw: the server name the client sent (SNI), the
connection's number (so a test can tell a reused connection from a new one), the subject of the
client certificate if one was shown, and the ALPN protocol.  ``status`` sets the answer's status
(the health tests flip it); ``/__close`` answers and closes.  ``require_client_cert`` makes the
handshake fail for a client without a certificate from ``client_ca``.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from typing import Any

import trustme


class TlsBackend:
    def __init__(
        self,
        cert: trustme.LeafCert,
        *,
        port: int,
        client_ca: trustme.CA | None = None,
    ) -> None:
        self.port = port
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ctx.set_alpn_protocols(["http/1.1"])
        cert.configure_cert(self.ctx)
        if client_ca is not None:
            client_ca.configure_trust(self.ctx)
            self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.ctx.sni_callback = self._sni
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0  # TLS connections that completed a handshake
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _sni(self, sslobj: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        sslobj.tollgate_sni = name  # type: ignore[attr-defined]  # read back per connection in _serve

    def start(self) -> TlsBackend:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.ctx), self._loop
        )
        self._server = fut.result(timeout=10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for writer in self._writers:
                writer.transport.abort()  # no TLS close_notify exchange with a peer that may not answer
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for _ in range(5):
                await asyncio.sleep(0)  # let the aborted transports finish closing

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        conn_no = self.connections
        sslobj: ssl.SSLObject = writer.get_extra_info("ssl_object")
        peer = sslobj.getpeercert() if sslobj is not None else None
        subject = dict(x[0] for x in peer["subject"]) if peer and peer.get("subject") else None
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *fields = head.decode("latin-1").split("\r\n")
                method, target, _ = line.split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in (f.split(":", 1) for f in fields if ":" in f)}
                length = int(headers.get("content-length", "0"))
                if length:
                    await reader.readexactly(length)
                seen = {
                    "method": method,
                    "path": target,
                    "host": headers.get("host"),
                    "sni": getattr(sslobj, "tollgate_sni", None),
                    "connection": conn_no,
                    "client_subject": subject,
                    "alpn": sslobj.selected_alpn_protocol() if sslobj is not None else None,
                }
                self.requests.append(seen)
                body = json.dumps(seen).encode()
                close = target == "/__close" or headers.get("connection", "").lower() == "close"
                writer.write(
                    b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n"
                    % (self.status, len(body), b"connection: close\r\n" if close else b"")
                    + body
                )
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, ValueError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)
            self._writers.discard(writer)
