"""The tracing policy through a real worker: W3C Trace Context to the upstream, spans exported over
OTLP/HTTP to a local receiver that decodes them (tests/integration/otlp_receiver.py), the trace id
in the access log.  Configured through the admin API of a real control plane."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.harness import Backend, Cluster, ControlPlane, Worker, create, free_port, wait_until
from tests.integration.otlp_receiver import KIND_CLIENT, KIND_SERVER, STATUS_ERROR, OtlpReceiver, Span

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$")


@dataclass
class Gateway:
    cp: ControlPlane
    worker: Worker
    echo: Backend
    receiver: OtlpReceiver
    access_log: Path
    key: str
    customer_id: str

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(f"{self.worker.url}{path}", timeout=5.0, **kw)

    def seen_traceparent(self, r: httpx.Response) -> tuple[str, str, str]:
        """(trace id, parent span id, flags) of the one traceparent the backend got."""
        assert r.status_code == 200, r.text
        seen = [v for n, v in r.json()["header_list"] if n == "traceparent"]
        assert len(seen) == 1, seen
        m = TRACEPARENT.match(seen[0])
        assert m is not None, seen
        return m.group(1), m.group(2), m.group(3)

    def spans(self, trace_id: str, n: int) -> list[Span]:
        """The ``n`` spans of a trace, once the worker's exporter has sent them all."""
        return wait_until(
            lambda: len(s := self.receiver.of_trace(trace_id)) >= n and s,
            timeout=15.0,
            what=f"{n} span(s) of trace {trace_id}",
        )

    def log_line(self, request_id: str) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            if not self.access_log.exists():
                return None
            for text in self.access_log.read_text().splitlines():
                line = json.loads(text)
                if line["request_id"] == request_id:
                    return line  # type: ignore[no-any-return]
            return None

        return wait_until(find, timeout=10.0, what=f"the access log line of {request_id}")


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver().start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def gw(module_cluster: Cluster, receiver: OtlpReceiver) -> Gateway:
    echo = module_cluster.echo("traced")
    cp = module_cluster.control_plane()
    with cp.admin() as a:
        svc = create(a, "/v1/upstreams", {"name": "svc"})
        create(a, f"/v1/upstreams/{svc['id']}/targets", {"host": "127.0.0.1", "port": echo.port})
        # one target refusing connections, one answering: a request that starts on the first is retried
        flaky = create(a, "/v1/upstreams", {"name": "flaky", "retries": 1})
        create(a, f"/v1/upstreams/{flaky['id']}/targets", {"host": "127.0.0.1", "port": free_port()})
        create(a, f"/v1/upstreams/{flaky['id']}/targets", {"host": "127.0.0.1", "port": echo.port})
        apis = {
            "shop": ({"auth": "api_key", "policies": {"tracing": {"sample_ratio": 1.0}}}, svc),
            "quiet": ({"policies": {"tracing": {"sample_ratio": 0}}}, svc),
            "flaky": ({"policies": {"tracing": {}}}, flaky),  # default ratio: 1
            "plain": ({}, svc),
        }
        ids = {}
        for name, (fields, up) in apis.items():
            api = create(a, "/v1/apis", {"name": name, "base_path": f"/{name}", **fields})
            create(a, f"/v1/apis/{api['id']}/routes", {"path": "/{proxy+}", "upstream_id": up["id"]})
            ids[name] = api["id"]
        assert a.get(f"/v1/apis/{ids['shop']}").json()["policies"] == {"tracing": {"sample_ratio": 1.0}}
        customer = create(a, "/v1/customers", {"name": "acme", "api_ids": [ids["shop"]]})
        key = create(a, f"/v1/customers/{customer['id']}/keys", {"name": "k"})["key"]
    access_log = module_cluster.tmp / "access.log"
    worker = module_cluster.worker(cp, extra=("--access-log", str(access_log), "--otlp-endpoint", receiver.url))
    worker.wait_revision(cp.revision())
    return Gateway(cp, worker, echo, receiver, access_log, key, customer["id"])


def test_a_sampled_callers_trace_is_continued_with_a_server_and_a_client_span(gw: Gateway) -> None:
    r = gw.get(
        "/shop/items/1?q=secret",
        headers={
            "x-api-key": gw.key,
            "traceparent": f"00-{TRACE}-{PARENT}-01",
            "tracestate": "congo=t61rcWkgMzE",
            "x-request-id": "trace-a",
        },
    )
    trace_id, client_span, flags = gw.seen_traceparent(r)
    assert (trace_id, flags) == (TRACE, "01") and client_span != PARENT
    assert r.json()["headers"]["tracestate"] == "congo=t61rcWkgMzE"

    spans = gw.spans(TRACE, 2)
    (server,) = [s for s in spans if s.kind == KIND_SERVER]
    (client,) = [s for s in spans if s.kind == KIND_CLIENT]
    assert server.parent_id == PARENT and server.name == "GET /shop/{proxy+}"
    assert client.parent_id == server.span_id and client.span_id == client_span  # the upstream's parent
    assert server.start <= client.start <= client.end <= server.end
    assert server.trace_state == "congo=t61rcWkgMzE"
    a = server.attributes
    assert a["http.request.method"] == "GET" and a["url.path"] == "/shop/items/1"  # never the query
    assert a["http.route"] == "/shop/{proxy+}" and a["http.response.status_code"] == 200
    assert a["tollgate.api"] == "shop" and a["tollgate.route_id"] and a["tollgate.customer_id"] == gw.customer_id
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == gw.worker.port
    assert a["client.address"] == "127.0.0.1" and a["tollgate.request_id"] == "trace-a"
    assert client.attributes["server.port"] == gw.echo.port and client.attributes["http.response.status_code"] == 200
    assert client.attributes["tollgate.retry"] == 0 and client.attributes["tollgate.upstream"] == "svc"
    assert server.resource["service.name"] == "tollgate-worker" and server.resource["service.instance.id"] == "worker"

    line = gw.log_line("trace-a")
    assert line["trace_id"] == TRACE and line["status"] == 200


