"""TOLLGATE_REDIS_URL forms (limits/redisurl.py): what each parses to, what is refused (with the URL
masked in the message), and masking of every secret a URL can hold."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from data_plane.limits.redisurl import CLUSTER, SENTINEL, SINGLE, mask_url, parse_redis_url


def test_plain_url_with_acl_user_and_db() -> None:
    t = parse_redis_url("redis://alice:s%40cret@cache.example:6380/3")
    assert (t.mode, t.nodes, t.db, t.username, t.password, t.tls) == (
        SINGLE,
        (("cache.example", 6380),),
        3,
        "alice",
        "s@cret",
        None,
    )
    assert t.masked == "redis://alice:***@cache.example:6380/3"


def test_password_only_and_defaults() -> None:
    t = parse_redis_url("redis://:pw@localhost")
    assert (t.nodes, t.db, t.username, t.password, t.timeout) == ((("localhost", 6379),), 0, None, "pw", 0.5)
    assert parse_redis_url("redis://127.0.0.1:6379/0").password is None


def test_tls_options_follow_redis_py_names() -> None:
    t = parse_redis_url(
        "rediss://u:p@h:6390/0?ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem&socket_timeout=2"
    )
    assert t.tls is not None
    assert (t.tls.ca_file, t.tls.cert_file, t.tls.key_file, t.tls.verify, t.tls.check_hostname) == (
        "/ca.pem",
        "/c.pem",
        "/k.pem",
        True,
        True,
    )
    assert t.timeout == 2.0
    assert t.redis_py()["ssl_ca_certs"] == "/ca.pem" and t.redis_py()["ssl_cert_reqs"] == "required"


def test_tls_files_from_settings_unless_the_url_names_them() -> None:
    files = {"ca_file": "/set/ca.pem", "cert_file": "/set/c.pem", "key_file": "/set/k.pem"}
    t = parse_redis_url("rediss://h?ssl_ca_certs=/url/ca.pem", files)
    assert t.tls is not None and (t.tls.ca_file, t.tls.cert_file) == ("/url/ca.pem", "/set/c.pem")
    assert parse_redis_url("redis://h", files).tls is None  # plain redis:// ignores them


def test_tls_context_verifies_by_default() -> None:
    ca = trustme.CA()
    with ca.cert_pem.tempfile() as ca_file:
        ctx = parse_redis_url(f"rediss://h?ssl_ca_certs={ca_file}").tls.context()  # type: ignore[union-attr]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    off = parse_redis_url("rediss://h?ssl_cert_reqs=none").tls.context()  # type: ignore[union-attr]
    assert off.verify_mode == ssl.CERT_NONE and not off.check_hostname


def test_sentinel_url() -> None:
    t = parse_redis_url("redis+sentinel://:pw@s1:26379,s2,[::1]:26380/mymaster/2?sentinel_password=sp")
    assert t.mode == SENTINEL and t.master_name == "mymaster" and t.db == 2
    assert t.nodes == (("s1", 26379), ("s2", 26379), ("::1", 26380))
    assert (t.password, t.sentinel_password) == ("pw", "sp")
    assert t.sentinel_redis_py()["password"] == "sp" and t.redis_py()["password"] == "pw"
    assert t.masked == "redis+sentinel://:***@s1:26379,s2,[::1]:26380/mymaster/2?sentinel_password=***"


def test_cluster_url_and_wait() -> None:
    t = parse_redis_url("rediss+cluster://u:p@n1:7000,n2:7001?wait_replicas=1&wait_timeout=50")
    assert t.mode == CLUSTER and t.nodes == (("n1", 7000), ("n2", 7001)) and t.tls is not None
    assert (t.wait_replicas, t.wait_timeout_ms) == (1, 50)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://:pw@h", "the scheme must be one of"),
        ("h:6379", "the scheme must be one of"),
        ("redis://:pw@h1,h2", "several hosts need"),
        ("redis+sentinel://:pw@s1", "name the master"),
        ("redis+cluster://:pw@n1/2", "database 0 only"),
        ("redis://:pw@h/zero", "the database must be a number"),
        ("redis://:pw@h:99999", "bad port"),
        ("redis://:pw@h:x", "bad port"),
        ("redis://:pw@h?ssl_ca_certs=/ca.pem", "need a rediss:// scheme"),
        ("redis://:pw@h?bogus=1", "unknown option 'bogus'"),
        ("rediss://:pw@h?ssl_cert_reqs=optional", "ssl_cert_reqs must be required or none"),
        ("rediss://:pw@h?ssl_keyfile=/k", "ssl_keyfile needs ssl_certfile"),
        ("redis://:pw@h?sentinel_password=x", r"need redis\+sentinel://"),
        ("redis://:pw@h?socket_timeout=0", "socket_timeout must be > 0"),
        ("redis://:pw@h?wait_replicas=-1", "wait_replicas must be >= 0"),
        ("redis://pw@h", "a user needs a password"),
    ],
)
def test_refused_urls_never_quote_the_password(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as exc:
        parse_redis_url(url)
    assert "pw" not in str(exc.value).replace("password", "")


def test_mask_url() -> None:
    assert mask_url("redis://u:secret@h:1/0") == "redis://u:***@h:1/0"
    assert mask_url("redis://:secret@h") == "redis://:***@h"
    assert mask_url("redis://secret@h") == "redis://***@h"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"
    assert mask_url("x+sentinel://s/m?a=1&sentinel_password=sp&b=2") == "x+sentinel://s/m?a=1&sentinel_password=***&b=2"
    t = parse_redis_url("redis+sentinel://:pw1@s/m?sentinel_password=pw2")
    assert t.redact("WRONGPASS pw1 and pw2") == "WRONGPASS *** and ***"
    assert "pw1" not in repr(t) and "pw2" not in repr(t)


def test_the_worker_command_refuses_a_bad_url_without_showing_it(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tollgate.cli import app

    snapshot = tmp_path / "snapshot.json"
    snapshot.write_text("{}")
    result = CliRunner().invoke(
        app, ["worker", "--snapshot", str(snapshot), "--redis-url", "redis+cluster://:hunter2secret@n1/3"]
    )
    assert result.exit_code == 2
    assert "database 0 only" in result.output and "hunter2secret" not in result.output
