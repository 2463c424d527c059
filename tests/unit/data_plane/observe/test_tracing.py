"""W3C Trace Context parsing and formatting, the ratio sampler, the parent-based decision and the
records a sampled request leaves (data_plane/observe/tracing.py), with plain values."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from data_plane.observe.tracing import (
    MAX_TRACESTATE,
    RouteTracing,
    ServerRecord,
    below_bound,
    bound_hex,
    bounded_tracestate,
    new_span_id,
    new_trace_id,
    parse_traceparent,
    ratio_bound,
    sampled_by_ratio,
)
from tests.fakes import Gateway, one_api_snapshot, response, upstream_with_targets

TRACE = b"4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = b"00f067aa0ba902b7"
VALID = b"00-" + TRACE + b"-" + PARENT + b"-01"
LINE = re.compile(rb"^traceparent: 00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])\r\n")


class Sink:
    def __init__(self) -> None:
        self.records: list[ServerRecord] = []

    def add(self, record: ServerRecord) -> None:
        self.records.append(record)


def policy(ratio: float = 1.0, sink: Sink | None = None) -> RouteTracing:
    return RouteTracing(ratio, sink, "api-1", "shop", "route-1", "/shop/{proxy+}")


# ---------------------------------------------------------------- traceparent


def test_a_valid_traceparent_gives_its_ids_and_sampled_flag() -> None:
    assert parse_traceparent(VALID) == (TRACE, PARENT, True)
    assert parse_traceparent(VALID[:-2] + b"00") == (TRACE, PARENT, False)
    # only the sampled bit is read from the flags; whitespace around the value is not part of it
    assert parse_traceparent(VALID[:-2] + b"03") == (TRACE, PARENT, True)
    assert parse_traceparent(b" " + VALID[:-2] + b"fe\t") == (TRACE, PARENT, False)


def test_the_sampled_bit_is_read_from_every_flags_value() -> None:
    for flags in range(256):
        found = parse_traceparent(VALID[:-2] + b"%02x" % flags)
        assert found is not None and found[2] == bool(flags & 1), flags


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"00",
        VALID[:-1],  # too short
        VALID + b"-x",  # version 00 is exactly 55 characters
        VALID + b"0",
        b"ff" + VALID[2:],  # version ff is invalid
        b"00-" + TRACE.upper() + b"-" + PARENT + b"-01",  # lowercase hex only
        b"00-" + b"0" * 32 + b"-" + PARENT + b"-01",  # all-zero trace id
        b"00-" + TRACE + b"-" + b"0" * 16 + b"-01",  # all-zero parent id
        b"00-" + TRACE + b"-" + PARENT + b"-0g",
        b"00_" + TRACE + b"-" + PARENT + b"-01",
        b"00-" + TRACE[:-1] + b"-" + b"0" + PARENT + b"-01",  # a dash in the wrong place
        b"00-" + TRACE + b"-" + PARENT[:-1] + b"-" + b"-01",
        b"0x-" + TRACE + b"-" + PARENT + b"-01",
    ],
)
def test_an_invalid_traceparent_is_refused(value: bytes) -> None:
    assert parse_traceparent(value) is None


def test_a_later_version_is_read_for_the_fields_it_shares_with_00() -> None:
    assert parse_traceparent(b"01" + VALID[2:]) == (TRACE, PARENT, True)
    assert parse_traceparent(b"cc" + VALID[2:] + b"-what-comes-later") == (TRACE, PARENT, True)
    assert parse_traceparent(b"cc" + VALID[2:] + b"x") is None  # more, but not after a dash


# ---------------------------------------------------------------- tracestate


def test_tracestate_within_the_bound_is_kept_as_it_came() -> None:
    assert bounded_tracestate(b"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7") == b"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"


def test_long_tracestate_loses_long_entries_first_then_entries_from_the_end() -> None:
    big = b"big=" + b"x" * 200
    entries = [b"k%d=%s" % (i, b"v" * 40) for i in range(20)]  # 20 x 44 bytes
    out = bounded_tracestate(b",".join([entries[0], big, *entries[1:]]))
    assert len(out) <= MAX_TRACESTATE and b"big=" not in out
    kept = out.split(b",")
    assert kept == entries[: len(kept)] and len(kept) == (MAX_TRACESTATE + 1) // 45


def test_tracestate_keeps_at_most_32_entries() -> None:
    out = bounded_tracestate(b",".join(b"k%d=v" % i for i in range(40)))
    assert out.split(b",") == [b"k%d=v" % i for i in range(32)]


# ---------------------------------------------------------------- ids


def test_ids_are_lowercase_hex_of_the_right_length_and_do_not_repeat() -> None:
    traces = {new_trace_id() for _ in range(2000)}  # more than one pool's worth
    spans = {new_span_id() for _ in range(2000)}
    assert len(traces) == 2000 and len(spans) == 2000
    assert all(re.fullmatch(rb"[0-9a-f]{32}", t) for t in traces)
    assert all(re.fullmatch(rb"[0-9a-f]{16}", s) for s in spans)


def test_a_forked_child_does_not_hand_out_its_parents_ids() -> None:
    new_span_id()  # the pool is filled in the parent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.write(write, new_span_id())
        os._exit(0)
    os.close(write)
    child = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 16 and child != new_span_id()


# ---------------------------------------------------------------- sampling


def test_ratio_bound_and_decision_follow_trace_id_ratio_based() -> None:
    assert ratio_bound(0.0) == 0 and ratio_bound(1.0) == 1 << 64 and ratio_bound(0.5) == 1 << 63
    low_half = b"ffffffffffffffff" + b"7fffffffffffffff"
    high_half = b"0000000000000000" + b"8000000000000000"
    assert sampled_by_ratio(low_half, ratio_bound(0.5)) and not sampled_by_ratio(high_half, ratio_bound(0.5))
    assert sampled_by_ratio(high_half, ratio_bound(1.0)) and not sampled_by_ratio(low_half, ratio_bound(0.0))


def test_the_ratio_decision_is_the_trace_ids_so_every_hop_agrees() -> None:
    p = policy(0.25)
    for _ in range(200):
        trace, _ = p.begin([])
        assert trace.sampled == sampled_by_ratio(trace.trace_id, p.bound)  # what another hop would decide


def test_new_traces_are_sampled_at_roughly_the_ratio() -> None:
    p = policy(0.1)
    n = sum(p.begin([])[0].sampled for _ in range(20000))
    assert 1700 < n < 2300
    assert not any(policy(0.0).begin([])[0].sampled for _ in range(2000))
    assert all(policy(1.0).begin([])[0].sampled for _ in range(2000))


def test_the_parents_flag_wins_over_the_ratio() -> None:
    assert policy(0.0).begin([(b"traceparent", VALID)])[0].sampled  # sampled parent, ratio 0
    assert not policy(1.0).begin([(b"traceparent", VALID[:-2] + b"00")])[0].sampled  # unsampled parent, ratio 1


# ---------------------------------------------------------------- begin: headers in, trace out


@pytest.mark.parametrize("recorded", [True, False])
def test_begin_continues_the_callers_trace_and_takes_its_fields_out(recorded: bool) -> None:
    headers = [
        (b"host", b"shop.example"),
        (b"traceparent", VALID),
        (b"tracestate", b"congo=t61rcWkgMzE"),
        (b"tracestate", b"rojo=00f067aa0ba902b7"),
        (b"accept", b"*/*"),
    ]
    trace, forwarded = policy(sink=Sink() if recorded else None).begin(headers)
    assert forwarded == [(b"host", b"shop.example"), (b"accept", b"*/*")]
    assert (trace.trace_id, trace.sampled, trace.recording) == (TRACE, True, recorded)
    if trace.rec is not None:
        assert (trace.rec.parent_id, trace.rec.tracestate) == (PARENT, b"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    line = trace.attempt("10.0.0.1", 8080)
    m = LINE.match(line)
    assert m is not None and m.group(1) == TRACE and m.group(2) != PARENT and m.group(3) == b"01"
    assert line.endswith(b"\r\ntracestate: congo=t61rcWkgMzE,rojo=00f067aa0ba902b7\r\n")


def test_without_a_traceparent_a_new_trace_starts_and_the_list_is_not_copied() -> None:
    headers = [(b"host", b"shop.example")]
    trace, forwarded = policy(sink=Sink()).begin(headers)
    assert forwarded is headers
    assert re.fullmatch(rb"[0-9a-f]{32}", trace.trace_id) and trace.trace_id != b"0" * 32
    assert trace.rec is not None and trace.rec.parent_id == b"" and trace.rec.tracestate == b""
    assert trace.attempt("h", 1).count(b"\r\n") == 1  # no tracestate line
    unrecorded, _ = policy().begin(headers)
    assert LINE.fullmatch(unrecorded.attempt("h", 1)) is not None


@pytest.mark.parametrize(
    "headers",
    [
        [(b"traceparent", b"00-garbage"), (b"tracestate", b"congo=t61rcWkgMzE")],
        [(b"traceparent", VALID), (b"traceparent", VALID)],  # two: not one valid value
    ],
)
def test_an_invalid_traceparent_starts_a_new_trace_without_its_tracestate(headers: list[Any]) -> None:
    trace, forwarded = policy(sink=Sink()).begin(headers)
    assert forwarded == []
    assert trace.trace_id != TRACE and trace.rec is not None
    assert trace.rec.parent_id == b"" and trace.rec.tracestate == b""
    assert b"tracestate" not in trace.attempt("h", 1)


def test_each_recorded_attempt_gets_its_own_span_id() -> None:
    trace, _ = policy(sink=Sink()).begin([])
    first, second = LINE.match(trace.attempt("a", 1)), LINE.match(trace.attempt("b", 2))
    assert first is not None and second is not None
    assert first.group(1) == second.group(1) == trace.trace_id
    assert first.group(2) != second.group(2) and first.group(3) == second.group(3) == b"01"
    assert trace.rec is not None and trace.rec.span_id not in (first.group(2), second.group(2))


def test_unsampled_requests_propagate_flags_00_and_record_nothing() -> None:
    for headers in ([], [(b"traceparent", VALID[:-2] + b"00")]):
        trace, _ = policy(0.0, sink=Sink()).begin(headers)
        line = trace.attempt("a", 1)
        m = LINE.fullmatch(line)
        assert m is not None and m.group(1) == trace.trace_id and m.group(3) == b"00"
        assert trace.attempt("b", 2) == line  # not recorded: the lines are built once per request
        assert not trace.recording
        trace.attempt_failed(503, "")  # a no-op


def test_a_sampled_trace_without_an_exporter_records_nothing() -> None:
    trace, _ = policy(1.0, sink=None).begin([])
    assert trace.sampled and not trace.recording
    m = LINE.fullmatch(trace.attempt("a", 1))
    assert m is not None and m.group(3) == b"01"


# ---------------------------------------------------------------- records, through a real exchange


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[tuple[Gateway, Sink]]:
    """A worker on fake transports (tests/fakes.py) whose one route traces every new trace, and
    whose span sink is a list; two targets, one retry."""
    sink = Sink()
    snapshot = one_api_snapshot(upstream_with_targets(2, retries=1), policies={"tracing": {}})
    gw = Gateway(snapshot, tmp_path)
    gw.worker.policy_env.tracer = sink
    gw.worker.apply(dataclasses.replace(snapshot, revision=2, hash="").sealed())  # compiled against the sink
    yield gw, sink
    gw.close()


def _upstream_traceparent(gw: Gateway, target_id: str) -> tuple[bytes, bytes, bytes]:
    head = gw.sent_upstream(target_id)
    found = re.findall(rb"\r\ntraceparent: 00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])\r\n", head)
    assert len(found) == 1, head  # ours only: the client's was not forwarded
    return found[0]  # type: ignore[no-any-return]


def _target(gw: Gateway) -> str:
    t = gw.exchange.target
    assert t is not None
    return t.id


def test_a_sampled_request_records_its_server_span_and_one_client_span_per_attempt(
    traced: tuple[Gateway, Sink],
) -> None:
    gw, sink = traced
    tp = b"00-" + TRACE + b"-" + PARENT + b"-01"
    gw.send(b"GET /items/1?api_key=secret HTTP/1.1\r\nhost: shop.example:8000\r\ntraceparent: " + tp + b"\r\n\r\n")
    first = _target(gw)
    trace_id, first_span, flags = _upstream_traceparent(gw, first)
    assert (trace_id, flags) == (TRACE, b"01") and first_span != PARENT
    gw.respond(response(503))  # retried on the other target
    second = _target(gw)
    assert second != first
    _, second_span, _ = _upstream_traceparent(gw, second)
    assert sink.records == []  # recorded when the request ends
    gw.respond(response(200, b"fine"))
    assert gw.received().endswith(b"fine")

    (rec,) = sink.records
    trace_id, span_id, parent_id, _, route_tracing, method, path, host, https, status, start, end = rec[:12]
    assert (trace_id, parent_id, method, path, host, https, status) == (
        TRACE,
        PARENT,
        "GET",
        b"/items/1",  # never the query
        b"shop.example:8000",
        False,
        200,
    )
    assert re.fullmatch(rb"[0-9a-f]{16}", span_id) and route_tracing.http_route == "/{p+}"
    assert rec[15] == "u"  # the upstream
    a1, a2 = rec[16]
    assert (a1[0], a1[5], a1[6]) == (first_span, 503, "") and (a2[0], a2[5], a2[6]) == (second_span, 200, "")
    assert {a1[2], a2[2]} == {9001, 9002}
    assert start <= a1[3] <= a1[4] <= a2[3] <= a2[4] <= end


def test_a_lost_connection_is_the_attempts_error(traced: tuple[Gateway, Sink]) -> None:
    gw, sink = traced
    gw.send(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
    gw.upstream().connection_lost(None)  # a reused pooled connection, before any response byte: sent again
    gw.respond(response(200))
    (rec,) = sink.records
    (_, _, _, _, _, status, error), (_, _, _, _, _, status2, error2) = rec[16]
    assert (status, error) == (0, "stale pooled connection") and (status2, error2) == (200, "")


def test_an_unsampled_request_propagates_and_records_nothing(traced: tuple[Gateway, Sink]) -> None:
    gw, sink = traced
    gw.send(b"GET /x HTTP/1.1\r\nhost: a\r\ntraceparent: 00-" + TRACE + b"-" + PARENT + b"-00\r\n\r\n")
    assert _upstream_traceparent(gw, _target(gw))[0::2] == (TRACE, b"00")
    gw.respond(response(200))
    assert sink.records == []


def test_below_bound_reads_the_digits_in_place_as_their_value() -> None:
    import random

    rng = random.Random(7)
    edges = [0, 1, (1 << 63) - 1, 1 << 63, (1 << 64) - 1]
    values = edges + [rng.getrandbits(64) for _ in range(500)]
    for v in values:
        for bound in edges[1:] + [rng.getrandbits(64) for _ in range(3)]:
            digits = b"x" * 16 + b"%016x" % v  # the low 64 bits of a trace id at offset 16
            assert below_bound(digits, 16, bound_hex(bound)) == (v < bound), (v, bound)


def test_new_trace_records_are_trace_dash_span() -> None:
    records = []
    for _ in range(300):  # more than two pools
        trace = policy(1.0).begin([])[0]
        records.append(trace.line)
    assert len(set(records)) == 300
    for line in records:
        assert re.fullmatch(rb"traceparent: 00-[0-9a-f]{32}-[0-9a-f]{16}-01\r\n", line), line
