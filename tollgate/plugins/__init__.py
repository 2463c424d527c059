"""Tollgate's plugin interface, version 1: Python code on the request path of a worker, in process.

This module is the whole contract between the gateway and a plugin (docs/plugins.md).  A plugin is
a subclass of :class:`Plugin`, published by its distribution under the entry point group
``tollgate.plugins``, and configured per API or route in the ``plugins`` traffic policy::

    [project.entry-points."tollgate.plugins"]
    request-size-by-customer = "tollgate.plugins.builtin.request_size:RequestSizeByCustomer"

    policies: {"plugins": [{"name": "request-size-by-customer", "config": {"default": 1048576}}]}

The control plane checks each config against the plugin's :attr:`Plugin.config_schema` (JSON
Schema) and refuses one that does not match (422); a worker builds one instance per route when it
compiles a snapshot (``__init__`` is where a plugin turns its config into lookup tables) and calls
the hooks of that instance on every request of the route:

* :meth:`Plugin.on_request`, after authentication, the body limit and the request transform,
  before the plan's limits: reads a :class:`RequestView`, may add upstream or response header
  lines, may answer instead of the upstream by returning a :class:`Refusal`;
* :meth:`Plugin.on_response`, when the upstream's response head arrives: reads a
  :class:`ResponseView`, may add response header lines.

Hooks are plain (not async) and run on the worker's event loop: they must not block.  An exception
in a hook is the gateway's to handle: that request is answered 500 (``plugin <name> failed``, never
the exception's text), the traceback is logged (at most once a minute per plugin and exception
type) and counted (``tollgate_plugin_errors_total{plugin}``), and the worker goes on serving.

Versioning: :data:`API_VERSION` is this interface's version; a plugin names the version it was
written for in :attr:`Plugin.api_version`, and a gateway loads only plugins of its own version.
Additions (a new view attribute, a new optional hook) keep the version; a change to what exists
raises it.

Stdlib only, and nothing here is compiled (mypyc classes cannot be subclassed by plain Python).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, ClassVar, Final

from data_plane.policies.transform import RESERVED_REQUEST, RESERVED_RESPONSE

__all__ = ["API_VERSION", "Plugin", "Refusal", "RequestView", "ResponseView", "RESERVED_REQUEST", "RESERVED_RESPONSE"]

API_VERSION: Final = 1

_TOKEN: Final = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_BAD_VALUE: Final = re.compile(r"[\r\n\x00]")


def header_line(name: str, value: str, reserved: frozenset[str]) -> tuple[bytes, bytes]:
    """``(name, value)`` as the gateway writes it (lower-case name, Latin-1 bytes), checked: a
    header name (RFC 9110 token), not one the gateway frames or sets itself (``reserved``), a
    value without CR, LF or NUL.  Raises ValueError (in a hook: the request is answered 500)."""
    if not isinstance(name, str) or not _TOKEN.match(name):
        raise ValueError(f"{name!r} is not a header name")
    low = name.lower()
    if low in reserved:
        raise ValueError(f"{low} is set by the gateway: a plugin cannot add it")
    if not isinstance(value, str) or _BAD_VALUE.search(value):
        raise ValueError(f"the value of {low} must be a string without CR, LF or NUL")
    return low.encode("ascii"), value.encode("latin-1")  # (UnicodeEncodeError is a ValueError)


def _lookup(headers: list[tuple[bytes, bytes]], name: str) -> str | None:
    key = name.lower().encode("latin-1")
    found: bytes | None = None
    for n, v in headers:
        if n == key:
            found = v if found is None else found + b", " + v  # RFC 9110 5.3: one line per list member
    return None if found is None else found.decode("latin-1")


class Refusal:
    """What :meth:`Plugin.on_request` returns to answer the request itself: ``status`` (300-599, not
    304) with the gateway's JSON error body ``{"message": message, "request_id": ...}`` and the
    header lines ``headers`` (``(name, value)`` pairs: ``Retry-After``, ``Location``...)."""

    __slots__ = ("status", "message", "headers")

    def __init__(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        if not isinstance(status, int) or isinstance(status, bool) or not 300 <= status <= 599 or status == 304:
            raise ValueError(f"a refusal's status must be 300-599 (not 304), not {status!r}")
        if not isinstance(message, str):
            raise TypeError("a refusal's message must be a string")
        self.status: Final = status
        self.message: Final = message
        self.headers: Final = tuple(header_line(n, v, RESERVED_RESPONSE) for n, v in headers)


class RequestView:
    """One request as a plugin sees it: read-only, and only what a policy decision needs.

    ``path`` is the canonical path (percent-decoded where that is safe, dot segments resolved: the
    path routing and authentication saw, with the API's base path); ``query`` the raw query string
    without ``?`` (an API key sent in the query is already removed); ``customer_id`` / ``plan_id``
    are None for an anonymous caller (or a customer without a plan); ``body_length`` is the declared
    ``Content-Length`` (None for a chunked body or no body: a hook runs before the body arrives).

    :meth:`add_upstream_header` and :meth:`add_response_header` add a header line to the request the
    upstream gets or to every answer to this request; a name a plugin adds replaces the lines of
    that name the client (or the upstream) sent, so a client cannot forge it.  Built by the gateway
    only for routes with plugins; a hook must not keep it after it returns.
    """

    __slots__ = (
        "_method",
        "_path",
        "_query",
        "_headers",
        "_client_ip",
        "_customer_id",
        "_plan_id",
        "_route_id",
        "_api_name",
        "_request_id",
        "_body_length",
        "_upstream",
        "_response",
    )

    def __init__(
        self,
        method: str,
        path: str,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        client_ip: bytes,
        customer_id: str | None,
        plan_id: str | None,
        route_id: str,
        api_name: str,
        request_id: bytes,
        body_length: int | None,
    ) -> None:
        self._method = method
        self._path = path
        self._query = query
        self._headers = headers
        self._client_ip = client_ip
        self._customer_id = customer_id
        self._plan_id = plan_id
        self._route_id = route_id
        self._api_name = api_name
        self._request_id = request_id
        self._body_length = body_length
        # what the hooks added (None: nothing), read by the gateway after they ran
        self._upstream: list[tuple[bytes, bytes]] | None = None
        self._response: list[tuple[bytes, bytes]] | None = None

    @property
    def method(self) -> str:
        return self._method

    @property
    def path(self) -> str:
        return self._path

    @property
    def query(self) -> str:
        return self._query.decode("latin-1")

    @property
    def client_ip(self) -> str:
        """The trusted client address (the socket peer, or what a trusted proxy's X-Forwarded-For names)."""
        return self._client_ip.decode("latin-1")

    @property
    def customer_id(self) -> str | None:
        return self._customer_id

    @property
    def plan_id(self) -> str | None:
        return self._plan_id

    @property
    def route_id(self) -> str:
        return self._route_id

    @property
    def api_name(self) -> str:
        return self._api_name

    @property
    def request_id(self) -> str:
        return self._request_id.decode("latin-1")

    @property
    def body_length(self) -> int | None:
        return self._body_length

    def header(self, name: str) -> str | None:
        """The request's field ``name`` (any case), several lines joined with ", "; None when absent.
        The credential the route authenticates with is not among them (the gateway strips it)."""
        return _lookup(self._headers, name)

    def add_upstream_header(self, name: str, value: str) -> None:
        """Send ``name: value`` to the upstream (not the names the gateway sets: ``host``,
        ``content-length``, hop-by-hop fields, ``x-forwarded-*``, ``x-request-id``, ``x-customer-id``...)."""
        line = header_line(name, value, RESERVED_REQUEST)
        if self._upstream is None:
            self._upstream = [line]
        else:
            self._upstream.append(line)

    def add_response_header(self, name: str, value: str) -> None:
        """Add ``name: value`` to the answer to this request, whoever gives it (the upstream, a later
        refusal, a gateway error)."""
        line = header_line(name, value, RESERVED_RESPONSE)
        if self._response is None:
            self._response = [line]
        else:
            self._response.append(line)


class ResponseView:
    """The upstream's response head as a plugin sees it: the status, its fields, and
    :meth:`add_header` (a name added replaces the upstream's lines of that name)."""

    __slots__ = ("_status", "_headers", "_added")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self._status = status
        self._headers = headers
        self._added: list[tuple[bytes, bytes]] | None = None

    @property
    def status(self) -> int:
        return self._status

    def header(self, name: str) -> str | None:
        return _lookup(self._headers, name)

    def add_header(self, name: str, value: str) -> None:
        line = header_line(name, value, RESERVED_RESPONSE)
        if self._added is None:
            self._added = [line]
        else:
            self._added.append(line)


class Plugin:
    """The base of every plugin.  A subclass sets the class attributes and overrides one hook or both.

    * ``name``: the name configs use, the same as its entry point's name (lower case, ``-``);
    * ``api_version``: the :data:`API_VERSION` it was written for (required: not inherited);
    * ``config_schema``: a JSON Schema (a dict) its config must match (the control plane checks it);
    * ``description``: one line for ``GET /v1/plugins`` (default: the docstring's first line).

    ``__init__`` is called with the (validated) config once per route each time a worker compiles a
    snapshot: precompute there, and raise ValueError for a config the schema could not refuse.  One
    instance serves every request of its route, concurrently interleaved on the event loop: keep no
    per-request state on ``self``.
    """

    name: ClassVar[str]
    api_version: ClassVar[int]
    config_schema: ClassVar[dict[str, Any]] = {"type": "object"}
    description: ClassVar[str] = ""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_request(self, request: RequestView) -> Refusal | None:
        """Called for each request of the route; a :class:`Refusal` answers it (the upstream never sees it)."""
        return None

    def on_response(self, response: ResponseView) -> None:
        """Called with the upstream's response head, before the client gets it."""
        return None
