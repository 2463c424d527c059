"""control_plane.jwks.parse_jwks: only usable public RS256 / ES256 keys survive, never private members."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from control_plane.jwks import JwksError, parse_jwks
from tests.jwks_server import SigningKey

RSA = SigningKey("rsa-1")


def _ec_jwk(curve: ec.EllipticCurve, kid: str) -> dict[str, str]:
    jwk: dict[str, str] = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(curve).public_key()))
    return {**jwk, "kid": kid}


def test_private_members_are_dropped_and_public_ones_kept() -> None:
    private = RSA.private_jwk()
    assert {"d", "p", "q", "dp", "dq", "qi"} <= set(private)
    (key,) = parse_jwks({"keys": [private]})
    assert key == {"kid": "rsa-1", "kty": "RSA", "n": private["n"], "e": private["e"]}


def test_only_rsa_and_p256_signing_keys_with_a_kid_are_kept_sorted_by_kid() -> None:
    p256 = _ec_jwk(ec.SECP256R1(), "ec-1")
    keys = parse_jwks(
        {
            "keys": [
                RSA.public_jwk(),
                p256,
                {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"},  # a shared secret: never
                _ec_jwk(ec.SECP384R1(), "ec-384"),  # ES384: not an algorithm of the gateway
                RSA.public_jwk(kid="enc", use="enc"),
                RSA.public_jwk(kid="rs512", alg="RS512"),
                RSA.public_jwk(kid="hs", alg="HS256"),
                {k: v for k, v in RSA.public_jwk().items() if k != "kid"},
                {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
                "not an object",
            ]
        }
    )
    assert [k["kid"] for k in keys] == ["ec-1", "rsa-1"]
    assert keys[0] == {"kid": "ec-1", "kty": "EC", "crv": "P-256", "x": p256["x"], "y": p256["y"]}
    assert keys[1]["alg"] == "RS256"


@pytest.mark.parametrize(
    "doc",
    [[], {"keys": "x"}, {"nokeys": []}, {"keys": []}, {"keys": [{"kty": "oct", "kid": "a", "k": "AAAA"}]}],
)
def test_documents_without_usable_keys_are_errors(doc: object) -> None:
    with pytest.raises(JwksError):
        parse_jwks(doc)
