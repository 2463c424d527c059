"""Usage metering: counts -> spooled batches -> a sender that fails, restarts, exactly-once per batch id."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from data_plane.errors import SpoolInUse, UsageRejected, UsageSendError
from data_plane.metering.meter import HttpUsageSender, Metering

T0 = datetime(2024, 3, 10, 23, 59, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class FlakySender:
    """Fails the first ``failures`` sends, then applies every batch (recording it)."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.applied: list[dict[str, Any]] = []
        self.attempts = 0

    async def send(self, batch: dict[str, Any]) -> None:
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise UsageSendError("control plane unreachable")
        self.applied.append(json.loads(json.dumps(batch)))  # what went over the wire


def totals(batches: list[dict[str, Any]]) -> dict[tuple[str, str, str], int]:
    out: dict[tuple[str, str, str], int] = {}
    for b in batches:
        for c in b["counts"]:
            key = (c["customer_id"], c["api_id"], c["day"])
            out[key] = out.get(key, 0) + c["count"]
    return out


def test_every_recorded_request_is_delivered_exactly_once_despite_failures(tmp_path: Path) -> None:
    async def body() -> None:
        clock = Clock(T0)
        sender = FlakySender(failures=4)
        m = Metering("node-1", tmp_path, sender, now=clock)
        rng = random.Random(7)
        expected: dict[tuple[str, str, str], int] = {}
        recorded = 0
        for _round in range(6):  # six flush intervals, crossing midnight UTC
            for _ in range(rng.randint(50, 150)):
                cust, api = f"c{rng.randint(1, 3)}", f"a{rng.randint(1, 2)}"
                m.record(cust, api, "r1", "gold", 200)
                day = "2024-03-10" if clock.t < T0 + 60 else "2024-03-11"
                expected[(cust, api, day)] = expected.get((cust, api, day), 0) + 1
                recorded += 1
            clock.t += 20
            await m.flush()
        for _ in range(10):  # bounded: the sender works by now
            if await m.deliver():
                break
        assert m.spool.pending() == []
        ids = [b["batch_id"] for b in sender.applied]
        assert len(ids) == len(set(ids)) == 6  # every batch once, none lost, none duplicated
        assert all(b["node_id"] == "node-1" for b in sender.applied)
        assert totals(sender.applied) == expected
        assert sum(expected.values()) == recorded
        assert {k[2] for k in expected} == {"2024-03-10", "2024-03-11"}
        await m.close()

    asyncio.run(body())


def test_failure_keeps_order_and_spooled_batches_survive_a_restart(tmp_path: Path) -> None:
    async def body() -> None:
        down = FlakySender(failures=1000)
        first = Metering("node-1", tmp_path, down, now=Clock(T0))
        for i in range(3):
            for _ in range(i + 1):
                first.record("c1", "a1", "r1", "gold", 200)
            assert await first.flush() is False
        first.record("c1", "a1", "r1", "gold", 200)  # still in memory at shutdown: close() spools it
        await first.close()
        assert len(list(tmp_path.glob("*.json"))) == 4

        up = FlakySender()
        second = Metering("node-1", tmp_path, up, now=Clock(T0))  # the "restarted" worker
        second.record("c2", "a1", "r1", "gold", 200)
        assert await second.flush() is True
        counts = [b["counts"][0]["count"] for b in up.applied]
        assert counts == [1, 2, 3, 1, 1]  # oldest first, the new batch last
        assert up.applied[-1]["counts"][0]["customer_id"] == "c2"
        assert sum(totals(up.applied).values()) == 8
        assert list(tmp_path.glob("*.json")) == []
        await second.close()

    asyncio.run(body())


