"""Client SDKs generated from an exported document: a zip of an installable Python package.

The generator is openapi-python-client (the optional extra ``tollgate[sdk]``), run as a subprocess
with a timeout in a temporary directory; it needs no network (its templates ship with it; its
post-hooks run the local ``ruff``).  The package is then made to run on Python >= 3.9
(:mod:`~control_plane.openapi.py39`) and gets a README for the customer
(:mod:`~control_plane.openapi.sdk_readme`).  Tollgate adds one module to the generated package,
``gateway.py``: ``connect(api_key)`` builds a client that sends the key in the API's configured header
(or query parameter) on every call, and ``retry_after(response)`` / ``Throttled`` surface a 429.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from control_plane.errors import Unavailable
from control_plane.openapi.py39 import backport_package
from control_plane.openapi.sdk_readme import write_readme
from control_plane.openapi.security import API_KEY_SCHEME, DEFAULT_KEY_HEADER, JWT_SCHEME

GENERATOR = "openapi_python_client"
DEFAULT_TIMEOUT = 120.0
_SKIP_DIRS = {".ruff_cache", "__pycache__"}


def package_names(api_name: str) -> tuple[str, str]:
    """(distribution name, import package name) for an API's client: ``petstore`` → ``petstore-client``."""
    base = re.sub(r"[^a-z0-9]+", "_", api_name.lower()).strip("_") or "api"
    if base[0].isdigit():
        base = "api_" + base
    return base.replace("_", "-") + "-client", base + "_client"


def generate_python_sdk(document: dict[str, Any], api_name: str, *, timeout: float = DEFAULT_TIMEOUT) -> bytes:
    if importlib.util.find_spec(GENERATOR) is None:
        raise Unavailable("SDK generation needs openapi-python-client: install tollgate[sdk]")
    project, package = package_names(api_name)
    with tempfile.TemporaryDirectory(prefix="tollgate-sdk-") as tmp:
        work = Path(tmp)
        (work / "openapi.json").write_text(json.dumps(document))
        (work / "config.json").write_text(
            json.dumps({"project_name_override": project, "package_name_override": package})
        )
        out = work / project
        argv = [sys.executable, "-m", GENERATOR, "generate", "--path", str(work / "openapi.json")]
        argv += ["--output-path", str(out), "--meta", "setup", "--config", str(work / "config.json")]
        # The post-hooks call `ruff` by name: the one installed next to this interpreter.
        env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
        try:
            done = subprocess.run(argv, cwd=work, env=env, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise Unavailable(f"the SDK generator did not finish within {timeout:.0f} s") from None
        if done.returncode != 0 or not (out / package / "client.py").is_file():
            tail = (done.stdout + done.stderr).decode(errors="replace").strip().splitlines()[-8:]
            raise Unavailable("the SDK generator failed: " + " | ".join(tail))
        (out / package / "gateway.py").write_text(gateway_module(document))
        mode, header, query = auth_of(document)
        write_readme(out, package, project, document, mode=mode, header=header, query=query)
        backport_package(out)  # the generator writes 3.11 code; customers run older Pythons
        return _zip(out, project)


def gateway_module(document: dict[str, Any]) -> str:
    """``gateway.py`` for the package, configured from the document's Tollgate security scheme.

    Without one (auth ``none``) a key given to ``connect()`` is still sent, in ``x-api-key``: the
    SDK keeps working unchanged when the API later starts requiring keys in the default header.
    """
    mode, header, query = auth_of(document)
    values = {"BASE_URL": document["servers"][0]["url"], "AUTH_MODE": mode, "KEY_HEADER": header, "KEY_QUERY": query}
    text = _GATEWAY_TEMPLATE
    for name, value in values.items():
        text = text.replace(f"@{name}@", repr(value))
    return text


def auth_of(document: dict[str, Any]) -> tuple[str, str, str | None]:
    """(mode, key header, key query parameter) from the document's Tollgate security scheme."""
    schemes = (document.get("components") or {}).get("securitySchemes") or {}
    mode, header, query = "none", DEFAULT_KEY_HEADER, None
    if API_KEY_SCHEME in schemes:
        scheme = schemes[API_KEY_SCHEME]
        mode = "api_key"
        if scheme.get("in") == "query":
            query = str(scheme["name"])
        else:
            header = str(scheme["name"])
    elif JWT_SCHEME in schemes:
        mode, header = "jwt", "Authorization"
    return mode, header, query


def _zip(root: Path, top: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if path.is_file() and not _SKIP_DIRS.intersection(rel.parts):
                zf.write(path, f"{top}/{rel.as_posix()}")
    return buf.getvalue()


_GATEWAY_TEMPLATE = '''"""Tollgate gateway helpers (added by Tollgate to the generated client).

``connect(api_key)`` returns a client that sends the key on every call the way this API expects it;
a 429 from the gateway (throttled or quota exhausted) comes back as a ``Response`` whose ``parsed``
is a ``TollgateError`` and whose ``Retry-After`` header says how long to wait: ``retry_after(response)``.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from datetime import datetime, timezone
from typing import Any

from .client import AuthenticatedClient, Client

BASE_URL = @BASE_URL@
AUTH_MODE = @AUTH_MODE@  # none | api_key | jwt, as configured on the gateway when this SDK was generated
KEY_HEADER = @KEY_HEADER@
KEY_QUERY = @KEY_QUERY@


def connect(api_key: str | None = None, *, base_url: str = BASE_URL, **kwargs: Any) -> Client | AuthenticatedClient:
    """A client for the gateway; ``api_key`` (a JWT for ``jwt`` APIs) is sent on every call."""
    if api_key is None:
        return Client(base_url=base_url, **kwargs)
    if KEY_QUERY:
        httpx_args = dict(kwargs.pop("httpx_args", None) or {})
        httpx_args["params"] = {**dict(httpx_args.get("params") or {}), KEY_QUERY: api_key}
        return Client(base_url=base_url, httpx_args=httpx_args, **kwargs)
    prefix = "Bearer" if AUTH_MODE == "jwt" else ""
    return AuthenticatedClient(
        base_url=base_url, token=api_key, auth_header_name=KEY_HEADER, prefix=prefix, **kwargs
    )


def retry_after(response: Any) -> float | None:
    """Seconds to wait after a 429 (from ``Retry-After``: delta-seconds or an HTTP date), else None."""
    if int(response.status_code) != 429:
        return None
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


class Throttled(Exception):
    """A 429 from the gateway; ``retry_after`` in seconds (None when the header was missing)."""

    def __init__(self, retry_after: float | None, error: Any = None) -> None:
        super().__init__(f"throttled by the gateway; retry after {retry_after} s")
        self.retry_after = retry_after
        self.error = error

    @classmethod
    def check(cls, response: Any) -> Any:
        """Raise on a 429; otherwise return the response unchanged."""
        if int(response.status_code) == 429:
            raise cls(retry_after(response), getattr(response, "parsed", None))
        return response
'''
