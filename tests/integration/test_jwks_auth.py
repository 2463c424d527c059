"""``auth: jwt`` with a JWKS URL through a real control plane and worker: the control plane fetches the
identity provider's keys (a local JWKS server), the worker verifies tokens by kid, rotation arrives
on its own, and an unreachable identity provider leaves the last good keys in force."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.harness import Cluster, ControlPlane, Worker, create, wait_until
from tests.jwks_server import JwksServer, SigningKey

OLD, NEW = SigningKey("kid-old"), SigningKey("kid-new")


class Setup:
    def __init__(self, cp: ControlPlane, worker: Worker, idp: JwksServer, api_id: str, customer_id: str) -> None:
        self.cp, self.worker, self.idp, self.api_id, self.customer_id = cp, worker, idp, api_id, customer_id

    def call(self, token: str) -> httpx.Response:
        return httpx.get(f"{self.worker.url}/idp/x", headers={"authorization": f"Bearer {token}"}, timeout=5.0)

    def status(self) -> dict[str, Any]:
        with self.cp.admin() as a:
            jwks: dict[str, Any] = a.get(f"/v1/apis/{self.api_id}").json()["jwks"]
        return jwks


@pytest.fixture(scope="module")
def setup(module_cluster: Cluster) -> Iterator[Setup]:
    idp = JwksServer([OLD])
    echo = module_cluster.echo("jwks")
    # A short period so that rotation and outage show within the test's deadlines.
    cp = module_cluster.control_plane(extra_env={"TOLLGATE_JWKS_REFRESH_INTERVAL": "0.5"})
    with cp.admin() as a:
        up = create(a, "/v1/upstreams", {"name": "svc"})
        create(a, f"/v1/upstreams/{up['id']}/targets", {"host": "127.0.0.1", "port": echo.port})
        api = create(
            a,
            "/v1/apis",
            {"name": "idp", "base_path": "/idp", "auth": "jwt", "jwt_algorithms": ["RS256"], "jwt_jwks_url": idp.url},
        )
        create(a, f"/v1/apis/{api['id']}/routes", {"path": "/{proxy+}", "upstream_id": up["id"]})
        customer = create(a, "/v1/customers", {"name": "federated", "api_ids": [api["id"]]})
    worker = module_cluster.worker(cp)
    worker.wait_revision(cp.revision())
    try:
        yield Setup(cp, worker, idp, api["id"], customer["id"])
    finally:
        idp.stop()


def test_jwks_keys_admit_rotate_and_outlive_an_outage(setup: Setup) -> None:
    cust = setup.customer_id
    r = setup.call(OLD.token(cust))
    assert r.status_code == 200, r.text
    assert r.json()["headers"]["x-customer-id"] == cust and "authorization" not in r.json()["headers"]

    # A kid the JWKS does not hold is refused like a bad signature; so is a key naming another's kid.
    r = setup.call(NEW.token(cust))
    assert r.status_code == 403 and r.json()["message"] == "invalid token: bad signature"
    assert setup.call(NEW.token(cust, kid="kid-old")).status_code == 403

    # The identity provider rotates: the periodic refresh publishes the new key set to the worker.
    setup.idp.keys = [NEW]
    wait_until(lambda: setup.call(NEW.token(cust)).status_code == 200, timeout=15, what="the rotated key admitted")
    assert setup.call(OLD.token(cust)).status_code == 403
    assert setup.status()["kids"] == ["kid-new"]

    # The identity provider goes away: fetches fail, the last good keys stay in force.
    setup.idp.stop()
    status = wait_until(lambda: (s := setup.status())["last_error"] and s, timeout=15, what="a failed fetch recorded")
    assert status["kids"] == ["kid-new"] and status["last_error"].startswith("request failed")
    r = setup.call(NEW.token(cust))
    assert r.status_code == 200, r.text
    setup.worker.wait_revision(setup.cp.revision())
    assert setup.call(NEW.token(cust)).status_code == 200