def test_rejected_batch_is_moved_aside_and_does_not_block(tmp_path: Path) -> None:
    class RejectFirst(FlakySender):
        async def send(self, batch: dict[str, Any]) -> None:
            if not self.attempts:
                self.attempts += 1
                raise UsageRejected("422")
            await super().send(batch)

    async def body() -> None:
        sender = RejectFirst()
        m = Metering("node-1", tmp_path, sender, now=Clock(T0))
        m.record("c1", "a1", "r1", "gold", 200)
        m.cut()
        m.record("c1", "a1", "r1", "gold", 200)
        m.record("c1", "a1", "r1", "gold", 200)
        assert await m.flush() is True
        assert [b["counts"][0]["count"] for b in sender.applied] == [2]
        assert len(list((tmp_path / "rejected").glob("*.json"))) == 1
        assert (m.rejected_batches, m.delivered_batches, m.failed_sends) == (1, 1, 0)  # /metrics reads these
        await m.close()

    asyncio.run(body())


def test_one_process_per_spool_and_interrupted_writes_are_ignored(tmp_path: Path) -> None:
    async def body() -> None:
        (tmp_path / ".000000000001-x.json.tmp").write_bytes(b'{"batch_id"')
        m = Metering("node-1", tmp_path, FlakySender(), now=Clock(T0))
        assert not list(tmp_path.glob(".*.tmp"))
        with pytest.raises(SpoolInUse):
            Metering("node-2", tmp_path, FlakySender())
        await m.close()
        Metering("node-2", tmp_path, FlakySender()).spool.close()  # free again after close

    asyncio.run(body())


def test_periodic_flush_runs_by_itself(tmp_path: Path) -> None:
    async def body() -> None:
        sender = FlakySender()
        m = Metering("node-1", tmp_path, sender, interval=0.01)
        m.start()
        m.record("c1", "a1", "r1", "gold", 200)
        for _ in range(500):
            if sender.applied:
                break
            await asyncio.sleep(0.01)
        assert totals(sender.applied) == {("c1", "a1", sender.applied[0]["counts"][0]["day"]): 1}
        await m.close()

    asyncio.run(body())


def test_http_sender_posts_with_the_cluster_token_and_maps_statuses() -> None:
    seen: list[httpx.Request] = []
    statuses = iter([200, 503, 422])

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(next(statuses), json={})

    async def body() -> None:
        sender = HttpUsageSender(
            "http://127.0.0.1:1", "secret-token", node_id="n1", transport=httpx.MockTransport(handler)
        )
        batch = {"batch_id": "b1", "node_id": "n1", "counts": []}
        await sender.send(batch)
        with pytest.raises(UsageSendError) as retry:
            await sender.send(batch)
        assert not isinstance(retry.value, UsageRejected)
        with pytest.raises(UsageRejected):
            await sender.send(batch)
        await sender.close()

    asyncio.run(body())
    assert seen[0].url.path == "/cluster/v1/usage" and seen[0].method == "POST"
    assert seen[0].headers["authorization"] == "Bearer secret-token"
    assert json.loads(seen[0].content)["batch_id"] == "b1"


def test_http_sender_unreachable_is_retryable() -> None:
    async def body() -> None:
        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

        sender = HttpUsageSender("http://127.0.0.1:1", None, transport=httpx.MockTransport(refuse))
        with pytest.raises(UsageSendError, match="unreachable"):
            await sender.send({"batch_id": "b", "node_id": "n", "counts": []})
        await sender.close()

    asyncio.run(body())


