"""The client IP derivation behind trusted proxies (data_plane/http/realip.py): nginx real_ip with
``real_ip_recursive on``."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from data_plane.http.realip import TrustedProxies, _ipv4, parse_address, parse_trusted
from data_plane.settings import WorkerSettings

TRUSTED = TrustedProxies(parse_trusted("127.0.0.1/32, 10.0.0.0/8, 2001:db8:aa::/48, 192.0.2.1"))


def xff(*lines: str) -> list[tuple[bytes, bytes]]:
    return [(b"host", b"t"), *((b"x-forwarded-for", line.encode()) for line in lines), (b"accept", b"*/*")]


@pytest.mark.parametrize(
    ("lines", "client"),
    [
        ((), "127.0.0.1"),  # no XFF: the peer
        (("203.0.113.7",), "203.0.113.7"),
        (("198.51.100.1, 203.0.113.7",), "203.0.113.7"),  # the rightmost untrusted: not the spoofable left one
        (("203.0.113.7, 10.0.0.2, 10.9.9.9",), "203.0.113.7"),  # recursive: trusted hops skipped
        (("203.0.113.7", "10.0.0.2"), "203.0.113.7"),  # two field lines are one list, in order
        (("198.51.100.1, 203.0.113.7", "10.0.0.2, 192.0.2.1"), "203.0.113.7"),
        (("10.0.0.3, 10.0.0.2",), "10.0.0.3"),  # all trusted: the leftmost
        (("10.0.0.3", "127.0.0.1"), "10.0.0.3"),
        (("garbage",), "127.0.0.1"),  # malformed rightmost: the last good address is the peer
        (("203.0.113.7, garbage, 10.0.0.2",), "10.0.0.2"),  # the walk stops at garbage
        (("203.0.113.7, unknown",), "127.0.0.1"),  # RFC 7239 obfuscated identifiers are not addresses
        (("203.0.113.7, 300.1.1.1",), "127.0.0.1"),
        (("203.0.113.7, 010.0.0.1",), "127.0.0.1"),  # leading zeros: ambiguous (octal?), refused
        (("",), "127.0.0.1"),  # an empty field value
        ((" , ,",), "127.0.0.1"),
        (("203.0.113.7,,10.0.0.2, ",), "203.0.113.7"),  # empty list elements are skipped
        (("203.0.113.7\t,\t10.0.0.2",), "203.0.113.7"),  # optional whitespace is tabs too
        (("203.0.113.7:4711",), "203.0.113.7"),  # a port is dropped
        (("203.0.113.7:99999999",), "127.0.0.1"),
        (("2001:db8::7",), "2001:db8::7"),
        (("2001:DB8:0::7, 2001:db8:aa::1",), "2001:db8::7"),  # IPv6 hop trusted by prefix; canonical form
        (("[2001:db8::7]:4711, 10.0.0.2",), "2001:db8::7"),
        (("[2001:db8::7]x",), "127.0.0.1"),
        (("::ffff:203.0.113.7",), "203.0.113.7"),  # IPv4-mapped: reported as IPv4
        (("203.0.113.7, ::ffff:10.0.0.2",), "203.0.113.7"),  # ...and matched against IPv4 networks
        (("2001:db8:aa::9, 2001:db8:aa::1",), "2001:db8:aa::9"),  # all trusted (IPv6): the leftmost
        (("203.0.113.7, 192.0.2.2",), "192.0.2.2"),  # a single address trusts only itself
        (('203.0.113.7, fe80::1%"x',), "127.0.0.1"),  # an IPv6 zone: not an address here (nor log-safe)
    ],
)
def test_client_ip_walks_xff_from_the_right_through_trusted_hops(lines: tuple[str, ...], client: str) -> None:
    assert TRUSTED.client_ip(b"127.0.0.1", xff(*lines)).decode() == client


def test_ipv6_peer_and_ipv4_mapped_peer_are_matched() -> None:
    t = TrustedProxies(parse_trusted("::1, 127.0.0.0/8"))
    assert t.trusts(b"::1") and t.trusts(b"127.0.0.5") and t.trusts(b"::ffff:127.0.0.1")
    assert not t.trusts(b"::2") and not t.trusts(b"128.0.0.1") and not t.trusts(b"") and not t.trusts(b"x")
    assert t.client_ip(b"::1", xff("203.0.113.7, ::1")) == b"203.0.113.7"
    assert TrustedProxies(parse_trusted("fe80::/10")).trusts(b"fe80::1%eth0")  # the kernel's zone on a peer


def test_nothing_trusted_trusts_no_peer() -> None:
    t = TrustedProxies(())
    assert not t.trusts(b"127.0.0.1") and not t.trusts(b"::1")


def test_parse_address_forms() -> None:
    assert str(parse_address(b"203.0.113.7")) == "203.0.113.7"
    assert str(parse_address(b"[2001:db8::1]")) == "2001:db8::1"
    assert parse_address(b"2001:db8::1:80") is not None  # many colons: an IPv6 address, not v6:port
    assert parse_address(b"203.0.113.7:") is None and parse_address(b"[::1") is None
    assert parse_address(b"example.com") is None and parse_address(b"1") is None
    assert parse_address("\u00e9t\u00e9".encode("latin-1")) is None  # not ASCII
    assert TRUSTED.client_ip(b"127.0.0.1", [(b"x-forwarded-for", b"203.0.113.7, \xe9")]) == b"127.0.0.1"


@pytest.mark.parametrize(
    "spec", ["10.0.0.1/8", "10.0.0.0/33", "localhost", "10.0.0.0/8; 10.1.0.0/16", "2001:db8::/129"]
)
def test_invalid_trusted_proxies_are_refused_at_start(spec: str) -> None:
    with pytest.raises(ValueError, match="TOLLGATE_TRUSTED_PROXIES"):
        parse_trusted(spec)
    with pytest.raises(ValueError, match="TOLLGATE_TRUSTED_PROXIES"):
        WorkerSettings.from_env({"TOLLGATE_TRUSTED_PROXIES": spec})


def test_trusted_proxies_setting() -> None:
    assert WorkerSettings.from_env({}).trusted_proxies == ""
    s = WorkerSettings.from_env({"TOLLGATE_TRUSTED_PROXIES": " 10.0.0.0/8 , ::1 ,"})
    assert [str(n) for n in parse_trusted(s.trusted_proxies)] == ["10.0.0.0/8", "::1/128"]
    assert WorkerSettings.from_env({}, trusted_proxies="192.0.2.0/24").trusted_proxies == "192.0.2.0/24"


@pytest.mark.parametrize(
    "raw", [b"1.2.3", b"1.2.3.4.5", b"256.1.1.1", b"1.2.3.04", b"1..3.4", b"1.2.3.4 ", b"+1.2.3.4"]
)
def test_fast_ipv4_parser_refuses_what_is_not_a_canonical_dotted_quad(raw: bytes) -> None:
    assert _ipv4(raw) == -1


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_fast_ipv4_parser_reads_every_canonical_address(n: int) -> None:
    assert _ipv4(str(IPv4Address(n)).encode()) == n


@given(st.text(alphabet="0123456789.:x ", max_size=18))
def test_fast_ipv4_parser_accepts_exactly_what_ipaddress_writes(text: str) -> None:
    """The hand parser and the ipaddress module agree: accepted iff it is an address in its own
    canonical spelling (anything else goes the ipaddress way, or is refused)."""
    try:
        canonical = str(IPv4Address(text)) == text
    except ValueError:
        canonical = False
    assert (_ipv4(text.encode()) >= 0) == canonical


def test_entries_parsed_the_slow_way_are_remembered_and_the_memory_is_bounded(monkeypatch) -> None:
    from data_plane.http import realip

    t = TrustedProxies(parse_trusted("127.0.0.1, 2001:db8:aa::/48"))
    for _ in range(2):  # the second time from the cache, same answers
        assert t.client_ip(b"127.0.0.1", xff("2001:db8::7, 2001:db8:aa::1")) == b"2001:db8::7"
        assert t.client_ip(b"127.0.0.1", xff("203.0.113.7, garbage")) == b"127.0.0.1"
        assert t.client_ip(b"127.0.0.1", xff("2001:db8:aa::9")) == b"2001:db8:aa::9"  # trusted, leftmost
    monkeypatch.setattr(realip, "SLOW_CACHE_ENTRIES", 3)
    for i in range(1, 11):
        assert t.client_ip(b"127.0.0.1", xff(f"2001:db8::{i:x}")) == f"2001:db8::{i:x}".encode()
        assert len(t._slow) <= 3
