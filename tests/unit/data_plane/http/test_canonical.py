"""The canonical path and host forms (data_plane/http/canonical.py): one spelling per path, refusals."""

from __future__ import annotations

import pytest

from data_plane.http.canonical import (
    canonical_host,
    canonical_path,
    canonical_template,
    same_authority,
    split_authority,
)

UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"


def test_plain_path_is_returned_as_it_is() -> None:
    raw = b"/orders/items/42"
    assert canonical_path(raw) is raw


@pytest.mark.parametrize("ch", list(UNRESERVED))
def test_every_escaped_unreserved_character_is_decoded_in_every_position(ch: str) -> None:
    word = "zec" + ch + "r"
    for i in range(len(word)):
        for spelling in (f"%{ord(word[i]):02X}", f"%{ord(word[i]):02x}"):
            raw = ("/" + word[:i] + spelling + word[i + 1 :] + "/r").encode()
            assert canonical_path(raw) == ("/" + word + "/r").encode(), raw


@pytest.mark.parametrize(
    ("raw", "canon"),
    [
        (b"/a%2ab", b"/a%2Ab"),  # reserved escapes keep their encoding, hex upper-cased
        (b"/a%3bb", b"/a%3Bb"),  # an encoded ';' is data, not a path parameter
        (b"/a%2fb", b"/a%2Fb"),  # an encoded slash stays encoded (the exchange checks its routing)
        (b"/a%20b", b"/a%20b"),
        (b"/%E2%82%AC", b"/%E2%82%AC"),  # valid UTF-8 stays encoded
        (b"//zec/r", b"/zec/r"),  # empty segments merged
        (b"/zec//r///", b"/zec/r/"),  # ... a trailing slash stays
        (b"/a{b}|c", b"/a%7Bb%7D%7Cc"),  # printable characters not allowed raw are encoded
        (b"/.well-known/x", b"/.well-known/x"),  # a segment starting with a dot is not a dot segment
        (b"/a/..b", b"/a/..b"),
        (b"/", b"/"),
    ],
)
def test_canonical_forms(raw: bytes, canon: bytes) -> None:
    assert canonical_path(raw) == canon


@pytest.mark.parametrize(
    "raw",
    [
        b"/zec%5Cr",
        b"/zec\\r",
        b"/zec;x=y/r",
        b"/zec%00r",
        b"/zec%0Ar",
        b"/zec%7F",
        b"/zec%",
        b"/zec%4",
        b"/zec%G1",
        b"/%C0%AF",  # overlong '/'
        b"/%C0%AE%C0%AE/x",  # overlong '..'
        b"/%E0%80%AF",  # three-byte overlong '/'
        b"/%FF",
        b"/%ED%A0%80",  # a UTF-16 surrogate
        b"/a/../b",
        b"/a/./b",
        b"/a/%2e%2E/b",
        b"/a/%2E",
        b"/a/.%2e",
        b"/\xc3\xa9",  # raw non-ASCII
        b"/a\x01b",
        b"/a#frag",
    ],
)
def test_paths_without_a_safe_canonical_form_are_refused(raw: bytes) -> None:
    assert canonical_path(raw) is None


def test_templates_are_compiled_to_the_same_form() -> None:
    assert canonical_template("/%7Aec/{id}/%2a") == "/zec/{id}/%2A"
    assert canonical_template("/items/{id+}") == "/items/{id+}"
    assert canonical_template("/") == "/"


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        (b"API.Example.com", "api.example.com"),
        (b"api.example.com:8000", "api.example.com"),
        (b"api.example.com.", "api.example.com"),
        (b"127.0.0.1:80", "127.0.0.1"),
        (b"[::1]:8000", "[::1]"),
        (b"[2001:DB8::1]", "[2001:db8::1]"),
        (b"", ""),
    ],
)
def test_host_routing_form(raw: bytes, host: str) -> None:
    assert canonical_host(raw) == host


@pytest.mark.parametrize(
    "raw",
    [
        b"a b",
        b"a/b",
        b"a@b",
        b"a:b:c",
        b"a:",
        b"a:99999",
        b"a:+80",
        b"[::1",
        b"[zz]",
        b"..",
        b".a",
        b"a..b",
        b"a\\b",
        b"a%41",
    ],
)
def test_invalid_hosts_are_refused(raw: bytes) -> None:
    assert canonical_host(raw) is None


def test_absolute_form_is_split_into_authority_and_origin_form() -> None:
    assert split_authority(b"http://GW.test:8000/p?q=1") == (b"http", b"GW.test:8000", b"/p?q=1")
    assert split_authority(b"HTTPS://gw.test") == (b"https", b"gw.test", b"/")
    assert split_authority(b"http://gw.test?x") == (b"http", b"gw.test", b"/?x")
    assert split_authority(b"http://user@gw.test/") is None
    assert split_authority(b"ftp://gw.test/") is None
    assert split_authority(b"*") is None


def test_host_and_authority_agree_with_default_ports() -> None:
    assert same_authority(b"GW.test", b"gw.test:80", b"http")
    assert same_authority(b"gw.test:443", b"gw.test", b"https")
    assert not same_authority(b"gw.test", b"gw.test:8080", b"http")
    assert not same_authority(b"other.test", b"gw.test", b"http")