def test_counts_are_kept_per_route_status_class_plan_and_utc_hour(tmp_path: Path) -> None:
    async def body() -> None:
        clock = Clock(T0)  # 23:59:00 UTC on 2024-03-10
        sender = FlakySender()
        m = Metering("node-1", tmp_path, sender, now=clock)
        for status in (200, 201, 204, 404, 499, 503, 101, 302):
            m.record("c1", "a1", "r1", "gold", status)
        m.record("c1", "a1", "r2", "gold", 200)
        m.record("c2", "a1", "r1", "", 200)  # no plan
        clock.t = T0 + 59.999  # still 23:xx
        m.record("c1", "a1", "r1", "gold", 200)
        clock.t = T0 + 60  # 00:00:00 on the 11th: a new hour and a new day
        m.record("c1", "a1", "r1", "gold", 200)
        clock.t = T0 - 3600  # a clock stepped back an hour is honoured as well
        m.record("c1", "a1", "r1", "gold", 200)
        assert await m.flush() is True
        (batch,) = sender.applied
        got = {
            (c["customer_id"], c["route_id"], c["plan_id"], c["status_class"], c["hour"], c["day"]): c["count"]
            for c in batch["counts"]
        }
        assert all(c["api_id"] == "a1" for c in batch["counts"])
        assert got == {
            ("c1", "r1", "gold", "2xx", "2024-03-10T23:00:00Z", "2024-03-10"): 4,
            ("c1", "r1", "gold", "4xx", "2024-03-10T23:00:00Z", "2024-03-10"): 2,
            ("c1", "r1", "gold", "5xx", "2024-03-10T23:00:00Z", "2024-03-10"): 1,
            ("c1", "r1", "gold", "1xx", "2024-03-10T23:00:00Z", "2024-03-10"): 1,
            ("c1", "r1", "gold", "3xx", "2024-03-10T23:00:00Z", "2024-03-10"): 1,
            ("c1", "r2", "gold", "2xx", "2024-03-10T23:00:00Z", "2024-03-10"): 1,
            ("c2", "r1", None, "2xx", "2024-03-10T23:00:00Z", "2024-03-10"): 1,
            ("c1", "r1", "gold", "2xx", "2024-03-11T00:00:00Z", "2024-03-11"): 1,
            ("c1", "r1", "gold", "2xx", "2024-03-10T22:00:00Z", "2024-03-10"): 1,
        }
        assert sum(got.values()) == 13
        await m.close()

    asyncio.run(body())


def test_the_current_hour_is_cached_and_moves_only_when_the_clock_leaves_it(tmp_path: Path) -> None:
    clock = Clock(T0 - 59 * 60)  # 23:00:00
    m = Metering("node-1", tmp_path, None, now=clock)
    m.record("c1", "a1", "r1", "", 200)
    hour = m._hour
    assert (m._hour_start, m._hour_end) == (hour, hour + 3600) and hour == T0 - 59 * 60
    for i in range(100):  # 100 requests over 50 minutes: all in the 23:00 hour, one key
        clock.t = T0 - 59 * 60 + i * 30
        m.record("c1", "a1", "r1", "", 200)
    assert m._hour == hour and list(m.counts.values()) == [101]
    clock.t = T0 + 61
    m.record("c1", "a1", "r1", "", 200)
    assert m._hour == hour + 3600 and m._hour_start == hour + 3600
    assert sorted(m.counts.values()) == [1, 101]
    m.spool.close()


def test_status_class_never_produces_one_the_control_plane_refuses() -> None:
    from data_plane.metering.meter import status_class

    assert [status_class(k) for k in (1, 2, 3, 4, 5)] == ["1xx", "2xx", "3xx", "4xx", "5xx"]
    assert status_class(0) == "5xx" and status_class(9) == "5xx"


def test_refusals_travel_in_the_batch_per_api_status_and_hour(tmp_path: Path) -> None:
    clock = Clock(T0)  # 23:59 UTC
    m = Metering("node-1", tmp_path, None, now=clock)
    m.refused("api-1", 401)
    m.refused("api-1", 401)
    m.refused("api-1", 429)
    clock.t += 120  # the next hour (and day)
    m.refused("api-1", 401)
    path = m.cut()
    assert path is not None  # refusals alone make a batch
    batch = json.loads(path.read_text())
    assert batch["counts"] == []
    assert batch["refusals"] == [
        {"api_id": "api-1", "status": 401, "hour": "2024-03-10T23:00:00Z", "count": 2},
        {"api_id": "api-1", "status": 401, "hour": "2024-03-11T00:00:00Z", "count": 1},
        {"api_id": "api-1", "status": 429, "hour": "2024-03-10T23:00:00Z", "count": 1},
    ]
    assert m.cut() is None and not m.refusals
    m.spool.close()
