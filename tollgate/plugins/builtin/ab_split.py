"""``ab-split``: an A/B (or A/B/n) split of a route's traffic, sticky per caller, named to the upstream.

Config::

    {"variants": [{"name": "control", "weight": 90}, {"name": "new-checkout", "weight": 10}],
     "sticky_header": "x-user-id",     # optional: whose value keeps a caller on one variant
     "override_header": "x-ab-force",  # optional: a request naming a variant here gets that one
     "header": "x-ab-variant",         # the request header the upstream reads (default x-ab-variant)
     "response_header": false,         # also tell the client (same header name)
     "salt": "checkout-2026-12"}       # optional: another salt deals the callers again

The variant is picked by a stable hash (BLAKE2b of the salt and the caller's key) over the weights,
so the same caller gets the same variant on every worker and across restarts and config pushes
(while the variants and weights stay).  The caller's key is the ``sticky_header`` value when the
request has one, else the customer id (an identified caller), else the client address.  The
client's own line of the variant header, if any, is replaced: only the override header (when
configured) lets a client choose.
"""

from __future__ import annotations

import bisect
import hashlib
from typing import Any

from tollgate.plugins import API_VERSION, RESERVED_REQUEST, RESERVED_RESPONSE, Plugin, Refusal, RequestView, header_line

_HEADER = {"type": "string", "pattern": "^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$"}


class AbSplit(Plugin):
    """Header-based A/B split: a sticky variant per caller, sent upstream as x-ab-variant."""

    name = "ab-split"
    api_version = API_VERSION
    description = "A/B split by weights, sticky per caller (header, customer or address), named in x-ab-variant"
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["variants"],
        "properties": {
            "variants": {
                "type": "array",
                "minItems": 1,
                "maxItems": 100,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name", "weight"],
                    "properties": {
                        "name": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
                        "weight": {"type": "integer", "minimum": 0, "maximum": 1000000},
                    },
                },
            },
            "sticky_header": {**_HEADER, "description": "header whose value keeps a caller on one variant"},
            "override_header": {**_HEADER, "description": "header naming the variant a request gets (testing)"},
            "header": {**_HEADER, "description": "request header that names the variant (default x-ab-variant)"},
            "response_header": {"type": "boolean", "description": "also add the variant header to the response"},
            "salt": {"type": "string", "maxLength": 200, "description": "another salt deals callers again"},
        },
    }

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        variants = config["variants"]
        names = [v["name"] for v in variants]
        if len(set(names)) != len(names):
            raise ValueError("variants: each name must be used once")
        total = 0
        self.bounds: list[int] = []  # cumulative weights: variant i owns [bounds[i-1], bounds[i])
        self.names: list[str] = []
        for v in variants:
            if v["weight"]:
                total += v["weight"]
                self.bounds.append(total)
                self.names.append(v["name"])
        if not total:
            raise ValueError("variants: at least one weight must be above 0")
        self.total = total
        self.known = frozenset(names)  # (a weight-0 variant can still be forced by the override header)
        self.header = config.get("header", "x-ab-variant").lower()
        header_line(self.header, "x", RESERVED_REQUEST)  # a name the gateway sets is refused here, not per request
        self.response_header = bool(config.get("response_header", False))
        if self.response_header:
            header_line(self.header, "x", RESERVED_RESPONSE)
        self.sticky = config.get("sticky_header")
        self.override = config.get("override_header")
        self.salt = config.get("salt", "").encode() + b"\0"

    def pick(self, key: str) -> str:
        """The variant of the caller ``key``: the same for the same key, weights respected over many keys."""
        digest = hashlib.blake2b(self.salt + key.encode(), digest_size=8).digest()
        point = int.from_bytes(digest, "big") % self.total
        return self.names[bisect.bisect_right(self.bounds, point)]

    def on_request(self, request: RequestView) -> Refusal | None:
        variant: str | None = None
        if self.override is not None:
            forced = request.header(self.override)
            if forced is not None and forced in self.known:
                variant = forced
        if variant is None:
            key = request.header(self.sticky) if self.sticky is not None else None
            if not key:
                cid = request.customer_id
                key = "customer:" + cid if cid is not None else "ip:" + request.client_ip
            variant = self.pick(key)
        request.add_upstream_header(self.header, variant)
        if self.response_header:
            request.add_response_header(self.header, variant)
        return None
