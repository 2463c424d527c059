"""A worker starting from its cache replays the delta journal into its entity store and compiles once
(data_plane/server.py Worker._restore); a journal whose end state does not compile is replayed delta
by delta, up to the one that does not apply."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest

from control_plane.snapshots.content import ContentIndex
from data_plane.server import Worker
from data_plane.settings import WorkerSettings
from data_plane.snapshot import Api, ApiKey, Customer, Route, Snapshot, Target, Upstream
from data_plane.snapshot.delta import EntityStore, merge_deltas, parse_delta, with_key_table
from data_plane.sync import append_journal, journal_file, write_cache

UP = Upstream(id="u", name="u", targets=(Target(id="t", host="127.0.0.1", port=9000),))


def _api(routes: int, clash: bool = False) -> Api:
    paths = [f"/r{i}" for i in range(routes)] + (["/r0"] if clash else [])  # a clash: the router refuses it
    return Api(
        id="a",
        name="a",
        base_path="/a",
        routes=tuple(Route(id=f"r{i}", path=p, upstream_id="u") for i, p in enumerate(paths)),
    )


def _cache_with_journal(settings: WorkerSettings, deltas: int, clash_last: bool = False) -> int:
    """A cached snapshot at revision 1 and ``deltas`` journaled route changes after it (one route more
    each; ``clash_last``: the last one adds a route whose path another has); the last revision."""
    snap = Snapshot(revision=1, upstreams=(UP,), apis=(_api(1),))
    snap = dataclasses.replace(EntityStore.of(snap).snapshot(), hash="", generated_at="g").sealed()
    write_cache(settings.cache_file, snap)
    index = ContentIndex.of(snap)
    for n in range(deltas):
        index.upsert("api", _api(n + 2, clash=clash_last and n == deltas - 1))
        index.revision = n + 2
        append_journal(journal_file(settings.cache_file), index.delta_body(n + 1, [("api", "a")]))
    return deltas + 1


def _start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> tuple[Worker, int]:
    """A worker loading its cache; how many configs it compiled and swapped in."""
    loop = asyncio.new_event_loop()
    worker = Worker(WorkerSettings(cache_dir=tmp_path), loop)
    try:
        with caplog.at_level(logging.INFO, logger="tollgate.worker"):
            worker.load_initial()
    finally:
        loop.run_until_complete(worker.close_limits())  # releases the usage spool's lock file
        loop.close()
    return worker, sum("applied config revision" in r.getMessage() for r in caplog.records)


def test_the_journal_is_replayed_into_the_store_and_compiled_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = WorkerSettings(cache_dir=tmp_path)
    last = _cache_with_journal(settings, deltas=5)
    worker, compiled = _start(tmp_path, caplog)
    assert compiled == 1  # not once per delta
    assert worker.config is not None and worker.config.revision == last
    assert worker.store is not None and len(worker.store.apis["a"].routes) == last
    assert isinstance(worker.config.router.match("h", "GET", "/a/r5"), tuple)  # the last delta's route


def test_a_journal_end_state_that_does_not_compile_is_replayed_delta_by_delta(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = WorkerSettings(cache_dir=tmp_path)
    last = _cache_with_journal(settings, deltas=3, clash_last=True)
    worker, _ = _start(tmp_path, caplog)
    assert any("does not compile" in r.getMessage() for r in caplog.records)
    # every delta that compiles, then the worker stays at the last good revision (as when it came)
    assert worker.config is not None and worker.config.revision == last - 1
    assert worker.store is not None and worker.store.revision == last - 1
    assert len(worker.store.apis["a"].routes) == last - 1


def _mixed_journal(settings: WorkerSettings) -> list[bytes]:
    """Route, customer and key changes, one entity changed in several deltas (a key made, then its
    rotation's delete, a customer renamed twice): the journal's lines."""
    snap = Snapshot(revision=1, upstreams=(UP,), apis=(_api(1),), customers=(Customer(id="c1", name="one"),), keys=())
    snap = dataclasses.replace(EntityStore.of(snap).snapshot(), hash="", generated_at="g").sealed()
    write_cache(settings.cache_file, snap)
    index = ContentIndex.of(snap)
    steps: list[list[tuple[str, Any]]] = [
        [("api", _api(2))],
        [("key", ApiKey(id="k1", customer_id="c1", key_hash="11" * 32, prefix="tg_1"))],
        [("customer", Customer(id="c1", name="renamed")), ("api", _api(3))],
        [("key", None), ("key2", ApiKey(id="k2", customer_id="c1", key_hash="11" * 32, prefix="tg_2"))],
        [("customer", Customer(id="c1", name="renamed again"))],
    ]
    lines = []
    for n, step in enumerate(steps):
        changed = []
        for kind, entity in step:
            if kind == "key2":
                index.upsert("key", entity)
                changed.append(("key", entity.id))
            elif entity is None:
                index.remove(kind, "k1")
                changed.append((kind, "k1"))
            else:
                index.upsert(kind, entity)
                changed.append((kind, entity.id))
        index.revision = n + 2
        lines.append(index.delta_body(n + 1, changed))
        append_journal(journal_file(settings.cache_file), lines[-1])
    return lines


def test_a_journal_replayed_as_one_delta_equals_its_deltas_one_by_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = WorkerSettings(cache_dir=tmp_path)
    lines = _mixed_journal(settings)
    merged, count = merge_deltas(lines)
    assert count == len(lines) and merged is not None
    assert len(merged["changes"]) == 4  # api, customer, k1 (its delete), k2: each entity's last change
    worker, compiled = _start(tmp_path, caplog)
    assert compiled == 1
    by_one = EntityStore.of(with_key_table(Snapshot.from_json(settings.cache_file.read_bytes())))
    for line in lines:
        by_one.apply(parse_delta(line))
    assert worker.store is not None
    assert worker.store.snapshot().to_json() == by_one.snapshot().to_json()
    assert worker.store.customers["c1"].name == "renamed again" and len(worker.store.apis["a"].routes) == 3
    assert [k.id for k in worker.store.keys] == ["k2"]


def test_a_journal_cut_by_a_crash_is_replayed_up_to_the_cut(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = WorkerSettings(cache_dir=tmp_path)
    lines = _mixed_journal(settings)
    journal = journal_file(settings.cache_file)
    journal.write_bytes(b"\n".join(lines[:3]) + b"\n" + lines[3][: len(lines[3]) // 2] + b"\n")
    assert merge_deltas(journal.read_bytes().splitlines())[1] == 3
    worker, _ = _start(tmp_path, caplog)
    assert worker.store is not None and worker.store.revision == 4  # the three whole lines' deltas
    assert any("line 4 not applied" in r.getMessage() for r in caplog.records)
    # a line that does not follow the one before ends the merge there too
    assert merge_deltas([lines[0], lines[2]])[1] == 1
