"""``request-size-by-customer``: the largest request body a caller may send, by customer and plan.

Config (all optional)::

    {"default": 1048576,                     # bytes for everyone not named below (absent: no limit)
     "anonymous": 0,                         # bytes for a caller the route does not identify (default: "default")
     "plans": {"<plan id>": 5242880},        # a plan's customers
     "customers": {"<customer id>": null},   # one customer (null: no limit); wins over its plan
     "require_length": false}                # refuse a body that declares no length (411)

A request whose declared ``Content-Length`` is over the caller's limit is answered 413 before a
byte of its body is read.  What a pre-body hook cannot see is a chunked body's size: it declares
none.  Such a body passes unless ``require_length`` is set (then it is answered 411 Length
Required); the API's own ``max_body_bytes`` still counts every streamed byte, so set that to the
largest limit here to bound chunked bodies too.
"""

from __future__ import annotations

from typing import Any

from tollgate.plugins import API_VERSION, Plugin, Refusal, RequestView

_LIMIT = {"type": ["integer", "null"], "minimum": 0}


class RequestSizeByCustomer(Plugin):
    """Largest request body by customer and plan (413 over it)."""

    name = "request-size-by-customer"
    api_version = API_VERSION
    description = "largest request body by customer id and plan id, with a default (413 over it)"
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "default": {**_LIMIT, "description": "bytes for callers not named in plans or customers; null: no limit"},
            "anonymous": {**_LIMIT, "description": "bytes for callers without a customer (default: default)"},
            "plans": {"type": "object", "additionalProperties": _LIMIT, "description": "plan id -> bytes"},
            "customers": {"type": "object", "additionalProperties": _LIMIT, "description": "customer id -> bytes"},
            "require_length": {
                "type": "boolean",
                "description": "answer 411 to a body without Content-Length (chunked) when a limit applies",
            },
        },
    }

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.default: int | None = config.get("default")
        self.anonymous: int | None = config.get("anonymous", self.default)
        self.plans: dict[str, int | None] = dict(config.get("plans") or {})
        self.customers: dict[str, int | None] = dict(config.get("customers") or {})
        self.require_length = bool(config.get("require_length", False))
        # The refusals are built once per limit, not per request.
        limits = {self.default, self.anonymous, *self.plans.values(), *self.customers.values()} - {None}
        self.refusals = {n: Refusal(413, f"request body over the {n} bytes allowed for this caller") for n in limits}
        self.no_length = Refusal(411, "a request body needs a Content-Length here")

    def limit_for(self, customer_id: str | None, plan_id: str | None) -> int | None:
        if customer_id is None:
            return self.anonymous
        if customer_id in self.customers:
            return self.customers[customer_id]
        if plan_id is not None and plan_id in self.plans:
            return self.plans[plan_id]
        return self.default

    def on_request(self, request: RequestView) -> Refusal | None:
        limit = self.limit_for(request.customer_id, request.plan_id)
        if limit is None:
            return None
        length = request.body_length
        if length is None:
            if self.require_length and request.header("transfer-encoding") is not None:
                return self.no_length
            return None
        return self.refusals[limit] if length > limit else None
