"""data_plane/sync.py's cache file: written atomically, read back, and any unreadable one ignored.

A worker starts from its cache file before the control plane answers; a cache it cannot read must
be logged and ignored, whatever is wrong with it, never stop the worker from starting.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from data_plane import sync
from data_plane.settings import WorkerSettings
from data_plane.snapshot import Snapshot, SnapshotError, Target, Upstream
from data_plane.snapshot.keytable import KeyTable
from data_plane.sync import ConfigSync, journal_file, packed_file, read_cache, read_packed, write_cache

GOOD = Snapshot(
    revision=7, upstreams=(Upstream(id="u", name="u", targets=(Target(id="t", host="127.0.0.1", port=9000),)),)
).sealed()


def test_a_written_cache_reads_back_as_the_same_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "snapshot-8000.json"
    write_cache(path, GOOD)
    assert read_cache(path) == GOOD
    assert read_cache(tmp_path / "missing.json") is None


@pytest.mark.parametrize(
    "content",
    [
        b"[" * 200_000,  # nested deeper than the JSON decoder's stack: RecursionError
        b'{"a":' * 200_000,
        b"\xff\xfe\x00garbage",  # not UTF-8
        b'{"schema_version": "1.4", "revision": 1, "upstreams": [',  # cut short
        b'{"schema_version": "1.4", "revision": 1, "upstreams": [1], "apis": []}',  # wrong shapes
        b'{"schema_version": "9.0", "revision": 1, "upstreams": [], "apis": []}',  # newer major
        b"null",
        b"",
    ],
    ids=["deep-array", "deep-object", "not-utf8", "truncated", "wrong-shape", "newer-major", "null", "empty"],
)
def test_an_unreadable_cache_is_logged_and_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    path = tmp_path / "snapshot-8000.json"
    path.write_bytes(content)
    with caplog.at_level(logging.ERROR, logger="tollgate.sync"):
        assert read_cache(path) is None
    assert any("is corrupt" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)


def test_deep_nesting_from_the_control_plane_is_a_snapshot_error() -> None:
    # The same bytes in a control-plane answer: ConfigSync._receive catches SnapshotError/ValueError,
    # so a RecursionError escaping from_json would end the sync task.
    with pytest.raises(SnapshotError, match="not valid JSON"):
        Snapshot.from_json(b"[" * 200_000)


def _with_keys() -> tuple[bytes, Snapshot]:
    doc = GOOD.to_dict()
    doc["plans"] = [{"id": "p1", "name": "gold"}]
    doc["customers"] = [
        {"id": "c1", "name": "one"},
        {  # every field away from its default: the packed form's rows must give them all back
            "id": "c2",
            "name": "twö \ud800",
            "status": "suspended",
            "api_ids": ["a1", "a2"],
            "plan_id": "p1",
            "quota_extra": 5,
            "quota_extra_start": 10,
            "quota_extra_end": 20,
            "mtls_fingerprints": ["ab" * 32],
            "mtls_subjects": ["CN=two"],
            "billing_anchor": 1_700_000_000,
            "time_zone": "Europe/Paris",
            "cycle_since": 1_700_000_001,
            "external_id": "ext-2",
        },
    ]
    doc["keys"] = [
        {"id": f"k{i}", "customer_id": f"c{i % 2 + 1}", "key_hash": f"{i:064x}", "prefix": f"tg_{i}"} for i in range(50)
    ]
    doc.pop("hash")
    body = Snapshot.from_dict(doc).to_json()
    return body, Snapshot.from_json(body)


def test_a_cache_written_with_its_snapshot_reads_back_from_its_packed_form(tmp_path: Path) -> None:
    body, snap = _with_keys()
    path = tmp_path / "snapshot-8000.json"
    write_cache(path, body, snap)
    assert path.read_bytes() == body  # the JSON as received stays the cache
    packed = read_packed(path)
    assert packed is not None and isinstance(packed.keys, KeyTable)
    assert packed.hash == snap.hash and packed.revision == snap.revision
    assert list(packed.keys) == list(snap.keys) and packed.customers == snap.customers
    assert packed.keys.by_hash(f"{7:064x}") == snap.keys.by_hash(f"{7:064x}")  # type: ignore[attr-defined]
    assert read_cache(path) == packed
    assert packed.customers[1].status == "suspended" and packed.customers[1].api_ids == ("a1", "a2")


def test_a_packed_cache_of_another_release_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Customers written with other fields (a release whose Customer differs), or the companion's
    earlier format: the JSON cache is read."""
    body, snap = _with_keys()
    path = tmp_path / "snapshot-8000.json"
    write_cache(path, body, snap)
    companion = packed_file(path)
    good = companion.read_bytes()
    with monkeypatch.context() as m:
        m.setattr(sync, "_CUSTOMER_FIELDS", (*sync._CUSTOMER_FIELDS, "added_later"))
        with caplog.at_level(logging.WARNING, logger="tollgate.sync"):
            assert read_packed(path) is None
        assert any("customers written with other fields" in r.getMessage() for r in caplog.records)
    companion.write_bytes(b"TGCACHE1" + good[8:])
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tollgate.sync"):
        assert read_cache(path) == snap
    assert any("of an earlier release" in r.getMessage() for r in caplog.records)


def test_a_packed_cache_that_is_stale_or_damaged_is_not_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    body, snap = _with_keys()
    path = tmp_path / "snapshot-8000.json"
    write_cache(path, body, snap)
    companion = packed_file(path)
    good = companion.read_bytes()
    # damaged: the checksum says so, and the JSON is read instead
    companion.write_bytes(good[:-3] + bytes(b ^ 0xFF for b in good[-3:]))
    with caplog.at_level(logging.WARNING, logger="tollgate.sync"):
        assert read_packed(path) is None
    assert any("cannot be used" in r.getMessage() for r in caplog.records)
    assert read_cache(path) == snap
    # stale: the JSON cache was replaced after the companion was written
    companion.write_bytes(good)
    assert read_packed(path) is not None
    other = tmp_path / "other.json"
    other.write_bytes(GOOD.to_json())
    other.replace(path)
    assert read_packed(path) is None
    assert read_cache(path) == GOOD
    # a cache written without its snapshot removes the companion it no longer matches
    write_cache(path, body)
    assert not companion.exists()


def test_the_cache_is_written_off_the_loop_and_a_delta_is_journaled_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delta right after a full snapshot is applied at once; its journal line waits for the cache
    write (which deletes the journal of the snapshot before), else a restart would lose it."""
    body, snap = _with_keys()
    release = threading.Event()
    real = sync.write_cache

    def slow_write(*args: Any) -> None:
        assert release.wait(10)
        real(*args)

    monkeypatch.setattr(sync, "write_cache", slow_write)
    settings = WorkerSettings(control_plane_url="http://127.0.0.1:9", cache_dir=tmp_path)

    async def run() -> None:
        cs = ConfigSync(settings, lambda _s: None, lambda: {})
        cs._cache_due = (body, snap)
        await cs._write_due()  # started, not finished: the loop goes on
        assert not settings.cache_file.exists()
        line = asyncio.ensure_future(cs._journal(b'{"a delta": 1}'))
        await asyncio.sleep(0.05)
        assert not line.done() and not journal_file(settings.cache_file).exists()
        release.set()
        await asyncio.wait_for(line, 10)
        assert settings.cache_file.read_bytes() == body
        assert journal_file(settings.cache_file).read_bytes() == b'{"a delta": 1}\n'
        packed = read_packed(settings.cache_file)
        assert packed is not None and list(packed.keys) == list(snap.keys)

    asyncio.run(run())
