"""The in-process store after a restart (issue 17, item 0): a worker seeds its quota counters from the
control plane's usage before it listens, so neither a SIGKILL nor a clean restart gives a period's
quota back; with no control plane answering it starts anyway, from zero, and says so."""

from __future__ import annotations

import uuid

import httpx

from tests.integration.harness import Cluster, Worker
from tests.integration.plans_support import PlanGateway, build_gateway


def _worker(cluster: Cluster, gw: PlanGateway, port: int | None = None, status_port: int | None = None) -> Worker:
    w = cluster.worker(
        gw.cp,
        name=f"seed-worker-{uuid.uuid4().hex[:6]}",
        port=port,
        status_port=status_port,
        env={"TOLLGATE_USAGE_FLUSH_INTERVAL": "0.2"},
    )
    gw.workers = [w]
    gw.sync()
    return w


def _calls(w: Worker, key: str, n: int) -> list[int]:
    with httpx.Client(base_url=w.url, headers={"x-api-key": key}, timeout=10.0) as c:
        return [c.get("/shop/other").status_code for _ in range(n)]


def test_restarted_worker_keeps_the_period_used(module_cluster: Cluster) -> None:
    gw = build_gateway(module_cluster.control_plane(name="cp-seed"), [], module_cluster.echo("seed-echo"))
    w = _worker(module_cluster, gw)
    plan = gw.plan(quota={"limit": 10, "period": "DAY"})
    cid, _, key = gw.customer(plan["id"])
    week = gw.plan(quota={"limit": 5, "period": "WEEK"})
    wcid, _, wkey = gw.customer(week["id"])

    assert _calls(w, key, 6) == [200] * 6
    assert _calls(w, wkey, 2) == [200] * 2
    gw.wait_usage(cid, 6)  # flushed (0.2 s here, 1 s by default)
    gw.wait_usage(wcid, 2)
    w.proc.kill()  # SIGKILL

    w2 = _worker(module_cluster, gw)
    assert _calls(w2, key, 6) == [200] * 4 + [429] * 2  # 6 of 10 were used before the crash
    assert _calls(w2, wkey, 4) == [200] * 3 + [429]  # and 2 of 5 of the week

    w2.proc.stop()  # a clean stop flushes what is left; the next start seeds it again
    w3 = _worker(module_cluster, gw)
    assert _calls(w3, key, 1) == [429]
    assert gw.usage_today(cid) == 10
    w3.proc.stop()


def test_no_control_plane_answer_starts_from_zero(module_cluster: Cluster) -> None:
    cp = module_cluster.control_plane(name="cp-seed-down")
    gw = build_gateway(cp, [], module_cluster.echo("seed-echo-2"))
    name = f"seed-down-{uuid.uuid4().hex[:6]}"
    env = {"TOLLGATE_USAGE_FLUSH_INTERVAL": "0.2"}
    w = module_cluster.worker(cp, name=name, env=env)
    gw.workers = [w]
    gw.sync()
    plan = gw.plan(quota={"limit": 3, "period": "DAY"})
    _, _, key = gw.customer(plan["id"])
    assert _calls(w, key, 3) == [200] * 3
    cp.proc.stop()
    w.proc.kill()
    # same cache dir: it serves its last-known-good config, with quota counters from zero (said in its log)
    w2 = module_cluster.worker(cp, name=name, env=env, port=w.port, status_port=int(w.status_url.rsplit(":", 1)[1]))
    assert _calls(w2, key, 4) == [200] * 3 + [429]
    assert "quota counters start from zero" in w2.proc.log()
    w2.proc.stop()
