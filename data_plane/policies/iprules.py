"""IP allow / deny lists (the ``ip_rules`` policy), judged on the trusted client address.

The address is the one the edge-hardening work trusts (``data_plane/http/realip.py``: the socket
peer, or behind a trusted proxy the address its ``X-Forwarded-For`` names), never a header the
client sets itself.  A listed ``deny`` network refuses, whatever ``allow`` says; a non-empty
``allow`` refuses every address outside it.  IPv4 and IPv6 networks in CIDR form; an IPv4-mapped
IPv6 peer (``::ffff:192.0.2.1``) is judged as its IPv4 address.  A verdict is kept per address
(a bounded map), so a client's requests after its first cost one dict lookup.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from data_plane.errors import SnapshotError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_MEMO_MAX = 4096  # addresses remembered per rule set, then it starts over


class IpRules:
    __slots__ = ("allow", "deny", "_memo")

    def __init__(self, allow: tuple[Network, ...], deny: tuple[Network, ...]) -> None:
        self.allow = allow
        self.deny = deny
        self._memo: dict[bytes, bool] = {}

    def allows(self, client_ip: bytes) -> bool:
        verdict = self._memo.get(client_ip)
        if verdict is None:
            verdict = self._judge(client_ip)
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()
            self._memo[client_ip] = verdict
        return verdict

    def _judge(self, client_ip: bytes) -> bool:
        try:
            addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
                client_ip.decode("ascii").split("%", 1)[0]
            )
        except ValueError:
            return False  # not an address (a Unix socket peer): only an open rule set lets it in
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if any(addr in net for net in self.deny if net.version == addr.version):
            return False
        if not self.allow:
            return True
        return any(addr in net for net in self.allow if net.version == addr.version)


def networks(values: Any, where: str) -> tuple[Network, ...]:
    if values is None:
        return ()
    if not isinstance(values, list):
        raise SnapshotError(f"{where} must be an array of CIDR networks")
    out = []
    for i, value in enumerate(values):
        try:
            out.append(ipaddress.ip_network(value, strict=False))
        except (TypeError, ValueError):
            raise SnapshotError(f"{where}[{i}]: {value!r} is not an IPv4 or IPv6 network") from None
    return tuple(out)


def compile_rules(doc: dict[str, Any], where: str) -> IpRules | None:
    allow = networks(doc.get("allow"), f"{where}.allow")
    deny = networks(doc.get("deny"), f"{where}.deny")
    return IpRules(allow, deny) if allow or deny else None
