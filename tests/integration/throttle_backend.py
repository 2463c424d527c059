"""A backend that throttles everything: 429, ``Retry-After: 7`` and a JSON error body.

Stands in for the gateway's own rate limiter (not built yet) in the SDK end-to-end test.
Run: ``python tests/integration/throttle_backend.py PORT``; ``GET /__echo/count`` answers 200 (readiness).
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RETRY_AFTER = 7


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/__echo/count":
            self._send(200, {"count": 0}, {})
            return
        self._send(429, {"message": "slow down (test backend)"}, {"Retry-After": str(RETRY_AFTER)})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _send(self, status: int, body: dict[str, object], headers: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
