"""One route's compiled traffic policies (:class:`RoutePolicies`), compiled with mypyc: the request
path reads its slots on every request of a route that has a policy, and a native class's attribute
is a struct field, not a dictionary lookup."""

from __future__ import annotations

from typing import TYPE_CHECKING

from data_plane.observe.tracing import RouteTracing
from data_plane.policies.cache import CacheRule
from data_plane.policies.cors import Cors
from data_plane.policies.iprules import IpRules
from data_plane.policies.transform import RequestTransform, ResponseTransform

if TYPE_CHECKING:
    from data_plane.policies.plugins import PluginChain  # (not compiled: plugins subclass Python classes)


class RoutePolicies:
    """One route's compiled policies; a slot is None when the policy is not used."""

    __slots__ = ("ip_rules", "cors", "request", "response", "cache", "tracing", "plugins")

    def __init__(self) -> None:
        self.ip_rules: IpRules | None = None
        self.cors: Cors | None = None
        self.request: RequestTransform | None = None
        self.response: ResponseTransform | None = None
        self.cache: CacheRule | None = None
        self.tracing: RouteTracing | None = None
        self.plugins: PluginChain | None = None
