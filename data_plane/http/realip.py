"""The client's IP address behind load balancers and proxies: ``X-Forwarded-For`` through trusted hops.

Behind an AWS ALB or nginx the socket peer is the balancer, not the client.  With trusted proxies
configured (``TOLLGATE_TRUSTED_PROXIES``: comma-separated CIDRs or addresses, IPv4 and IPv6), the
client IP is derived as nginx's ``set_real_ip_from`` + ``real_ip_header X-Forwarded-For`` +
``real_ip_recursive on`` (and Envoy's ``xff_num_trusted_hops``, counted by address) do:

* the socket peer is not trusted: the peer is the client; ``X-Forwarded-For`` is not looked at
  (anyone can write one);
* else the ``X-Forwarded-For`` field lines are one list, in order (``a, b`` + ``c`` = ``a, b, c``),
  walked from the right: trusted addresses are skipped, the first untrusted one is the client;
* all of them trusted: the leftmost;
* an entry that is not an IP address stops the walk, and the client is **the last good address**
  (the trusted hop right of the garbage, or the peer): whoever wrote the garbage is not a proxy we
  trust, so nothing from there leftwards can be believed — nginx stops the same way.  Empty list
  elements (``a,,b``) are skipped (RFC 9110 §5.6.1 has recipients ignore them);
* an entry with a port (``203.0.113.7:4711``, ``[2001:db8::1]:4711``, as Azure Application Gateway
  writes them) counts as its address; an IPv4-mapped IPv6 address (``::ffff:203.0.113.7``, a
  dual-stack listener's peers) is matched and reported as its IPv4 address.

Cost (a per-connection and a per-request part, :class:`data_plane.http.protocol.ClientConnection`):
with no trusted proxies nothing runs at all (the client IP is the peer, taken once per connection);
otherwise the peer is checked once per connection, and only a trusted peer's requests walk their
``X-Forwarded-For``.  Networks are parsed once at start (:func:`parse_trusted`) into integer
(mask, network) pairs, so a check is integer arithmetic, not ``ipaddress`` containment; plain IPv4
entries are parsed by hand (:func:`_ipv4`); other entries go through ``ipaddress`` once and are
remembered (:data:`SLOW_CACHE_ENTRIES`).  Compiled with mypyc, a request with one entry: IPv4
0.45 us (through ``ipaddress``: 3.7 us), IPv6 ~10 us the first time, then a dict lookup.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

_XFF = b"x-forwarded-for"
# Entries that are not plain IPv4 (IPv6, ports) go through ipaddress at ~10 us; the answers are kept
# per worker, up to this many entries, then the cache starts over (a client's address repeats).
SLOW_CACHE_ENTRIES = 4096


def parse_trusted(spec: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 192.0.2.1, 2001:db8::/32"`` -> networks; ValueError naming the bad item.
    Strict: ``10.0.0.1/8`` (host bits set) is refused rather than guessed at."""
    out: list[Network] = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item))
        except ValueError as exc:
            raise ValueError(
                f"trusted proxies (TOLLGATE_TRUSTED_PROXIES): {item!r} is not an IP address or CIDR ({exc})"
            ) from None
    return tuple(out)


def parse_address(raw: bytes) -> Address | None:
    """One ``X-Forwarded-For`` entry (or a socket peer) -> its address; None when it is not one."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    if "%" in text:
        # An IPv6 zone (fe80::1%eth0) names an interface of the host that wrote it, meaningless here;
        # and ipaddress accepts nearly any characters in one, quotes included (the access log).
        return None
    if text.startswith("["):  # [v6]:port (or [v6])
        end = text.find("]")
        if end < 0:
            return None
        port = text[end + 1 :]
        if port and not (port[0] == ":" and _is_port(port[1:])):
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # v4:port (a bare v6 address has at least two colons)
        text, _, port = text.partition(":")
        if not _is_port(port):
            return None
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _is_port(text: str) -> bool:
    return 0 < len(text) <= 5 and text.isdigit()


def _ipv4(raw: bytes) -> int:
    """A dotted-quad IPv4 address as written canonically (no leading zeros) -> its value, else -1.

    The common case, parsed without ``ipaddress`` (whose pure-Python parser and ``str()`` took
    ~3.7 us per request for one XFF entry, a third of a whole proxied request): an entry that
    passes here is already its canonical text, so it is returned as it came."""
    parts = raw.split(b".")
    if len(parts) != 4:
        return -1
    n = 0
    for part in parts:
        if not 0 < len(part) <= 3 or (len(part) > 1 and part[0] == 48):  # 48: "0", a leading zero
            return -1
        octet = 0
        for c in part:
            if not 48 <= c <= 57:
                return -1
            octet = octet * 10 + c - 48
        if octet > 255:
            return -1
        n = n << 8 | octet
    return n


class TrustedProxies:
    """The proxies whose ``X-Forwarded-For`` is believed, and the client-IP derivation."""

    __slots__ = ("networks", "_v4", "_v6", "_slow")

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)
        self._v4 = tuple((int(n.netmask), int(n.network_address)) for n in self.networks if n.version == 4)
        self._v6 = tuple((int(n.netmask), int(n.network_address)) for n in self.networks if n.version == 6)
        self._slow: dict[bytes, tuple[bytes, bool] | None] = {}  # entry -> (canonical text, trusted)

    def trusts_address(self, addr: Address) -> bool:
        n = int(addr)
        for mask, net in self._v4 if addr.version == 4 else self._v6:
            if n & mask == net:
                return True
        return False

    def _trusts_v4(self, n: int) -> bool:
        for mask, net in self._v4:
            if n & mask == net:
                return True
        return False

    def trusts(self, peer_ip: bytes) -> bool:
        """Is this socket peer a trusted proxy (once per connection)."""
        n = _ipv4(peer_ip)
        if n >= 0:
            return self._trusts_v4(n)
        addr = parse_address(peer_ip.partition(b"%")[0])  # a link-local peer's zone is the kernel's
        return addr is not None and self.trusts_address(addr)

    def client_ip(self, peer_ip: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
        """The client address for a request from the *trusted* peer ``peer_ip`` (see the module
        docstring); the peer itself when there is no usable ``X-Forwarded-For`` entry."""
        good = peer_ip  # the last address the walk accepted (canonical text)
        # The last field line holds the rightmost entries: walk the lines backwards, each from its end.
        for name, value in reversed(headers):
            if name != _XFF:
                continue
            end = len(value)
            while end > 0:
                comma = value.rfind(b",", 0, end)
                item = value[comma + 1 : end].strip()
                end = comma
                if not item:
                    continue  # an empty list element
                n = _ipv4(item)
                if n >= 0:
                    good = item
                    if not self._trusts_v4(n):
                        return item
                    continue
                slow = self._slow
                # Not get() with a sentinel: mypyc unboxes tuples, so an identity test would fail.
                known = slow[item] if item in slow else self._parse_slow(item)
                if known is None:
                    return good  # not an address: the walk stops
                good, trusted = known
                if not trusted:
                    return good
        return good

    def _parse_slow(self, item: bytes) -> tuple[bytes, bool] | None:
        """IPv6, a port, IPv4-mapped, or not an address: through ipaddress, remembered."""
        addr = parse_address(item)
        known = None if addr is None else (str(addr).encode(), self.trusts_address(addr))
        slow = self._slow
        if len(slow) >= SLOW_CACHE_ENTRIES:
            slow.clear()
        slow[item] = known
        return known
