"""A closed client connection is freed by reference counting, leaving no cycle for the GC.

With many short-lived connections (``Connection: close`` traffic) cyclic garbage makes the
collector run on the request path; the connection drops its parser (which holds the protocol for
its callbacks) when the connection is lost.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from data_plane import snapshot as snap
from data_plane.http.protocol import ClientConnection
from data_plane.server import Worker
from data_plane.settings import WorkerSettings
from data_plane.snapshot.delta import Change, Delta


class _Transport(asyncio.Transport):
    def write(self, data: Any) -> None:
        pass

    def writelines(self, chunks: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def close(self) -> None:
        pass


def test_closed_client_connections_leave_no_cyclic_garbage(tmp_path: Path) -> None:
    loop = uvloop.new_event_loop()
    worker = None
    try:
        worker = Worker(WorkerSettings(cache_dir=tmp_path), loop)
        upstream = snap.Upstream(id="u", name="u")  # no targets: every request gets a 503, no socket
        api = snap.Api(id="a", name="a", routes=(snap.Route(id="r", path="/x", upstream_id="u"),))
        worker.apply(snap.Snapshot(revision=1, upstreams=(upstream,), apis=(api,)).sealed())
        gc.collect()
        gc.disable()
        try:
            for _ in range(50):
                conn = ClientConnection(worker)
                conn.connection_made(_Transport())
                conn.data_received(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\nGET /nope HTTP/1.1\r\nhost: a\r\n\r\n")
                conn.connection_lost(None)
            left = gc.collect()
        finally:
            gc.enable()
    finally:
        if worker is not None:
            loop.run_until_complete(worker.close_limits())  # releases the usage spool's lock file
        loop.close()
    assert left == 0


class _Cyclic:
    def __init__(self) -> None:
        self.me = self


UPSTREAM = snap.Upstream(id="u", name="u")


def _api(path: str = "/x") -> snap.Api:
    return snap.Api(id="a", name="a", routes=(snap.Route(id="r", path=path, upstream_id="u"),))


@pytest.fixture
def heap_worker(tmp_path: Path) -> Iterator[Worker]:
    """A worker (no listeners) whose config swaps settle the heap; the freeze is undone afterwards."""
    loop = uvloop.new_event_loop()
    worker = None
    try:
        worker = Worker(WorkerSettings(cache_dir=tmp_path), loop)
        yield worker
    finally:
        gc.unfreeze()
        if worker is not None:
            loop.run_until_complete(worker.close_limits())  # releases the usage spool's lock file
        loop.close()


def test_config_swap_freezes_the_live_heap_and_frees_what_was_frozen_before(heap_worker: Worker) -> None:
    """After each apply the live heap is frozen (full collections skip it); the next apply unfreezes
    first, so cyclic garbage that was alive at the previous freeze (an old config) is still freed."""
    holder = [_Cyclic()]
    ref = weakref.ref(holder[0])
    heap_worker.apply(snap.Snapshot(revision=1, upstreams=(UPSTREAM,), apis=(_api(),)).sealed())
    assert gc.get_freeze_count() > 0  # the heap alive after the swap is out of the collector's way
    holder.clear()  # now cyclic garbage, but frozen: no collection can see it
    gc.collect()
    assert ref() is not None
    heap_worker.apply(snap.Snapshot(revision=2, upstreams=(UPSTREAM,), apis=(_api(),)).sealed())
    assert ref() is None  # unfrozen and collected by the next swap


def test_the_first_config_is_frozen_without_a_collection_and_its_garbage_freed_at_the_next(
    heap_worker: Worker,
) -> None:
    """The process's first config skips the collection (~0.2 s at a million keys): cyclic garbage made
    before it is frozen with it, and freed by the next whole swap, which unfreezes and collects."""
    gc.disable()
    try:
        holder = [_Cyclic()]
        ref = weakref.ref(holder[0])
        holder.clear()  # garbage already, but no collection ran
        heap_worker.apply(snap.Snapshot(revision=1, upstreams=(UPSTREAM,), apis=(_api(),)).sealed())
        assert gc.get_freeze_count() > 0
        gc.collect()
        assert ref() is not None  # frozen with the first config, not collected before it
    finally:
        gc.enable()
    heap_worker.apply(snap.Snapshot(revision=2, upstreams=(UPSTREAM,), apis=(_api(),)).sealed())
    assert ref() is None


def test_a_route_delta_collects_new_objects_only_until_the_frozen_heap_grows_by_an_eighth(heap_worker: Worker) -> None:
    """A delta that recompiles routes on the same key tables leaves the frozen heap (at size, a million
    keys) alone: a full collection there pauses the loop ~0.7 s.  Cyclic garbage that was frozen waits
    for the next full collection, which comes with a whole new config or once the frozen heap grew."""
    worker = heap_worker
    worker.apply(snap.Snapshot(revision=1, upstreams=(UPSTREAM,), apis=(_api(),)).sealed())
    frozen_after_full = worker.frozen_after_full
    assert frozen_after_full > 0
    holder = [_Cyclic()]
    ref = weakref.ref(holder[0])
    gc.freeze()  # as if it had been alive at the last swap
    holder.clear()

    def route_delta(revision: int, path: str) -> Delta:
        change = Change("api", "a", "upsert", _api(path))
        return Delta(revision - 1, revision, f"{revision:064x}", snap.SCHEMA_VERSION, (change,))

    worker.apply_delta(route_delta(2, "/y"))
    assert worker.config is not None and worker.config.revision == 2
    assert ref() is not None  # frozen garbage: not walked by the delta's collection
    assert worker.frozen_after_full == frozen_after_full
    # the frozen heap grows past an eighth (objects kept alive): the next delta collects everything
    ballast = [_Cyclic() for _ in range(frozen_after_full // 8 + 1000)]
    gc.freeze()
    worker.apply_delta(route_delta(3, "/z"))
    assert ref() is None
    # measured again after it: the ballast counted (less the first config's garbage, freed by it)
    assert worker.frozen_after_full > frozen_after_full + len(ballast) // 2
