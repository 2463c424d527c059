"""The README of a generated client package, written for the API's customer (it replaces the
generator's generic one): install, connect with the key once, call an operation, handle a 429.

The operations are read from the generated package itself (``api/<tag>/<operation>.py``), so the
names shown are the ones that import.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _snake(name: str) -> str:
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _operations(document: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    """snake operationId -> (METHOD, path, summary) from the document."""
    out: dict[str, tuple[str, str, str]] = {}
    for path, item in (document.get("paths") or {}).items():
        for method, op in (item or {}).items():
            if method in _METHODS and isinstance(op, dict) and op.get("operationId"):
                summary = str(op.get("summary") or op.get("description") or "").strip().splitlines()
                out[_snake(str(op["operationId"]))] = (method.upper(), path, summary[0] if summary else "")
    return out


def _auth_text(mode: str, header: str, query: str | None) -> str:
    if mode == "jwt":
        return (
            "This API takes a **JWT** issued for you (by your identity provider or the API's owner): give it "
            "as `api_key`; it is sent as `Authorization: Bearer <token>` on every call."
        )
    if query:
        return f"Your API key is sent in the query parameter `{query}` on every call."
    if mode == "api_key":
        return f"Your API key is sent in the `{header}` header on every call."
    return (
        "This API needs no key today; a key given to `connect()` is still sent (in `x-api-key`), so your "
        "code keeps working if the API starts requiring one."
    )


def write_readme(
    out: Path, package: str, project: str, document: dict[str, Any], *, mode: str, header: str, query: str | None
) -> None:
    info = document.get("info") or {}
    title = str(info.get("title") or project)
    base_url = str(((document.get("servers") or [{}])[0]).get("url") or "")
    ops = _operations(document)
    modules = sorted((p.parent.name, p.stem) for p in (out / package / "api").glob("*/*.py") if p.stem != "__init__")
    rows = "\n".join(
        f"| `{package}.api.{tag}.{name}` | {ops.get(name, ('', '', ''))[0]} `{ops.get(name, ('', '', ''))[1]}` "
        f"| {ops.get(name, ('', '', ''))[2]} |"
        for tag, name in modules
    )
    tag, name = modules[0] if modules else ("default", "some_operation")
    text = f"""# {project}

A Python client for **{title}** (version {info.get("version", "")}), served through the Tollgate API gateway
at `{base_url}`. Generated from the API's OpenAPI document; works on **Python 3.9 and newer**.

## Install

```sh
pip install ./{project}          # this folder, or the zip it came in
```

It needs `httpx`, `attrs` and `typing_extensions` (installed with it).

## Connect once, with your key

```python
from {package}.gateway import connect

client = connect(api_key="YOUR-KEY")
```

{_auth_text(mode, header, query)} Keep the key out of your source code (an environment variable, a
secret store): anyone who has it calls the API as you. `connect(api_key=..., base_url="https://...")`
points the client at another address (a staging gateway); other keyword arguments go to the client
(`timeout=httpx.Timeout(10.0)`, `verify_ssl=...`, `httpx_args={{...}}`).

## Call an operation

Each operation is a module with four functions: `sync` (the parsed body), `sync_detailed` (a
`Response` with `status_code`, `headers`, `content` and `parsed`), and their `asyncio` twins.

```python
from {package}.api.{tag} import {name}

response = {name}.sync_detailed(client=client)   # add the operation's parameters as keyword arguments
print(response.status_code, response.parsed)
```

| module | operation | what it does |
|---|---|---|
{rows}

## Too many requests (429): wait and retry

The gateway enforces your plan: a rate (requests per second, with a burst) and a quota (requests per
day, week or month). Past either, the call is answered **429** with a `Retry-After` header (seconds) and
`RateLimit` headers; `response.parsed` is then a `TollgateError` (its `message` says which limit).

```python
import time
from {package}.gateway import Throttled, retry_after

response = {name}.sync_detailed(client=client)
if response.status_code == 429:
    time.sleep(retry_after(response) or 1.0)     # seconds the gateway asks you to wait
    response = {name}.sync_detailed(client=client)

# or let it raise:
try:
    Throttled.check({name}.sync_detailed(client=client))
except Throttled as exc:
    print("throttled, retry in", exc.retry_after, "s")
```

A quota that is used up stays 429 until the next period starts: `Retry-After` says when.

## Other answers from the gateway

| status | meaning |
|---|---|
| 401 | no key (or token) was sent |
| 403 | the key is unknown, revoked or expired, or your plan does not include this API |
| 404 / 405 | no such path / method on this API |
| 413 | the request body is over the API's limit |
| 502 / 503 / 504 | the service behind the gateway failed, is unavailable, or timed out: retry later |

These come back as a `Response` too (`sync_detailed`); `sync` returns `None` for a status the operation
does not document, or raises `errors.UnexpectedStatus` with `connect(..., raise_on_unexpected_status=True)`.
"""
    (out / "README.md").write_text(text)