@pytest.mark.parametrize("sent", [None, f"00-{TRACE}-{'0' * 16}-01", "garbage"])
def test_without_a_valid_traceparent_a_new_trace_is_started(gw: Gateway, sent: str | None) -> None:
    headers = {"x-api-key": gw.key} | ({"traceparent": sent, "tracestate": "dropped=1"} if sent else {})
    r = gw.get("/shop/new", headers=headers)
    trace_id, client_span, flags = gw.seen_traceparent(r)
    assert trace_id != TRACE and flags == "01" and "tracestate" not in r.json()["headers"]
    spans = gw.spans(trace_id, 2)
    (server,) = [s for s in spans if s.kind == KIND_SERVER]
    (client,) = [s for s in spans if s.kind == KIND_CLIENT]
    assert server.parent_id == "" and client.parent_id == server.span_id and client.span_id == client_span


def test_ratio_zero_records_nothing_but_still_propagates_flags_00(gw: Gateway) -> None:
    r = gw.get("/quiet/x", headers={"x-request-id": "trace-quiet"})
    quiet_trace, _, flags = gw.seen_traceparent(r)
    assert flags == "00"
    assert gw.log_line("trace-quiet")["trace_id"] == quiet_trace  # logged, sampled or not
    # A sampled request after it: exported in order, so once its spans came, the quiet one's would have too.
    marker, _, _ = gw.seen_traceparent(gw.get("/shop/after-quiet", headers={"x-api-key": gw.key}))
    gw.spans(marker, 2)
    assert gw.receiver.of_trace(quiet_trace) == []
    # An unsampled caller is followed even where the ratio is 1.
    r = gw.get("/shop/x", headers={"x-api-key": gw.key, "traceparent": f"00-{'ab' * 16}-{PARENT}-00"})
    assert gw.seen_traceparent(r)[0::2] == ("ab" * 16, "00")


def test_a_retried_request_has_one_client_span_per_attempt(gw: Gateway) -> None:
    retried: list[Span] = []
    for i in range(4):  # round robin: one of two requests starts on the target refusing connections
        trace_id, upstream_parent, _ = gw.seen_traceparent(gw.get(f"/flaky/{i}"))
        spans = gw.spans(trace_id, 2)
        clients = sorted((s for s in spans if s.kind == KIND_CLIENT), key=lambda s: s.start)
        if len(clients) == 2:
            retried = clients
            break
    assert retried, "no request was retried"
    first, second = retried
    (server,) = [s for s in gw.receiver.of_trace(first.trace_id) if s.kind == KIND_SERVER]
    assert first.parent_id == second.parent_id == server.span_id
    assert second.span_id == upstream_parent  # the upstream that answered got the second attempt's id
    assert first.attributes["tollgate.retry"] == 0 and first.status == STATUS_ERROR
    assert first.attributes["error.type"] == "upstream connection failed"
    assert "http.response.status_code" not in first.attributes
    assert second.attributes["tollgate.retry"] == 1 and second.attributes["http.request.resend_count"] == 1
    assert second.attributes["http.response.status_code"] == 200 and second.attributes["server.port"] == gw.echo.port
    assert first.attributes["server.port"] != gw.echo.port
    assert server.attributes["http.response.status_code"] == 200 and server.attributes["tollgate.upstream"] == "flaky"


def test_a_refused_request_gets_a_server_span_and_no_client_span(gw: Gateway) -> None:
    r = gw.get("/shop/x", headers={"traceparent": f"00-{'cd' * 16}-{PARENT}-01", "x-request-id": "trace-401"})
    assert r.status_code == 401
    (server,) = gw.spans("cd" * 16, 1)
    assert server.kind == KIND_SERVER and server.parent_id == PARENT
    assert server.attributes["http.response.status_code"] == 401 and server.attributes["tollgate.api"] == "shop"
    assert "tollgate.customer_id" not in server.attributes and server.status != STATUS_ERROR
    assert gw.log_line("trace-401")["trace_id"] == "cd" * 16


def test_a_route_without_the_policy_is_left_alone(gw: Gateway) -> None:
    sent = f"00-{TRACE}-{PARENT}-01"
    r = gw.get("/plain/x", headers={"traceparent": sent, "x-request-id": "trace-plain"})
    assert r.json()["headers"]["traceparent"] == sent  # forwarded as the client sent it, not ours
    assert "trace_id" not in gw.log_line("trace-plain")


def test_the_worker_reports_its_exporter(gw: Gateway) -> None:
    gw.get("/shop/status", headers={"x-api-key": gw.key})
    status = wait_until(
        lambda: (t := gw.worker.status()["tracing"])["exported_spans"] > 0 and t["queued"] == 0 and t,
        timeout=15.0,
        what="exported spans in the worker's status",
    )
    assert status["endpoint"] == gw.receiver.url and status["dropped"] == 0 and status["failed_spans"] == 0
