"""A small synchronous client for the admin API (``/v1``), shared by every CLI command that talks to it.

It knows the base URL (``TOLLGATE_ADMIN_URL``, default http://127.0.0.1:8001), the bearer token
(``--token``, else ``TOLLGATE_ADMIN_TOKEN``, else the ``admin-token`` file ``tollgate up`` writes into
its data dir, ``TOLLGATE_DATA_DIR`` or ``./.tollgate``) and how errors look; nothing about resources.
A 401 says where the token came from and how to give one.  Every failure
becomes an :class:`AdminError` (connection problems included) whose ``str`` is what a person should
read: ``404: upstream 'x' not found`` or, for validation errors, one ``field.path: message`` per line.
The token is sent, never printed.  An ``https://`` URL is verified against the PEM file
``TOLLGATE_CONTROL_PLANE_CA`` names (the workers' setting), else the system trust store.
"""

from __future__ import annotations

import os
import ssl
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from data_plane.tls.channel import channel_context

DEFAULT_URL = "http://127.0.0.1:8001"
PAGE_SIZE = 500  # the admin API's maximum


class AdminError(Exception):
    """The admin API refused a request (``status`` set) or could not be reached (``status`` None)."""

    def __init__(self, message: str, *, status: int | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail

    def errors(self) -> list[tuple[list[str | int], str]]:
        """Validation errors as ``(loc, message)`` (``loc`` without the leading ``"body"``); empty otherwise."""
        if not isinstance(self.detail, list):
            return []
        out: list[tuple[list[str | int], str]] = []
        for err in self.detail:
            if isinstance(err, dict):
                loc = list(err.get("loc") or [])
                out.append((loc[1:] if loc[:1] == ["body"] else loc, str(err.get("msg", ""))))
        return out


def _message(status: int, reason: str, detail: Any) -> str:
    if isinstance(detail, list):
        lines = []
        for err in detail:
            if isinstance(err, dict):
                loc = [str(p) for p in err.get("loc") or []]
                lines.append(f"  {'.'.join(loc[1:] if loc[:1] == ['body'] else loc) or '(request)'}: {err.get('msg')}")
            else:
                lines.append(f"  {err}")
        return f"{status} {reason}:\n" + "\n".join(lines)
    return f"{status} {reason}: {detail}"


def _refused(response: httpx.Response, token_source: str = "") -> AdminError:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text.strip() or response.reason_phrase
    status = response.status_code
    message = _message(status, response.reason_phrase, detail)
    if status == 401:
        message += "\n  " + _token_hint(token_source)
    return AdminError(message, status=status, detail=detail)


def _token_hint(source: str) -> str:
    if source:
        return f"the token came from {source}; give the right one with --token or TOLLGATE_ADMIN_TOKEN"
    return (
        "no admin token: give --token TOKEN or set TOLLGATE_ADMIN_TOKEN (`tollgate up` writes one to "
        f"{data_dir() / 'admin-token'}; TOLLGATE_DATA_DIR names another data dir)"
    )


def data_dir() -> Path:
    return Path(os.environ.get("TOLLGATE_DATA_DIR") or ".tollgate")


def default_token() -> tuple[str | None, str]:
    """The token when none is given, and where it came from: ``TOLLGATE_ADMIN_TOKEN``, else the file
    ``tollgate up`` generated (``<data_dir>/admin-token``), so the CLI works right after ``make up``."""
    env = os.environ.get("TOLLGATE_ADMIN_TOKEN")
    if env:
        return env, "TOLLGATE_ADMIN_TOKEN"
    path = data_dir() / "admin-token"
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None, ""
    return (token, str(path)) if token else (None, "")


class AdminClient:
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = (url or os.environ.get("TOLLGATE_ADMIN_URL") or DEFAULT_URL).rstrip("/")
        self.token_source = "--token"
        if not token:
            token, self.token_source = default_token()
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        ca = os.environ.get("TOLLGATE_CONTROL_PLANE_CA") or None
        try:
            verify = channel_context(ca)
        except (OSError, ssl.SSLError) as exc:
            raise AdminError(f"TOLLGATE_CONTROL_PLANE_CA {ca}: cannot load it ({exc})") from None
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport, verify=verify
        )

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request; the response when its status is below 400, else :class:`AdminError`.
        For bodies that are not JSON (an OpenAPI document in, an SDK zip out); :meth:`request` otherwise.

        A POST carries an ``Idempotency-Key`` of its own, and is sent once more with the same key when the
        connection failed before an answer came: the control plane runs it at most once."""
        attempts = 1
        if method == "POST":
            headers = {"Idempotency-Key": uuid.uuid4().hex, **(headers or {})}
            attempts = 2
        for attempt in range(attempts):
            try:
                response = self._http.request(method, path, json=json, params=params, content=content, headers=headers)
                break
            except httpx.TransportError as exc:
                if attempt + 1 < attempts:
                    continue
                raise AdminError(f"cannot reach the control plane at {self.url}: {exc}") from None
            except httpx.HTTPError as exc:
                raise AdminError(f"cannot reach the control plane at {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise _refused(response, self.token_source)
        return response

    @contextmanager
    def stream(
        self, path: str, *, params: Mapping[str, Any] | None = None, read_timeout: float = 300.0
    ) -> Iterator[httpx.Response]:
        """GET ``path`` and hand over the response before its body is read (``iter_bytes``), for
        answers too large to hold (a usage export).  A refusal is an :class:`AdminError` before
        anything is handed over; a connection that breaks while the body streams is one too.
        ``read_timeout``: the longest wait for the next bytes (a server may think before the first row)."""
        timeout = httpx.Timeout(self._http.timeout.connect, read=read_timeout)
        try:
            with self._http.stream("GET", path, params=params, timeout=timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _refused(response, self.token_source)
                yield response
        except httpx.HTTPError as exc:
            raise AdminError(f"{path}: the connection to the control plane broke: {exc}") from None

    def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        """Send one request; the decoded JSON body (None for 204), or :class:`AdminError`."""
        response = self.send(method, path, json=json, params=params)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise AdminError(f"{method} {path}: the control plane answered with something that is not JSON") from None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, json=body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, json=body)

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    def iterate(self, path: str) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list (``{"items", "total", "limit", "offset", "next"}``), page by page:
        by cursor where the list gives one (``next``), else by offset."""
        offset = 0
        cursor: str | None = None
        while True:
            # a list with cursors answers "next": follow it (stable while rows are added); else offsets
            page = (
                self.get(path, limit=PAGE_SIZE, cursor=cursor)
                if cursor
                else self.get(path, limit=PAGE_SIZE, offset=offset)
            )
            items = page.get("items", [])
            yield from items
            offset += len(items)
            if page.get("next"):
                cursor = page["next"]
                continue
            if not items or offset >= int(page.get("total", 0)):
                return
            cursor = None

    def list_all(self, path: str) -> list[dict[str, Any]]:
        return list(self.iterate(path))
