"""A JWT's customer claim may hold the customer's ``external_id`` (its identity provider's id) instead
of Tollgate's customer id (issue 19, item 9); snapshot 1.8 carries it."""

from __future__ import annotations

import time

import jwt
import pytest

from data_plane.auth import Denied, JwtAuth, compile_auth, make_authenticator
from data_plane.snapshot import Api, ApiAuth, Customer, Snapshot, SnapshotError

SECRET = "hs256-test-secret-with-enough-bytes-0123456789"
IDP_ID = "auth0|64f0c2a9e1b2"


def _snapshot(*customers: Customer) -> Snapshot:
    api = Api(
        id="api-1",
        name="one",
        auth="jwt",
        auth_settings=ApiAuth(jwt_algorithms=("HS256",), jwt_secret=SECRET, jwt_customer_claim="sub"),
    )
    return Snapshot(revision=1, apis=(api,), customers=customers).sealed()


def _auth(snap: Snapshot) -> JwtAuth:
    auth = make_authenticator(snap.apis[0], compile_auth(snap))
    assert isinstance(auth, JwtAuth)
    return auth


def _bearer(sub: str) -> list[tuple[bytes, bytes]]:
    token = jwt.encode({"sub": sub, "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    return [(b"authorization", b"Bearer " + token.encode())]


def test_the_claim_may_name_the_external_id_or_the_tollgate_id() -> None:
    snap = _snapshot(
        Customer(id="cust-1", name="acme", api_ids=("api-1",), external_id=IDP_ID),
        Customer(id="cust-2", name="other", api_ids=("api-1",)),
    )
    auth = _auth(snap)
    by_external = auth.authenticate(_bearer(IDP_ID), b"/", -1)
    assert not isinstance(by_external, Denied) and by_external[2] == b"x-customer-id: cust-1\r\n"
    by_id = auth.authenticate(_bearer("cust-2"), b"/", -1)
    assert not isinstance(by_id, Denied) and by_id[2] == b"x-customer-id: cust-2\r\n"
    unknown = auth.authenticate(_bearer("auth0|somebody-else"), b"/", -1)
    assert isinstance(unknown, Denied) and unknown.status == 403


def test_a_suspended_customer_is_refused_by_external_id_too() -> None:
    snap = _snapshot(Customer(id="cust-1", name="acme", status="suspended", api_ids=("api-1",), external_id=IDP_ID))
    res = _auth(snap).authenticate(_bearer(IDP_ID), b"/", -1)
    assert isinstance(res, Denied) and res.status == 403


def test_snapshot_1_8_round_trips_the_external_id_and_refuses_a_duplicate() -> None:
    snap = _snapshot(Customer(id="cust-1", name="acme", external_id=IDP_ID))
    assert Snapshot.from_json(snap.to_json()).customers[0].external_id == IDP_ID
    assert tuple(map(int, snap.schema_version.split("."))) >= (1, 8)
    plain = _snapshot(Customer(id="cust-1", name="acme"))
    assert "external_id" not in plain.to_dict()["customers"][0]  # left out while empty: hashes unchanged
    doc = _snapshot(
        Customer(id="cust-1", name="a", external_id=IDP_ID), Customer(id="cust-2", name="b", external_id=IDP_ID)
    ).to_dict()
    doc["hash"] = ""
    with pytest.raises(SnapshotError, match="external_id"):
        Snapshot.from_dict(doc)
