"""Compiled auth tables: key lookup by hash, expiry against an injected clock, grants, stripping, JWT."""

from __future__ import annotations

import hashlib
import time

import jwt
import pytest

from data_plane.auth import ApiKeyAuth, Denied, JwtAuth, compile_auth, make_authenticator
from data_plane.snapshot import SCHEMA_VERSION, Api, ApiAuth, ApiKey, Customer, Snapshot, SnapshotError

KEY = "tg_0a1b2c3d_secretsecretsecretsecretsecret"
SECRET = "hs256-test-secret-with-enough-bytes-0123456789"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def snapshot(*, expires_at: int | None = None, status: str = "active", auth: ApiAuth | None = None) -> Snapshot:
    apis = (
        Api(id="api-1", name="one", base_path="/one", auth="api_key", auth_settings=auth or ApiAuth()),
        Api(id="api-2", name="two", base_path="/two", auth="api_key"),
    )
    customers = (Customer(id="cust-1", name="acme", status=status, api_ids=("api-1",)),)
    keys = (
        ApiKey(
            id="key-1",
            customer_id="cust-1",
            key_hash=hashlib.sha256(KEY.encode()).hexdigest(),
            prefix="tg_0a1b2c3d",
            expires_at=expires_at,
        ),
    )
    return Snapshot(revision=1, apis=apis, customers=customers, keys=keys).sealed()


def authenticator(snap: Snapshot, api_index: int = 0, clock: Clock | None = None) -> ApiKeyAuth | JwtAuth:
    tables = compile_auth(snap, {}, clock or Clock(1000.0))
    auth = make_authenticator(snap.apis[api_index], tables)
    assert auth is not None
    return auth


def test_valid_key_identifies_customer_strips_header_and_records_use() -> None:
    auth = authenticator(snapshot())
    headers = [(b"host", b"x"), (b"x-api-key", KEY.encode())]
    res = auth.authenticate(headers, b"/one/a", -1)
    assert not isinstance(res, Denied)
    fwd_headers, url, inject, customer_id = res
    assert customer_id
    assert fwd_headers == [(b"host", b"x")]
    assert inject == b"x-customer-id: cust-1\r\nx-key-prefix: tg_0a1b2c3d\r\n"
    assert auth.tables.keys_used == {"key-1": 1000}


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ([], 401, "API key required"),
        ([(b"x-api-key", b"wrong")], 403, "API key is not valid"),
    ],
)
def test_missing_and_unknown(headers: list[tuple[bytes, bytes]], status: int, message: str) -> None:
    res = authenticator(snapshot()).authenticate(headers, b"/", -1)
    assert isinstance(res, Denied) and (res.status, res.message) == (status, message)
    if status == 401:
        assert res.extra.startswith(b"www-authenticate: ApiKey")


def test_expiry_uses_the_injected_clock() -> None:
    clock = Clock(999.0)
    auth = authenticator(snapshot(expires_at=1000), clock=clock)
    headers = [(b"x-api-key", KEY.encode())]
    assert not isinstance(auth.authenticate(headers, b"/", -1), Denied)
    clock.now = 1000.0  # the same tables, no new snapshot: the key stops by itself
    res = auth.authenticate(headers, b"/", -1)
    assert isinstance(res, Denied) and res.status == 403 and res.message == "API key has expired"


def test_suspended_customer_and_api_not_granted() -> None:
    res = authenticator(snapshot(status="suspended")).authenticate([(b"x-api-key", KEY.encode())], b"/", -1)
    assert isinstance(res, Denied) and res.message == "customer is suspended"
    res = authenticator(snapshot(), api_index=1).authenticate([(b"x-api-key", KEY.encode())], b"/", -1)
    assert isinstance(res, Denied) and res.message == "customer is not granted this API"


