"""A webhook receiver for the tests: an HTTP server on 127.0.0.1 in a thread of the test process that
records every request and answers from a script (statuses, or "hang" to answer after the sender's
timeout), then with a default; and the signature check receivers do (docs/webhooks.md)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG = "hang"


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float

    def event(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.body)
        return doc


def verify(secret: str, header: str, body: bytes, tolerance: float = 300.0) -> bool:
    """Tollgate-Signature: ``t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` (the docs' snippet)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        ts = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - ts) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


class Receiver:
    def __init__(self, port: int, script: Iterable[int | str] = (), default: int | str = 200, hang_for: float = 2.0):
        self.port = port
        self.url = f"http://127.0.0.1:{port}/hook"
        self.received: list[Received] = []
        self._script = list(script)
        self.default = default
        self.hang_for = hang_for
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                action = receiver._record(dict((k.lower(), v) for k, v in self.headers.items()), body)
                if action == HANG:
                    time.sleep(receiver.hang_for)
                    action = 200
                try:
                    self.send_response(int(action))
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the sender gave up (timed out) and closed the connection
                    pass

            def log_message(self, *_args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        server.block_on_close = False  # a hanging handler must not hold up the test's teardown
        threading.Thread(target=server.serve_forever, name=f"receiver-{self.port}", daemon=True).start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def set(self, *, script: Iterable[int | str] = (), default: int | str | None = None) -> None:
        with self._lock:
            self._script = list(script)
            if default is not None:
                self.default = default

    def _record(self, headers: dict[str, str], body: bytes) -> int | str:
        with self._lock:
            self.received.append(Received(headers, body, time.time()))
            return self._script.pop(0) if self._script else self.default

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.event() for r in self.received]
