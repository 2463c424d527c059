"""control_plane/server.py: HTTPS when TOLLGATE_ADMIN_TLS_CERT / _KEY are set, with a TLS 1.2 floor."""

from __future__ import annotations

import ssl
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trustme

from control_plane import server
from control_plane.settings import Settings, SettingsError


async def _app(scope: Any, receive: Any, send: Any) -> None:  # never called: the server is not run
    raise AssertionError


def _serve(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Any:
    seen: dict[str, Any] = {}

    class FakeServer:
        def __init__(self, config: Any, publisher: Any) -> None:
            seen["config"] = config

        def run(self) -> None:
            pass

    monkeypatch.setattr(server, "create_app", lambda s: SimpleNamespace(state=SimpleNamespace(publisher=None)))
    monkeypatch.setattr(server, "_Server", FakeServer)
    monkeypatch.setattr(server.uvicorn.Config, "load", _loader(server.uvicorn.Config.load))
    server.serve(settings)
    return seen["config"]


def _loader(real: Any) -> Any:
    def load(self: Any) -> None:
        self.app = _app  # the stub app above instead of the namespace create_app returned
        real(self)

    return load


def test_https_with_a_tls_1_2_floor(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    leaf = trustme.CA().issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    env = {"TOLLGATE_ADMIN_TLS_CERT": str(cert), "TOLLGATE_ADMIN_TLS_KEY": str(key), "TOLLGATE_DATA_DIR": str(tmp_path)}
    config = _serve(monkeypatch, Settings.from_env(env))
    assert isinstance(config.ssl, ssl.SSLContext)
    assert config.ssl.minimum_version == ssl.TLSVersion.TLSv1_2


def test_plain_http_without_the_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = _serve(monkeypatch, Settings.from_env({"TOLLGATE_DATA_DIR": str(tmp_path)}))
    assert config.ssl_certfile is None and not config.loaded  # uvicorn makes no ssl context


def test_cert_without_key_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="must be set together"):
        Settings.from_env({"TOLLGATE_ADMIN_TLS_CERT": "/x.pem"})
