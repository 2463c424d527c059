"""Request and response transformation (the ``request_transform`` / ``response_transform`` policies).

Headers, in this order on each request (or response): ``remove_headers``, ``rename_headers``
(``{old: new}``: the field lines keep their values), ``set_headers`` (replaces every line of the
name, or adds one), ``add_headers`` (only when the name is absent).  Values may name
``$customer_id`` (empty for an anonymous caller), ``$request_id`` and ``$client_ip``; ``$$`` is a
literal ``$``.  The names the gateway frames or sets itself (hop-by-hop fields, ``host``,
``content-length``, ``x-forwarded-*``, ``x-request-id``, ``x-customer-id``, ``x-key-prefix``) are
refused by the control plane: a transform never changes how a message is framed or who it says
the caller is.

The request's upstream path (after the API's base path is stripped, without the query):
``path_prefix`` ``{"from": "/v1", "to": "/api/v1"}`` replaces a leading prefix on a segment
boundary; ``path_regex`` ``{"pattern": ..., "replacement": ...}`` rewrites the first match
(``\\1`` / ``\\g<name>`` name the captures; compiled once per snapshot; the replacement may only
hold path characters, so what a capture of the canonical path fills in stays a safe path).  Query:
``remove_query`` drops parameters by name, ``add_query`` appends ``name=value`` (values templated
like headers, percent-encoded).
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import quote

from data_plane.errors import SnapshotError

_VAR: Final = re.compile(r"\$(\$|customer_id|request_id|client_ip|[A-Za-z_][A-Za-z0-9_]*)")
VARIABLES: Final = ("customer_id", "request_id", "client_ip")
_TOKEN: Final = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_PATH_CHARS: Final = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$")
_GROUP_REF: Final = re.compile(r"\\(?:[0-9]{1,2}|g<\w+>)")
# never set, renamed or removed by a transform (framing, routing and identity are the gateway's)
RESERVED_REQUEST: Final = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
        "trailer",
        "host",
        "content-length",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-request-id",
        "x-customer-id",
        "x-key-prefix",
    )
)
RESERVED_RESPONSE: Final = frozenset(
    ("connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade", "trailer")
    + ("content-length", "x-request-id")
)

Value = tuple[bytes | int, ...]  # literal parts and variable indexes (into VARIABLES)


class Vars:
    """The values a template may name, for one request."""

    __slots__ = ("values",)

    def __init__(self, customer_id: bytes, request_id: bytes, client_ip: bytes) -> None:
        self.values = (customer_id, request_id, client_ip)


def _render(value: Value | bytes, env: Vars) -> bytes:
    if isinstance(value, bytes):
        return value
    return b"".join(part if isinstance(part, bytes) else env.values[part] for part in value)


class HeaderRules:
    __slots__ = ("remove", "rename", "set", "set_names", "add", "touched")

    def __init__(
        self,
        remove: frozenset[bytes],
        rename: dict[bytes, bytes],
        set_: tuple[tuple[bytes, Value | bytes], ...],
        add: tuple[tuple[bytes, Value | bytes], ...],
    ) -> None:
        self.remove = remove
        self.rename = rename
        self.set = set_
        self.set_names = frozenset(n for n, _ in set_)
        self.add = add
        self.touched = remove | frozenset(rename) | frozenset(n for n, _ in set_)

    def apply(self, headers: list[tuple[bytes, bytes]], env: Vars) -> list[tuple[bytes, bytes]]:
        rename = self.rename
        out = [(rename.get(n, n), v) for n, v in headers if n not in self.remove] if self.touched else list(headers)
        if self.set:
            names = self.set_names
            out = [h for h in out if h[0] not in names]
            out += [(n, _render(v, env)) for n, v in self.set]
        if self.add:
            present = {n for n, _ in out}
            out += [(n, _render(v, env)) for n, v in self.add if n not in present]
        return out


class RequestTransform:
    __slots__ = ("headers", "prefix", "regex", "replacement", "remove_query", "add_query", "rewrites_target")

    def __init__(
        self,
        headers: HeaderRules | None,
        prefix: tuple[bytes, bytes] | None,
        regex: re.Pattern[bytes] | None,
        replacement: bytes,
        remove_query: frozenset[bytes],
        add_query: tuple[tuple[bytes, Value | bytes], ...],
    ) -> None:
        self.headers = headers
        self.prefix = prefix
        self.regex = regex
        self.replacement = replacement
        self.remove_query = remove_query
        self.add_query = add_query
        self.rewrites_target = bool(prefix or regex is not None or remove_query or add_query)

    def target(self, target: bytes, env: Vars) -> bytes:
        """The upstream request target (path and query) after the path and query rules."""
        q = target.find(b"?")
        path, query = (target, b"") if q < 0 else (target[:q], target[q + 1 :])
        prefix = self.prefix
        if prefix is not None:
            old, new = prefix  # old without its trailing slash (b"" for "/")
            if not old or path == old or path.startswith(old + b"/"):
                rest = path[len(old) :]  # b"" or "/..."
                path = new.rstrip(b"/") + rest if rest else new
        if self.regex is not None:
            path = self.regex.sub(self.replacement, path, count=1)
            if not path.startswith(b"/"):
                path = b"/" + path
        if self.remove_query and query:
            removed = self.remove_query
            query = b"&".join(p for p in query.split(b"&") if p.split(b"=", 1)[0] not in removed)
        if self.add_query:
            added = b"&".join(n + b"=" + quote(_render(v, env), safe="").encode("ascii") for n, v in self.add_query)
            query = query + b"&" + added if query else added
        return path + b"?" + query if query else path


class ResponseTransform:
    __slots__ = ("headers",)

    def __init__(self, headers: HeaderRules) -> None:
        self.headers = headers


def _template(value: Any, where: str) -> Value | bytes:
    if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
        raise SnapshotError(f"{where} must be a string without CR, LF or NUL")
    parts: list[bytes | int] = []
    pos = 0
    for m in _VAR.finditer(value):
        parts.append(value[pos : m.start()].encode("latin-1"))
        name = m.group(1)
        if name == "$":
            parts.append(b"$")
        elif name in VARIABLES:
            parts.append(VARIABLES.index(name))
        else:
            raise SnapshotError(f"{where}: ${name} is not one of ${', $'.join(VARIABLES)}")
        pos = m.end()
    parts.append(value[pos:].encode("latin-1"))
    if all(isinstance(p, bytes) for p in parts):
        return b"".join(p for p in parts if isinstance(p, bytes))
    return tuple(p for p in parts if p != b"")


def _name(name: Any, where: str, reserved: frozenset[str]) -> bytes:
    if not isinstance(name, str) or not _TOKEN.match(name):
        raise SnapshotError(f"{where}: {name!r} is not a header name")
    if name.lower() in reserved:
        raise SnapshotError(f"{where}: {name.lower()} is set by the gateway and cannot be transformed")
    return name.lower().encode("ascii")


def _header_rules(doc: dict[str, Any], where: str, reserved: frozenset[str]) -> HeaderRules | None:
    def pairs(key: str) -> tuple[tuple[bytes, Value | bytes], ...]:
        items = doc.get(key) or {}
        if not isinstance(items, dict):
            raise SnapshotError(f"{where}.{key} must be an object of header names to values")
        return tuple(
            (_name(n, f"{where}.{key}", reserved), _template(v, f"{where}.{key}.{n}")) for n, v in items.items()
        )

    remove = doc.get("remove_headers") or []
    rename = doc.get("rename_headers") or {}
    if not isinstance(remove, list) or not isinstance(rename, dict):
        raise SnapshotError(f"{where}: remove_headers must be an array, rename_headers an object")
    rules = HeaderRules(
        frozenset(_name(n, f"{where}.remove_headers", reserved) for n in remove),
        {
            _name(o, f"{where}.rename_headers", reserved): _name(n, f"{where}.rename_headers.{o}", reserved)
            for o, n in rename.items()
        },
        pairs("set_headers"),
        pairs("add_headers"),
    )
    return rules if rules.touched or rules.add else None


def compile_request(doc: dict[str, Any], where: str) -> RequestTransform | None:
    headers = _header_rules(doc, where, RESERVED_REQUEST)
    prefix = None
    pp = doc.get("path_prefix")
    if pp is not None:
        old, new = pp.get("from"), pp.get("to")
        if not (isinstance(old, str) and old.startswith("/") and isinstance(new, str) and new.startswith("/")):
            raise SnapshotError(f"{where}.path_prefix: from and to must be paths starting with /")
        if not _PATH_CHARS.match(new):
            raise SnapshotError(f"{where}.path_prefix.to holds characters that are not path characters")
        prefix = (old.rstrip("/").encode(), new.encode())
    regex = None
    replacement = b""
    pr = doc.get("path_regex")
    if pr is not None:
        pattern, repl = pr.get("pattern"), pr.get("replacement")
        if not isinstance(pattern, str) or not isinstance(repl, str):
            raise SnapshotError(f"{where}.path_regex: pattern and replacement must be strings")
        try:
            regex = re.compile(pattern.encode())
            regex.sub(repl.encode(), b"")  # group references that do not exist fail here ...
        except re.error as exc:
            if "unmatched group" not in str(exc):  # ... except one that is only empty on b""
                raise SnapshotError(f"{where}.path_regex: {exc}") from None
        if not _PATH_CHARS.match(_GROUP_REF.sub("", repl)):
            raise SnapshotError(f"{where}.path_regex.replacement holds characters that are not path characters")
        replacement = repl.encode()
    remove_query = doc.get("remove_query") or []
    add = doc.get("add_query") or {}
    if not isinstance(remove_query, list) or not isinstance(add, dict):
        raise SnapshotError(f"{where}: remove_query must be an array, add_query an object")
    out = RequestTransform(
        headers,
        prefix,
        regex,
        replacement,
        frozenset(quote(str(n), safe="").encode() for n in remove_query),
        tuple((quote(str(n), safe="").encode(), _template(v, f"{where}.add_query.{n}")) for n, v in add.items()),
    )
    return out if headers is not None or out.rewrites_target else None


def compile_response(doc: dict[str, Any], where: str) -> ResponseTransform | None:
    headers = _header_rules(doc, where, RESERVED_RESPONSE)
    return ResponseTransform(headers) if headers is not None else None
