"""`tollgate worker --processes 2` without Redis: a plan's limits hold exactly across the processes
(issue 19, item 6; before, each process had its own counters: burst 10 admitted 20).  The processes
share one counters table (data_plane/limits/shared.py); SO_REUSEPORT spreads the connections."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.harness import Cluster, Worker, free_ports
from tests.integration.plans_support import PlanGateway, build_gateway, burst


@pytest.fixture(scope="module")
def gw(module_cluster: Cluster) -> Iterator[PlanGateway]:
    echo = module_cluster.echo("processes")
    cp = module_cluster.control_plane()
    status = free_ports(2)
    first = module_cluster.worker(cp, name="two-processes", status_port=status, extra=("--processes", "2"))
    second = Worker(first.url, f"http://127.0.0.1:{status + 1}", first.port, first.proc)
    module_cluster.wait_http(first.proc, f"{second.status_url}/status")
    assert first.status()["limiter"]["store"] == second.status()["limiter"]["store"] == "SharedStore"
    yield build_gateway(cp, [first, second], echo)


def _decisions(gw: PlanGateway) -> list[dict[str, int]]:
    return [w.status()["limiter"]["decisions"] for w in gw.workers]


def test_a_burst_of_10_admits_exactly_10_across_two_processes(gw: PlanGateway) -> None:
    plan = gw.plan(throttle={"rate": 0.01, "burst": 10})
    _, _, key = gw.customer(plan["id"])
    before = _decisions(gw)
    replies = burst([(gw.workers[0].port, "/shop/other", key)] * 60)
    assert sum(r.status == 200 for r in replies) == 10
    assert sum(r.status == 429 for r in replies) == 50
    after = _decisions(gw)
    # both processes decided some of the 60 (SO_REUSEPORT), yet 10 in all were admitted
    decided = [sum(a.values()) - sum(b.values()) for a, b in zip(after, before, strict=True)]
    assert all(n > 0 for n in decided) and sum(decided) == 60, decided
    assert sum(a["admitted"] - b["admitted"] for a, b in zip(after, before, strict=True)) == 10


def test_a_quota_of_15_admits_exactly_15_across_two_processes(gw: PlanGateway) -> None:
    plan = gw.plan(quota={"limit": 15, "period": "DAY"})
    _, _, key = gw.customer(plan["id"])
    replies = burst([(gw.workers[0].port, "/shop/other", key)] * 40)
    assert sum(r.status == 200 for r in replies) == 15
    assert all(r.status == 429 for r in replies if r.status != 200)
