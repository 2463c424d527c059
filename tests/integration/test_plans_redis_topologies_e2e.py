"""Usage plans through real worker processes on each Redis topology the store speaks: a 3-master
Cluster, Sentinel, TLS with an ACL user.  Two workers, 200 concurrent requests, quota 100: exactly
100 admitted on every one; /status names the topology and never shows a password, nor does the log.

The URL reaches the workers through ``TOLLGATE_REDIS_URL`` (a secret stays off the command line)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Cluster
from tests.integration.plans_support import PlanGateway, build_gateway, burst
from tests.integration.redis_servers import RedisCluster, SentinelSet, TlsRedis, require_binaries

SECRETS = {"cluster": "e2e-cluster-pw-41", "sentinel": "e2e-master-pw-52", "tls": "e2e-acl-pw-63"}
SENTINEL_SECRET = "e2e-sentinel-pw-74"
DEFAULT_SECRET = "e2e-default-pw-85"


@pytest.fixture(scope="module")
def gw(module_cluster: Cluster) -> PlanGateway:
    return build_gateway(module_cluster.control_plane(), [], module_cluster.echo("topologies"))


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_binaries()
    rc = RedisCluster(tmp_path_factory.mktemp("e2e-cluster"), password=SECRETS["cluster"])
    try:
        yield rc.start().url
    finally:
        rc.stop()


@pytest.fixture(scope="module")
def sentinel_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_binaries()
    s = SentinelSet(tmp_path_factory.mktemp("e2e-sentinel"), SECRETS["sentinel"], SENTINEL_SECRET)
    try:
        yield s.start().url()
    finally:
        s.stop()


@pytest.fixture(scope="module")
def tls_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_binaries()
    server = TlsRedis(tmp_path_factory.mktemp("e2e-tls"), DEFAULT_SECRET, SECRETS["tls"])
    try:
        yield server.start().url(user=True)
    finally:
        server.stop()


@pytest.mark.parametrize("mode", ["cluster", "sentinel", "tls"])
def test_two_workers_exact_on_each_topology(
    module_cluster: Cluster, gw: PlanGateway, request: pytest.FixtureRequest, mode: str
) -> None:
    url = request.getfixturevalue(f"{mode}_url")
    prefix = f"tg:{uuid.uuid4().hex[:10]}:"  # the TLS server's ACL user owns tg:* only
    names = [f"topo-{mode}-{i}-{uuid.uuid4().hex[:6]}" for i in range(2)]
    gw.workers = [
        module_cluster.worker(
            gw.cp,
            name=name,
            extra=("--limit-fail-mode", "closed"),
            env={"TOLLGATE_REDIS_URL": url, "TOLLGATE_REDIS_PREFIX": prefix, "TOLLGATE_USAGE_FLUSH_INTERVAL": "0.2"},
        )
        for name in names
    ]
    try:
        gw.sync()
        plan = gw.plan(quota={"limit": 100, "period": "DAY"})
        cid, _, key = gw.customer(plan["id"])
        ports = [w.port for w in gw.workers]
        replies = burst([(ports[i % 2], "/shop/other", key) for i in range(200)])
        assert sum(r.status == 200 for r in replies) == 100
        assert sum(r.status == 429 for r in replies) == 100
        gw.wait_usage(cid, 100)
        for w in gw.workers:
            limiter = w.status()["limiter"]
            assert limiter["available"] is True and limiter["unavailable_checks"] == 0
            assert limiter["redis"]["mode"] == ("single" if mode == "tls" else mode)
            assert limiter["redis"]["tls"] is (mode == "tls")
            text = json.dumps(limiter)
            assert "***@" in text
            assert all(s not in text for s in (*SECRETS.values(), SENTINEL_SECRET))
    finally:
        for w in gw.workers:
            w.proc.stop()
    for name in names:
        log = Path(module_cluster.tmp / f"{name}.log").read_text(errors="replace")
        assert all(s not in log for s in (*SECRETS.values(), SENTINEL_SECRET))
