"""A JSON Web Key Set served on 127.0.0.1 from a thread, with RSA keys made in the test (no network)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


class SigningKey:
    """An RSA key pair with a kid: signs tokens, and gives its public JWK (as an IdP publishes it)."""

    def __init__(self, kid: str | None = None) -> None:
        self.kid = kid or uuid.uuid4().hex[:12]
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def public_jwk(self, **extra: Any) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": "RS256", **extra}

    def private_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private))
        return {**jwk, "kid": self.kid}

    def token(self, sub: str, *, kid: str | None = None, ttl: int = 300, **claims: Any) -> str:
        body = {"sub": sub, "exp": int(time.time()) + ttl, **claims}
        return jwt.encode(body, self.private, algorithm="RS256", headers={"kid": kid or self.kid})


class JwksServer:
    """Serves ``keys`` at ``/jwks.json`` (anything else: 404); ``stop()`` takes it off the network."""

    def __init__(self, keys: list[SigningKey]) -> None:
        self.keys = keys
        self.stopped = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path != "/jwks.json":
                    self.send_error(404)
                    return
                body = json.dumps({"keys": [k.public_jwk() for k in outer.keys]}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="jwks-server", daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/jwks.json"

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
