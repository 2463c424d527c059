"""The smuggling and parser corpus (tests/integration/smuggling_corpus.py) through one real worker.

Each case goes on a fresh connection in one write; the responses are read until the worker closes,
the case's time runs out, or the answer already contradicts every acceptable outcome. A refusal
must carry ``connection: close``, be followed by the close, and leave the lab backend without a
request begun (``seen``) or completed (``count``); a control must come back 200 from the backend.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.integration.harness import Backend, Cluster, Worker, targets
from tests.integration.smuggling_corpus import (
    BODY_TIMEOUT,
    BY_NAME,
    CASES,
    HEADER_TIMEOUT,
    SMALL_LIMIT,
    Case,
    Outcome,
)

CLOSE_GRACE = 1.0  # after the last expected response, how long the worker has to close


@dataclass
class CorpusGateway:
    worker: Worker
    lab: Backend

    def lab_counts(self) -> tuple[int, int]:
        doc = httpx.get(f"{self.lab.url}/__echo/count", timeout=2.0).json()
        return int(doc["count"]), int(doc["seen"])


@pytest.fixture(scope="module")
def corpus_gw(module_cluster: Cluster) -> Iterator[CorpusGateway]:
    from data_plane.snapshot import Snapshot

    c = module_cluster
    lab = c.lab("corpus")
    route = [{"id": "r", "path": "/{proxy+}", "upstream_id": "lab"}]
    doc = {
        "schema_version": "1.1",
        "revision": 1,
        "upstreams": [{"id": "lab", "name": "lab", "targets": targets(lab)}],
        "apis": [
            {"id": "h", "name": "h", "base_path": "/h", "routes": route},  # any host
            {"id": "v", "name": "v", "base_path": "/v", "hosts": ["gw.test"], "routes": route},
            {"id": "s", "name": "s", "base_path": "/small", "max_body_bytes": SMALL_LIMIT, "routes": route},
        ],
    }
    snap = c.tmp / "corpus-snapshot.json"
    snap.write_bytes(Snapshot.from_dict(doc).to_json())
    env = {
        "TOLLGATE_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "TOLLGATE_BODY_TIMEOUT": str(BODY_TIMEOUT),  # read once the lead's body timeout lands
        "TOLLGATE_ACCESS_LOG": "off",
    }
    yield CorpusGateway(c.worker(snapshot=snap, name="corpus-worker", env=env), lab)


# ----------------------------------------------------------------------------- reading responses


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass
class Observed:
    responses: list[Response] = field(default_factory=list)
    closed: bool = False
    seconds: float = 0.0
    leftover: bytes = b""
    forwarded: tuple[int, int] = (0, 0)  # backend (completed, begun) during the case

    def describe(self) -> str:
        got = [(r.status, r.headers.get("connection", ""), r.body[:120]) for r in self.responses]
        return (
            f"responses={got} closed={self.closed} after {self.seconds:.2f}s "
            f"backend completed/begun={self.forwarded} leftover={self.leftover[:80]!r}"
        )


def _parse_one(buf: bytes) -> tuple[Response, bytes] | None:
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    lines = buf[:head_end].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    status = int(lines[0].split()[1])
    rest = buf[head_end + 4 :]
    length = 0 if 100 <= status < 200 else int(headers.get("content-length", "0"))
    if len(rest) < length:
        return None
    return Response(status, headers, rest[:length]), rest[length:]


def _exchange(port: int, case: Case) -> Observed:
    """Send the case, read final responses until the worker closes, time runs out, or the answer
    already rules out every outcome (a wrong status stops at once, so a failing case is quick)."""
    obs = Observed()
    start = time.monotonic()
    deadline = start + case.within
    with socket.create_connection(("127.0.0.1", port), timeout=case.within) as s:
        try:
            s.sendall(case.raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before it read everything; the answer may still be waiting
        buf = b""
        possible = case.outcomes
        while True:
            while (parsed := _parse_one(buf)) is not None:
                resp, buf = parsed
                if resp.status < 200:
                    continue  # interim (100 Continue): not an answer
                obs.responses.append(resp)
                n = len(obs.responses)
                possible = tuple(o for o in possible if n <= len(o.statuses) and resp.status in o.statuses[n - 1])
                if any(n == len(o.statuses) for o in possible):
                    deadline = min(deadline, time.monotonic() + CLOSE_GRACE)
            if not possible:
                break  # no outcome has these statuses: fail now rather than wait
            n = len(obs.responses)
            if all(n == len(o.statuses) and not o.close for o in possible):
                break  # answered, and no close is owed
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            s.settimeout(remaining)
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                obs.closed = True
                break
            if not chunk:
                obs.closed = True
                break
            buf += chunk
    obs.seconds = time.monotonic() - start
    obs.leftover = buf
    return obs


# ----------------------------------------------------------------------------- judging


def _mismatch(outcome: Outcome, obs: Observed) -> str | None:
    """Why ``obs`` is not ``outcome`` (None when it is)."""
    statuses = [r.status for r in obs.responses]
    if len(statuses) != len(outcome.statuses) or any(
        s not in ok for s, ok in zip(statuses, outcome.statuses, strict=True)
    ):
        return f"statuses {statuses}, wanted {[sorted(ok) for ok in outcome.statuses]}"
    completed, begun = obs.forwarded
    if completed != outcome.forwarded or begun not in (outcome.forwarded, outcome.forwarded + outcome.streamed):
        return f"backend completed {completed} and began {begun} requests, wanted {outcome.forwarded}"
    if outcome.close and not obs.closed:
        return "the connection was not closed"
    last = obs.responses[-1] if obs.responses else None
    if outcome.close and last is not None:
        if last.headers.get("connection", "").lower() != "close":
            return "the last response does not say connection: close"
    if last is not None and last.status >= 400:
        doc = last.json()
        if not (isinstance(doc, dict) and "message" in doc and last.headers.get("x-request-id")):
            return "the refusal is not a gateway error (JSON message and x-request-id)"
    if outcome.checks:
        doc = last.json() if last is not None else None
        if not isinstance(doc, dict):
            return "the backend's answer is not JSON"
        seen = {name: value for name, value in doc.get("headers", [])}
        for key, expected in outcome.checks:
            got = seen.get(key[7:]) if key.startswith("header:") else doc.get(key)
            if got != expected:
                return f"backend saw {key}={got!r}, wanted {expected!r}"
    return None


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_case(corpus_gw: CorpusGateway, case: Case) -> None:
    before = corpus_gw.lab_counts()
    obs = _exchange(corpus_gw.worker.port, case)
    after = corpus_gw.lab_counts()
    obs.forwarded = (after[0] - before[0], after[1] - before[1])
    reasons = [_mismatch(o, obs) for o in case.outcomes]
    assert any(r is None for r in reasons), (
        f"{case.name} ({case.source}): {'; or '.join(r for r in reasons if r)}\n"
        f"raw={case.raw[:300]!r}\n{obs.describe()}"
    )


def test_corpus_is_well_formed() -> None:
    assert len(BY_NAME) == len(CASES), "duplicate case names"
    for c in CASES:
        assert c.source and c.outcomes and c.raw, c.name
