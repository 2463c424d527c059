"""Config sync: the worker's side of the worker <-> control-plane channel.

The worker dials out (it needs no inbound port for config) and long-polls
``GET /cluster/v1/snapshot?known_hash=H&wait=S``: the control plane answers 200 with a new
snapshot as soon as its hash differs from ``H``, or 304 when ``S`` seconds pass without change.
Each accepted snapshot is applied (validate -> compile -> swap) and written to the cache file
(write to a temp file, fsync, rename: a crash never leaves a half-written cache), which is the
last-known-good the worker starts from when the control plane is down.  Status (revision, hash,
last error) is reported on every change and as a heartbeat.  Failures back off exponentially
with full jitter so a fleet of workers does not stampede a control plane that comes back.

httpx is fine here: this is not the request path.  An ``https://`` control plane is verified
against ``TOLLGATE_CONTROL_PLANE_CA`` (else the system store; :mod:`data_plane.tls.channel`); a
certificate that does not verify is logged as such and retried with the same backoff — the worker
keeps serving its last-known-good config and never falls back to plain HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import struct
import sys
import zlib
from collections.abc import Callable, Iterable
from dataclasses import fields, replace
from operator import attrgetter
from pathlib import Path

import httpx

from data_plane import __version__
from data_plane.heap import collector_paused
from data_plane.settings import WorkerSettings
from data_plane.snapshot import Customer, Snapshot, SnapshotError
from data_plane.snapshot.delta import Delta, EntityStore, parse_delta
from data_plane.snapshot.keytable import KeyTable, PackedKeys, copy_str
from data_plane.tls.channel import channel_context, verify_failure

log = logging.getLogger("tollgate.sync")

# The journal is folded into a new cache file (the entities re-encoded) past this many bytes, so a
# restart replays a bounded number of deltas.
JOURNAL_MAX_BYTES = 32 * 1024 * 1024


def read_cache(path: Path) -> Snapshot | None:
    """The last-known-good snapshot, or None (missing, or corrupt: logged and ignored).  From its packed
    form (:func:`read_packed`) when that was written for this very file, else parsed from the JSON."""
    packed = read_packed(path)
    if packed is not None:
        log.info("cached config read from its packed form %s (%d keys)", packed_file(path).name, len(packed.keys))
        return packed
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.error("cannot read snapshot cache %s: %s; ignoring it", path, exc)
        return None
    try:
        return Snapshot.from_json(data)
    except MemoryError:
        raise  # the process is in trouble, not the file
    except Exception as exc:
        # Anything, not only SnapshotError: a cache is the worker's own file, yet a disk error, a
        # partial copy or a hand edit can make it anything (``[`` x 200,000 ends in RecursionError
        # deep in the JSON decoder).  A cache that cannot be read must never stop the worker from
        # starting: it only delays serving until the control plane answers.
        log.error(
            "snapshot cache %s is corrupt (%s: %s); ignoring it and waiting for the control plane",
            path,
            type(exc).__name__,
            str(exc)[:200],
        )
        return None


# The packed companion of a cache file: the snapshot without its keys and customers (JSON, re-encoded
# by this worker), its customers as rows of their fields' values, and the keys as the worker holds
# them (data_plane/snapshot/keytable.py), so a restart reads a million keys back in one piece and
# 100,000 customers without checking each field of each again (~0.3 s instead of ~1.6 s; the file
# is the worker's own, checked by its crc32, and its cross-references are validated as a whole).
# Bound to the JSON file it was written for by that file's size, mtime and inode: a cache written
# afterwards (or put there by hand) makes it stale, and the JSON is parsed as before.
_PACKED_MAGIC = b"TGCACHE2"
_OLDER_MAGICS = (b"TGCACHE1",)  # written by an earlier release: the JSON is read, and the next write replaces it
# magic, size, mtime_ns, ino, revision, hash len, rest len, customers len, crc
_PACKED_HEADER = struct.Struct("=8sQQQQIIII")
_CUSTOMER_FIELDS = tuple(f.name for f in fields(Customer))
_customer_values = attrgetter(*_CUSTOMER_FIELDS)
_CUSTOMER_TUPLES = tuple(i for i, f in enumerate(fields(Customer)) if str(f.type).startswith("tuple"))
_CUSTOMER_SHARED = tuple(_CUSTOMER_FIELDS.index(n) for n in ("status", "plan_id", "time_zone"))  # interned
_CUSTOMER_COPIED = tuple(_CUSTOMER_FIELDS.index(n) for n in ("id", "name"))  # keytable.copy_str
_CUSTOMER_API_IDS = _CUSTOMER_FIELDS.index("api_ids")


def packed_file(cache_file: Path) -> Path:
    return cache_file.with_name(cache_file.stem + ".packed")


def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ino


def customer_rows(customers: Iterable[Customer]) -> bytes:
    """The customers as ``{"fields": [...], "rows": [[value, ...], ...]}`` (each row its fields' values
    in the class's order; tuples as lists)."""
    rows = [_customer_values(c) for c in customers]
    return json.dumps({"fields": _CUSTOMER_FIELDS, "rows": rows}, separators=(",", ":")).encode()


def customers_from_rows(data: bytes) -> tuple[Customer, ...]:
    """What :func:`customer_rows` wrote; raises ValueError when it was written for other fields (by a
    release whose Customer differs: the JSON cache is read then)."""
    doc = json.loads(data)
    if tuple(doc["fields"]) != _CUSTOMER_FIELDS:
        raise ValueError("customers written with other fields")
    intern = sys.intern
    tuples, shared, copied, api_ids = _CUSTOMER_TUPLES, _CUSTOMER_SHARED, _CUSTOMER_COPIED, _CUSTOMER_API_IDS
    out = []
    for row in doc["rows"]:
        row[api_ids] = [intern(a) for a in row[api_ids]]
        for i in tuples:
            row[i] = tuple(row[i])
        for i in shared:
            if row[i] is not None:
                row[i] = intern(row[i])
        for i in copied:
            row[i] = copy_str(row[i])
        out.append(Customer(*row))
    return tuple(out)


def write_packed(path: Path, snapshot: Snapshot, keys: bytes | None = None) -> None:
    """Write the packed companion of the cache file ``path`` (just written, from ``snapshot``;
    ``keys``: its keys' packed buffer, when ``snapshot.keys`` is not them)."""
    if keys is None:
        table = KeyTable.of(snapshot.keys)
        keys = (KeyTable.of(list(table)) if table.changes() else table).base.buf
    rest = replace(snapshot, keys=(), customers=(), hash="", generated_at="").to_json()
    customers = customer_rows(snapshot.customers)
    name = snapshot.hash.encode("ascii")
    crc = zlib.crc32(keys, zlib.crc32(customers, zlib.crc32(rest, zlib.crc32(name))))
    size, mtime, ino = _stamp(path.stat())
    header = _PACKED_HEADER.pack(
        _PACKED_MAGIC, size, mtime, ino, snapshot.revision, len(name), len(rest), len(customers), crc
    )
    target = packed_file(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        for part in (header, name, rest, customers, keys):
            f.write(part)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)


def read_packed(path: Path) -> Snapshot | None:
    """The cached snapshot from the packed companion of ``path``, or None (none, stale, or damaged:
    then the JSON is read)."""
    target = packed_file(path)
    try:
        data = target.read_bytes()
        stamp = _stamp(path.stat())
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read packed cache %s (%s); reading %s", target, exc, path)
        return None
    try:
        if data[:8] in _OLDER_MAGICS:
            log.info("packed cache %s is of an earlier release; reading %s", target, path.name)
            return None
        if len(data) < _PACKED_HEADER.size:
            raise ValueError("shorter than its header")
        magic, size, mtime, ino, revision, name_len, rest_len, customers_len, crc = _PACKED_HEADER.unpack_from(data, 0)
        if magic != _PACKED_MAGIC:
            raise ValueError("not a packed cache")
        if (size, mtime, ino) != stamp:
            log.info("packed cache %s is older than %s; reading that", target, path.name)
            return None
        at = _PACKED_HEADER.size
        if zlib.crc32(memoryview(data)[at:]) != crc:
            raise ValueError("checksum does not match")
        name = data[at : at + name_len].decode("ascii")
        at += name_len
        rest = Snapshot.from_json(data[at : at + rest_len])  # (validated; the whole again below)
        at += rest_len
        customers = customers_from_rows(data[at : at + customers_len])
        keys = KeyTable(PackedKeys(data[at + customers_len :]))
        del data
        snapshot = replace(rest, customers=customers, keys=keys, hash=name)
        if snapshot.revision != revision:
            raise ValueError("revision does not match")
        snapshot.validate()  # the customers' plans, the keys' customers, ...
        return snapshot
    except MemoryError:
        raise
    except Exception as exc:
        log.warning("packed cache %s cannot be used (%s: %s); reading %s", target, type(exc).__name__, exc, path)
        return None


def journal_file(cache_file: Path) -> Path:
    """Where the deltas received after the cached snapshot are appended, one JSON document a line."""
    return cache_file.with_name(cache_file.stem + ".deltas")


def read_journal(path: Path) -> list[bytes]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.error("cannot read delta journal %s: %s; ignoring it", path, exc)
        return []
    return [line for line in data.split(b"\n") if line.strip()]


def append_journal(path: Path, body: bytes) -> int:
    """Append one delta (its bytes as received) and make it durable; returns the journal's size."""
    with open(path, "ab") as f:
        f.write(
            body.replace(b"\n", b" ") + b"\n"
        )  # compact JSON has no raw newline; a sender's pretty one would break lines
        f.flush()
        os.fsync(f.fileno())
        return f.tell()


def write_cache(path: Path, data: bytes | Snapshot, parsed: Snapshot | None = None, keys: bytes | None = None) -> None:
    """Write the cache file atomically.  ``data``: the bytes as received from the control plane (what
    the worker caches: a newer minor version's unknown fields, which its hash covers, are kept), or a
    snapshot to encode (the worker's own state after deltas, whose bytes nobody sent).  With the
    snapshot (``parsed``, or ``data`` itself; ``keys``: its packed keys when ``parsed`` is without
    them) the packed companion is written after it (:func:`write_packed`), so a restart need not
    parse it."""
    if isinstance(data, Snapshot):
        parsed = data
        data = data.to_json()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    if parsed is not None:
        write_packed(path, parsed, keys)
    else:
        with contextlib.suppress(FileNotFoundError):
            packed_file(path).unlink()
    with contextlib.suppress(FileNotFoundError):
        journal_file(path).unlink()  # the deltas before this snapshot: in it


class ConfigSync:
    """Keeps a worker's config in step with the control plane."""

    def __init__(
        self,
        settings: WorkerSettings,
        apply: Callable[[Snapshot], None],
        status: Callable[[], dict[str, object]],
        keys_used: dict[str, int] | None = None,
        *,
        apply_delta: Callable[[Delta], None] | None = None,
        holding: Callable[[], EntityStore | None] | None = None,
    ) -> None:
        assert settings.control_plane_url
        self._apply_delta = apply_delta
        self._holding = holding  # the worker's entities (their revision: where a delta starts)
        self._full_next = False  # a delta was refused: ask for the full snapshot once
        self.settings = settings
        self._apply = apply
        self._status = status
        self._keys_used = keys_used if keys_used is not None else {}  # the worker's, shared with the key tables
        self.known_hash = ""
        self.last_error: str | None = None
        self.connected = False
        self._client: httpx.AsyncClient | None = None
        self._status_changed = asyncio.Event()
        self._cache_due: tuple[bytes, Snapshot] | None = None
        self._writing: asyncio.Future[None] | None = None  # the cache write running in a thread

    def _headers(self) -> dict[str, str]:
        s = self.settings
        return {
            "authorization": f"Bearer {s.cluster_token or ''}",
            "x-tollgate-node-id": s.node_id,
            "x-tollgate-node-hostname": s.hostname,
            "x-tollgate-node-version": __version__,
        }

    async def run(self) -> None:
        s = self.settings
        base = s.control_plane_url.rstrip("/")  # type: ignore[union-attr]
        timeout = httpx.Timeout(5.0, read=s.long_poll_wait + 10.0)
        verify = channel_context(s.control_plane_ca)
        async with httpx.AsyncClient(base_url=base, timeout=timeout, headers=self._headers(), verify=verify) as client:
            self._client = client
            heartbeat = asyncio.ensure_future(self._heartbeat())
            try:
                await self._poll_forever(client)
            finally:
                heartbeat.cancel()

    async def _poll_forever(self, client: httpx.AsyncClient) -> None:
        s = self.settings
        delay = s.backoff_initial
        resp: httpx.Response | None = None
        while True:
            # the previous answer (a full snapshot: hundreds of MB at size) is not held through the next wait
            resp = None
            try:
                params: dict[str, str | int | float] = {"known_hash": self.known_hash, "wait": s.long_poll_wait}
                store = self._holding() if self._holding is not None else None
                if store is not None and self._apply_delta is not None and not self._full_next:
                    if store.hash == self.known_hash:
                        params["since"] = store.revision
                resp = await client.get("/cluster/v1/snapshot", params=params)
            except httpx.HTTPError as exc:
                tls = verify_failure(exc)
                if tls is not None:
                    ca = self.settings.control_plane_ca
                    trust = f"TOLLGATE_CONTROL_PLANE_CA={ca}" if ca else "the system trust store"
                    self._lost(f"control plane TLS {tls} (trusting {trust})")
                else:
                    self._lost(f"control plane unreachable: {exc.__class__.__name__}")
            else:
                if resp.status_code == 304:
                    self._reached()
                    delay = s.backoff_initial
                    continue
                if resp.status_code == 200:
                    self._reached()
                    if resp.headers.get("x-tollgate-kind") == "delta":
                        body = resp.content
                        received = self._receive_delta(body)
                        if received:
                            await self._journal(body)
                    else:
                        received = self._receive(resp.content)
                        resp = None
                        await self._write_due()
                    if received:
                        delay = s.backoff_initial
                        continue
                    # Refused snapshot: back off, so a control plane that keeps offering it is not hammered.
                elif resp.status_code == 401:
                    self._lost("control plane refused the cluster token (401)")
                else:
                    self._lost(f"control plane answered {resp.status_code}")
            # Full jitter (AWS architecture blog): sleep uniformly in [0, delay], delay doubling to a cap.
            await asyncio.sleep(random.uniform(0, delay))
            delay = min(delay * 2, s.backoff_max)

    def _receive(self, body: bytes) -> bool:
        """Apply a snapshot from the control plane; False when it was refused."""
        try:
            with collector_paused():
                snapshot = Snapshot.from_json(body)
                self._apply(snapshot)
        except (SnapshotError, ValueError) as exc:
            # Keep serving the previous config; remember the hash so we do not spin on it.
            self.last_error = f"snapshot refused: {exc}"
            log.error("%s", self.last_error)
            try:
                self.known_hash = json.loads(body).get("hash", "")
            except (ValueError, AttributeError):
                pass
            self._status_changed.set()
            return False
        self.known_hash = snapshot.hash
        self.last_error = None
        self._full_next = False
        self._status_changed.set()
        self._cache_due = (body, snapshot)  # the bytes received, validated once above: written next
        return True

    async def _write_due(self) -> None:
        """Start writing the snapshot just applied to the cache, off the event loop (at a million keys
        ~1 s of disk, which requests, the status endpoint and the next long-poll need not wait for).
        The keys are written from their packed buffer as it is now, immutable: deltas applied while the
        write runs change the table's overlay, not that buffer.  A full snapshot arriving before the
        write ended waits for it (one writer at a time, in order)."""
        due, self._cache_due = self._cache_due, None
        if due is None:
            return
        previous = self._writing
        if previous is not None:
            await previous
        body, snapshot = due
        keys = snapshot.keys
        if isinstance(keys, KeyTable) and not keys.changes():
            buf = keys.base.buf
        else:
            buf = PackedKeys.of(list(keys)).buf
        self._writing = asyncio.ensure_future(
            asyncio.to_thread(self._write_cache, body, replace(snapshot, keys=()), buf)
        )

    def _write_cache(self, body: bytes, rest: Snapshot, keys: bytes | None) -> None:
        try:
            write_cache(self.settings.cache_file, body, rest, keys)
        except OSError as exc:
            log.error("cannot write snapshot cache %s: %s", self.settings.cache_file, exc)

    def _receive_delta(self, body: bytes) -> bool:
        """Apply a delta; False when refused (the next request then asks for the full snapshot)."""
        assert self._apply_delta is not None
        try:
            delta = parse_delta(body)
            self._apply_delta(delta)
        except (SnapshotError, ValueError) as exc:
            self.last_error = f"delta refused: {exc}"
            log.error("%s", self.last_error)
            self._full_next = True
            self._status_changed.set()
            return False
        self.known_hash = delta.hash
        self.last_error = None
        self._full_next = False
        self._status_changed.set()
        return True

    async def _journal(self, body: bytes) -> None:
        """Append an applied delta to the journal, after the cache write it follows (still running when
        the delta came right after a full snapshot: the delta is served already, only its line waits)."""
        writing = self._writing
        if writing is not None:
            self._writing = None
            await writing
        try:
            path = journal_file(self.settings.cache_file)
            if append_journal(path, body) > JOURNAL_MAX_BYTES:
                store = self._holding() if self._holding is not None else None
                if store is not None:
                    # re-encoded from the entities: a newer version's unknown fields are not kept, so
                    # the file is sealed by this worker's rule and its hash is the one it will report
                    store.keys.compact()
                    write_cache(self.settings.cache_file, replace(store.snapshot(), hash="").sealed())
        except OSError as exc:
            log.error("cannot write delta journal for %s: %s", self.settings.cache_file, exc)

    def _reached(self) -> None:
        if not self.connected:
            log.info("connected to control plane %s", self.settings.control_plane_url)
            self.connected = True
            self._status_changed.set()

    def _lost(self, why: str) -> None:
        if self.connected or self.last_error != why:
            # known_hash: a config applied (from the control plane, or the cache at start) or none yet
            serving = "serving the last-known-good config" if self.known_hash else "no config yet, nothing is served"
            log.warning("%s; %s", why, serving)
        self.connected = False
        self.last_error = why

    async def _heartbeat(self) -> None:
        assert self._client is not None
        interval = self.settings.heartbeat_interval
        while True:
            try:
                await asyncio.wait_for(self._status_changed.wait(), timeout=interval)
            except TimeoutError:
                pass
            self._status_changed.clear()
            body = dict(self._status())
            body["last_error"] = self.last_error
            keys_used = dict(self._keys_used)
            self._keys_used.clear()
            if keys_used:
                body["keys_used"] = keys_used
            try:
                resp = await self._client.post(f"/cluster/v1/nodes/{self.settings.node_id}/status", json=body)
                delivered = resp.status_code < 300
            except httpx.HTTPError:
                delivered = False  # the poll loop logs reachability; status is best effort
            if not delivered:
                # Undelivered last-use goes back for the next heartbeat, keeping the newer time per key.
                for key_id, ts in keys_used.items():
                    if ts > self._keys_used.get(key_id, 0):
                        self._keys_used[key_id] = ts
