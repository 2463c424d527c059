"""A small client for the admin API, used by CLI commands that talk to a running control plane.

``TOLLGATE_ADMIN_URL`` (default http://127.0.0.1:8001) and ``TOLLGATE_ADMIN_TOKEN`` (sent as
``Authorization: Bearer`` when set; never printed).  Errors become ``AdminError`` with the status
and the server's ``detail``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import httpx

DEFAULT_ADMIN_URL = "http://127.0.0.1:8001"


class AdminError(Exception):
    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class AdminClient:
    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 180.0) -> None:
        url = url or os.environ.get("TOLLGATE_ADMIN_URL") or DEFAULT_ADMIN_URL
        token = token if token is not None else os.environ.get("TOLLGATE_ADMIN_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise AdminError(0, f"cannot reach the admin API at {self.http.base_url}: {exc}") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise AdminError(response.status_code, detail)
        return response

    def find_api(self, name_or_id: str) -> dict[str, Any]:
        """An API by name (or id), walking the paginated list."""
        offset = 0
        while True:
            page = self.request("GET", "/v1/apis", params={"limit": 500, "offset": offset}).json()
            for api in page["items"]:
                if name_or_id in (api["name"], api["id"]):
                    return dict(api)
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                raise AdminError(404, f"no api named {name_or_id!r}")

    def import_openapi(self, body: bytes, content_type: str, *, upstream: str | None, dry_run: bool) -> dict[str, Any]:
        params: Mapping[str, str] = {
            **({"upstream_id": upstream} if upstream else {}),
            "dry_run": "true" if dry_run else "false",
        }
        response = self.request(
            "POST", "/v1/apis/import", params=params, content=body, headers={"content-type": content_type}
        )
        return dict(response.json())

    def sdk(self, api_id: str, lang: str) -> bytes:
        return self.request("GET", f"/v1/apis/{api_id}/sdk", params={"lang": lang}).content
