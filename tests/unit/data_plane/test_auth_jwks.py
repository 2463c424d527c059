"""JwtAuth with keys from a JWKS: the key is picked by kid, for the API's asymmetric algorithms only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
from cryptography.hazmat.primitives import serialization

from data_plane.auth import Denied, JwtAuth, compile_auth
from data_plane.snapshot import Api, ApiAuth, Customer, Jwk, Snapshot, SnapshotError
from tests.jwks_server import SigningKey

OLD, NEW = SigningKey("old"), SigningKey("new")
SECRET = "hs256-test-secret-with-enough-bytes-0123456789"
URL = "https://idp.example/.well-known/jwks.json"


def _jwk(key: SigningKey) -> Jwk:
    j = key.public_jwk()
    return Jwk(kid=j["kid"], kty="RSA", alg="RS256", n=j["n"], e=j["e"])


def _snapshot(*keys: SigningKey, algorithms: tuple[str, ...] = ("RS256",), secret: str | None = None) -> Snapshot:
    auth = ApiAuth(jwt_algorithms=algorithms, jwt_secret=secret, jwt_jwks_url=URL, jwt_jwks=tuple(map(_jwk, keys)))
    api = Api(id="api-1", name="one", base_path="/one", auth="jwt", auth_settings=auth)
    return Snapshot(revision=1, apis=(api,), customers=(Customer(id="cust-1", name="c", api_ids=("api-1",)),)).sealed()


def _auth(snap: Snapshot) -> JwtAuth:
    return JwtAuth(snap.apis[0], compile_auth(snap, {}))


def _call(auth: JwtAuth, token: str) -> Denied | str:
    res = auth.authenticate([(b"authorization", b"Bearer " + token.encode())], b"/one/x", -1)
    return res if isinstance(res, Denied) else res[3].id


def test_token_verified_with_the_key_its_kid_names() -> None:
    auth = _auth(_snapshot(OLD, NEW))
    assert _call(auth, OLD.token("cust-1")) == "cust-1"
    assert _call(auth, NEW.token("cust-1")) == "cust-1"
    # Signed by NEW but naming OLD's kid: OLD's key checks it, and refuses it.
    res = _call(auth, NEW.token("cust-1", kid="old"))
    assert isinstance(res, Denied) and (res.status, res.message) == (403, "invalid token: bad signature")


def test_unknown_or_missing_kid_is_a_bad_signature() -> None:
    auth = _auth(_snapshot(OLD))
    for token in (NEW.token("cust-1"), jwt.encode({"sub": "cust-1", "exp": time.time() + 60}, NEW.private, "RS256")):
        res = _call(auth, token)
        assert isinstance(res, Denied) and (res.status, res.message) == (403, "invalid token: bad signature")


def test_no_keys_fetched_yet_refuses_every_rs256_token() -> None:
    res = _call(_auth(_snapshot()), OLD.token("cust-1"))
    assert isinstance(res, Denied) and res.status == 403


def _hs256_signed_with(secret: bytes, kid: str) -> str:
    # PyJWT refuses a PEM as an HMAC secret, so the forgery is built by hand.
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = b64(json.dumps({"sub": "cust-1", "exp": int(time.time()) + 60}).encode())
    mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(mac)}"


def test_jwks_key_is_never_an_hmac_key() -> None:
    # Algorithm confusion: an HS256 token "signed" with the public key's PEM, naming its kid.
    pem = OLD.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = _hs256_signed_with(pem, "old")
    only_rs = _call(_auth(_snapshot(OLD)), forged)
    assert isinstance(only_rs, Denied) and only_rs.message == "invalid token: algorithm not allowed"
    # With HS256 also allowed, HS256 uses jwt_secret only: the forged token fails its signature.
    both = _auth(_snapshot(OLD, algorithms=("HS256", "RS256"), secret=SECRET))
    res = _call(both, forged)
    assert isinstance(res, Denied) and res.message == "invalid token: bad signature"
    assert _call(both, _hs256_signed_with(SECRET.encode(), "old")) == "cust-1"
    assert _call(both, OLD.token("cust-1")) == "cust-1"


def test_rsa_jwks_key_is_not_used_for_es256() -> None:
    auth = _auth(_snapshot(OLD, algorithms=("ES256",)))
    assert auth.jwks == {"ES256": {}}


def test_snapshot_round_trip_and_older_snapshots_keep_their_hash() -> None:
    snap = _snapshot(OLD, NEW)
    again = Snapshot.from_json(snap.to_json())
    assert again.apis[0].auth_settings == snap.apis[0].auth_settings and again.hash == snap.hash
    wire = json.loads(snap.to_json())["apis"][0]["auth_settings"]
    assert wire["jwt_jwks_url"] == URL and {k["kid"] for k in wire["jwt_jwks"]} == {"old", "new"}
    assert all(set(k) == {"kid", "kty", "alg", "n", "e"} for k in wire["jwt_jwks"])
    # A 1.3 snapshot sealed by the previous control plane (hash computed by it) still loads as sealed.
    old = Snapshot.from_json(SNAPSHOT_1_3)
    assert old.hash == "7ac504f57ba9b5801fd01f96c93134644c4fe4c935318ab0585c617bfc00bed1"
    assert old.compute_hash() == old.hash and old.apis[0].auth_settings.jwt_jwks_url is None


SNAPSHOT_1_3 = (
    '{"apis":[{"auth":"jwt","auth_settings":{"jwt_algorithms":["HS256"],"jwt_audience":null,'
    '"jwt_customer_claim":"sub","jwt_issuer":null,"jwt_public_key":null,'
    '"jwt_secret":"hs256-test-secret-with-enough-bytes-0123456789","key_header":"x-api-key","key_query":null,'
    '"strip_credential":true},"base_path":"/","hosts":[],"id":"a","max_body_bytes":null,"name":"a","routes":[],'
    '"strip_base_path":true}],"generated_at":"","hash":"7ac504f57ba9b5801fd01f96c93134644c4fe4c935318ab0585c617bfc00bed1",'
    '"revision":1,"schema_version":"1.3","upstreams":[]}'
)


def test_snapshot_refuses_a_secret_key_in_the_jwks() -> None:
    doc = _snapshot(OLD).to_dict()
    del doc["hash"]
    doc["apis"][0]["auth_settings"]["jwt_jwks"] = [{"kid": "h", "kty": "oct", "k": "c2VjcmV0"}]
    try:
        Snapshot.from_dict(doc)
    except SnapshotError as exc:
        assert "kty" in str(exc)
    else:
        raise AssertionError("an oct key was accepted")
