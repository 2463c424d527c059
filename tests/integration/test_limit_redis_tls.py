"""The Redis store over TLS (``rediss://``, certificates from trustme) with ACL users: a least-privilege
user and the default user's password, exact across two processes; a server that requires a client
certificate; the server verified by default; a wrong password masked everywhere it could show."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from data_plane.limits.periods import DAY
from data_plane.limits.policy import UNAVAILABLE, LimitPolicy, Quota
from data_plane.limits.redis import RedisStore
from data_plane.limits.stores import open_store
from data_plane.settings import WorkerSettings
from tests.integration.redis_servers import TlsRedis, require_binaries
from tests.integration.redis_support import resolve, two_processes_check

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "default-secret-77a"
USER_PASSWORD = "tollgate-secret-0b4"
POLICY = LimitPolicy(quota=Quota(limit=3, period=DAY))


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    require_binaries()
    server = TlsRedis(tmp_path_factory.mktemp("redis-tls"), PASSWORD, USER_PASSWORD)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    require_binaries()
    server = TlsRedis(tmp_path_factory.mktemp("redis-mtls"), PASSWORD, USER_PASSWORD, require_client_cert=True)
    try:
        yield server.start()
    finally:
        server.stop()


def allowed(url: str, n: int = 5, **kwargs: object) -> tuple[list[str], RedisStore]:
    """The decisions' limits ("" = admitted) of n concurrent checks through a new fail-closed store."""

    async def body() -> tuple[list[str], RedisStore]:
        store = RedisStore(url, prefix=f"tg:{uuid.uuid4().hex}:", fail_mode="closed", **kwargs)  # type: ignore[arg-type]
        pending = [store.check("c-tls", POLICY) for _ in range(n)]
        limits = [(await resolve(p)).limit for p in pending]
        await store.close()
        return limits, store

    return asyncio.run(body())


def test_two_processes_exact_with_an_acl_user_over_tls(tls: TlsRedis) -> None:
    prefix = f"tg:{uuid.uuid4().hex[:8]}:"  # the ACL user may touch tg:* keys only
    outs = two_processes_check(tls.url(user=True), prefix)
    assert sum(o["quota"] for o in outs) == 100
    assert sum(o["burst"] for o in outs) == 100
    assert len(tls.server.client().keys(f"{prefix}*")) == 2


def test_password_only_auth_and_the_acl_key_pattern(tls: TlsRedis) -> None:
    limits, _ = allowed(tls.url(user=False))
    assert limits == ["", "", "", "quota", "quota"]

    async def outside_its_keys() -> list[str]:  # the ACL user's keys are tg:*; another prefix is refused
        store = RedisStore(tls.url(user=True), prefix="other:", fail_mode="closed")
        limits = [(await resolve(store.check("c", POLICY))).limit for _ in range(2)]
        await store.close()
        return limits

    assert asyncio.run(outside_its_keys()) == [UNAVAILABLE, UNAVAILABLE]


def test_server_certificate_verified_by_default(tls: TlsRedis, caplog: pytest.LogCaptureFixture) -> None:
    no_ca = tls.url().split("?")[0]  # the system's trust store does not know the test CA
    with caplog.at_level(logging.WARNING, "tollgate.limits"):
        limits, store = allowed(no_ca, n=2)
    assert limits == [UNAVAILABLE, UNAVAILABLE] and store.outages == 1
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
    limits, _ = allowed(no_ca + "?ssl_cert_reqs=none")  # opted out explicitly
    assert limits == ["", "", "", "quota", "quota"]


def test_client_certificate_required(mtls: TlsRedis) -> None:
    limits, _ = allowed(mtls.url(client_cert=True))
    assert limits == ["", "", "", "quota", "quota"]
    limits, store = allowed(mtls.url(client_cert=False), n=2)
    assert limits == [UNAVAILABLE, UNAVAILABLE] and store.outages == 1


def test_tls_files_from_the_worker_settings(mtls: TlsRedis) -> None:
    settings = WorkerSettings.from_env(
        {
            "TOLLGATE_REDIS_URL": mtls.url().split("?")[0],
            "TOLLGATE_REDIS_CA": str(mtls.ca_file),
            "TOLLGATE_REDIS_CERT": str(mtls.client_cert_file),
            "TOLLGATE_REDIS_KEY": str(mtls.client_key_file),
            "TOLLGATE_LIMIT_FAIL_MODE": "closed",
            "TOLLGATE_REDIS_PREFIX": f"tg:{uuid.uuid4().hex}:",
        }
    )

    async def body() -> list[str]:
        store = open_store(settings)
        assert isinstance(store, RedisStore)
        limits = [(await resolve(p)).limit for p in [store.check("c", POLICY) for _ in range(4)]]
        await store.close()
        return limits

    assert asyncio.run(body()) == ["", "", "", "quota"]


def test_a_wrong_password_is_never_shown(tls: TlsRedis, caplog: pytest.LogCaptureFixture) -> None:
    wrong = "wrong-secret-e19"
    url = tls.url().replace(USER_PASSWORD, wrong)
    with caplog.at_level(logging.DEBUG):
        limits, store = allowed(url, n=2)
    assert limits == [UNAVAILABLE, UNAVAILABLE]
    assert "WRONGPASS" in caplog.text or "AUTH" in caplog.text
    status = json.dumps(store.status())
    for secret in (wrong, USER_PASSWORD, PASSWORD):
        assert secret not in caplog.text and secret not in status
    assert store.status()["url"].startswith(f"rediss://{TlsRedis.USER}:***@127.0.0.1:")