def test_key_in_query_parameter_is_removed_from_the_url() -> None:
    auth = authenticator(snapshot(auth=ApiAuth(key_query="api_key")))
    url = b"/one/a?x=1&api_key=" + KEY.encode() + b"&y=2"
    res = auth.authenticate([], url, url.find(b"?"))
    assert not isinstance(res, Denied)
    assert res[1] == b"/one/a?x=1&y=2"
    only = b"/one/a?api_key=" + KEY.encode()
    res = auth.authenticate([], only, only.find(b"?"))
    assert not isinstance(res, Denied) and res[1] == b"/one/a"
    assert isinstance(auth.authenticate([(b"x-api-key", KEY.encode())], b"/one/a", -1), Denied)


def test_strip_credential_false_keeps_the_header() -> None:
    auth = authenticator(snapshot(auth=ApiAuth(strip_credential=False)))
    res = auth.authenticate([(b"x-api-key", KEY.encode())], b"/", -1)
    assert not isinstance(res, Denied) and res[0] == [(b"x-api-key", KEY.encode())]


def test_none_auth_compiles_to_no_authenticator() -> None:
    snap = Snapshot(revision=1, apis=(Api(id="a", name="a"),)).sealed()
    assert make_authenticator(snap.apis[0], compile_auth(snap)) is None


def jwt_authenticator(**settings: object) -> JwtAuth:
    api = Api(
        id="api-1",
        name="one",
        auth="jwt",
        auth_settings=ApiAuth(jwt_algorithms=("HS256",), jwt_secret=SECRET, **settings),  # type: ignore[arg-type]
    )
    snap = Snapshot(revision=1, apis=(api,), customers=(Customer(id="cust-1", name="acme", api_ids=("api-1",)),))
    auth = make_authenticator(api, compile_auth(snap.sealed()))
    assert isinstance(auth, JwtAuth)
    return auth


def bearer(claims: dict[str, object], key: str = SECRET) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", b"Bearer " + jwt.encode(claims, key, algorithm="HS256").encode())]


def test_jwt_cases() -> None:
    auth = jwt_authenticator(jwt_audience="shop")
    exp = int(time.time()) + 60
    ok = auth.authenticate(bearer({"sub": "cust-1", "exp": exp, "aud": "shop"}), b"/", -1)
    assert not isinstance(ok, Denied) and ok[2] == b"x-customer-id: cust-1\r\n" and ok[0] == []
    for claims, key, message in (
        ({"sub": "cust-1", "exp": exp - 120, "aud": "shop"}, SECRET, "invalid token: expired"),
        (
            {"sub": "cust-1", "exp": exp, "aud": "shop"},
            "another-secret-of-sufficient-length-000",
            "invalid token: bad signature",
        ),
        ({"sub": "cust-1", "exp": exp, "aud": "other"}, SECRET, "invalid token: wrong audience"),
        ({"sub": "cust-1", "aud": "shop"}, SECRET, "invalid token: missing required claim"),
        ({"sub": "nobody", "exp": exp, "aud": "shop"}, SECRET, "token names no known customer"),
    ):
        res = auth.authenticate(bearer(claims, key), b"/", -1)
        assert isinstance(res, Denied) and res.status == 403 and res.message == message, claims
    res = auth.authenticate([], b"/", -1)
    assert isinstance(res, Denied) and res.status == 401 and res.extra.startswith(b"www-authenticate: Bearer")


def test_snapshot_round_trip_keeps_auth_and_refuses_bad_hash() -> None:
    snap = snapshot(expires_at=5, auth=ApiAuth(key_header="x-key", strip_credential=False))
    again = Snapshot.from_json(snap.to_json())
    assert again == snap and again.hash == snap.hash and again.schema_version == SCHEMA_VERSION
    doc = snap.to_dict()
    doc["keys"][0]["key_hash"] = "not-a-hash"
    doc["hash"] = ""
    with pytest.raises(SnapshotError, match="key_hash"):
        Snapshot.from_dict(doc)


def test_a_1_0_snapshot_keeps_its_hash() -> None:
    old = Snapshot(revision=3, apis=(Api(id="a", name="a"),), schema_version="1.0").sealed()
    doc = old.to_dict()
    assert "customers" not in doc and "keys" not in doc and "auth_settings" not in doc["apis"][0]
    assert Snapshot.from_dict(doc).hash == old.hash
