"""data_plane/heap.py: freed heap goes back to the system after a big build (glibc)."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest

from data_plane.heap import collector_paused, release_free_memory


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim: Linux only")
def test_after_many_malloc_blocks_are_freed_the_trim_returns_their_pages() -> None:
    before = _rss_kib()
    held = [bytearray(1000) for _ in range(150_000)]  # over 512 bytes each: malloc, not pymalloc
    grown = _rss_kib()
    keep = held[-1]  # a live block at the top of the heap (as a live config keeps): glibc alone keeps the rest mapped
    del held
    freed = _rss_kib()
    assert release_free_memory() is True
    trimmed = _rss_kib()
    assert grown - before > 100_000
    # without the trim glibc keeps most of the freed blocks mapped; with it they go back
    assert trimmed < freed - (grown - before) // 2, (before, grown, freed, trimmed)
    assert keep is not None


def test_the_collector_is_paused_inside_and_left_as_it_was_after() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        before = gc.get_count()[0]
        kept = [[] for _ in range(5_000)]  # well past the young generation's threshold: no collection
        assert gc.get_count()[0] > before + gc.get_threshold()[0]  # counted up, never collected
    assert gc.isenabled() and len(kept) == 5_000
    gc.disable()
    try:
        with pytest.raises(RuntimeError), collector_paused():
            raise RuntimeError
        assert not gc.isenabled()  # off before, off after
    finally:
        gc.enable()
