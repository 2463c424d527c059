"""Snapshot distribution: one content index per process, long-poll waiters, and revision polling.

Concurrency model (all on the app's event loop; database work goes to threads):

* ``_index`` (:class:`~control_plane.snapshots.content.ContentIndex`) is the config at ``_index.revision``
  as canonical bytes per entity.  It moves to a new revision by reading the change log
  (:mod:`control_plane.services.changelog`) and re-encoding only the entities named there; a full build
  happens at start, when the log does not cover the step (compacted, or a ``*`` change) or when the
  step is larger than :data:`MAX_DELTA`.  Moves happen under ``_build_lock``, so a burst of waiters
  causes one, not one each.
* One encoding per revision: the full body's gzip (made on the first request for it, from the index's
  deflated chunks: only the chunks changed since are compressed) and each delta body (by the revision
  it starts from) are built once and handed to every waiter; the plain full body only for a client
  that does not take gzip.
* ``_changed`` is replaced every time the known revision moves: a waiter grabs the current event
  *before* comparing hashes, so a change landing between the comparison and the wait still wakes it.
* The poll task reads ``config_state.revision`` every ``poll_interval`` seconds, or at once when
  :meth:`notify` is called after a local commit.  Polling is what carries a write made through
  another replica on the same database to the workers attached to this one; every replica reads the
  same change log, so all of them serve the same deltas and hashes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from control_plane.secretbox import SecretBox
from control_plane.services import changelog
from control_plane.services.revision import current_revision
from control_plane.snapshots.build import build_snapshot, load_entities
from control_plane.snapshots.content import ContentIndex
from data_plane.heap import release_free_memory

log = logging.getLogger(__name__)

MAX_DELTA = 20_000  # changed entities beyond which a far-behind worker gets the full snapshot instead
CHANGE_LOG_KEEP = 10_000  # revisions of change log kept (compaction); a worker further behind gets a full snapshot
COMPACT_EVERY = 100  # revisions between two compactions by this replica


@dataclass(slots=True)
class Published:
    """The config of one revision as this replica serves it: hash, full body, deltas (built once each)."""

    revision: int
    hash: str
    generated_at: str
    full: bytes | None = None
    full_gzip: tuple[bytes, ...] | None = None  # its parts (ContentIndex.gzip_parts), sent one after the other
    deltas: dict[int, bytes] = field(default_factory=dict)  # from revision -> body; b"" when a full is due


@dataclass(frozen=True, slots=True)
class Reply:
    revision: int
    hash: str
    parts: tuple[bytes, ...]  # the body: these bytes one after the other (shared, never joined)
    gzipped: bool
    delta: bool


class SnapshotPublisher:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        poll_interval: float,
        box: SecretBox | None = None,
        cluster_token: str | None = None,
    ) -> None:
        self._sessions = sessions
        self._box = box  # opens certificates' keys, which the build seals for the workers with the token
        self._cluster_token = cluster_token
        self._poll_interval = poll_interval
        self._index: ContentIndex | None = None
        self._published: Published | None = None
        self._hashes: dict[int, str] = {}  # recent revisions' hashes (which deltas can start from)
        self._revision = -1
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._warming: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._poke = asyncio.Event()
        self._build_lock = asyncio.Lock()
        self.waiting = 0  # long-polls held right now: the workers attached to this replica
        self.on_revision: list[Callable[[], None]] = []  # called (on the loop) whenever the known revision moves

    @property
    def revision(self) -> int:
        return self._revision

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._closing = False
        await self.current()
        self._task = asyncio.create_task(self._poll_forever(), name="tollgate-revision-poll")
        self._warming = asyncio.create_task(self._warm(), name="tollgate-full-gzip")

    async def stop(self) -> None:
        # No cancel: a cancelled task would abandon a database read still running in its thread,
        # and that thread would hand its connection back to an engine already disposed of.
        self._close_waiters()
        self._poke.set()
        if self._warming is not None:
            await self._warming
            self._warming = None
        if self._task is not None:
            await self._task
            self._task = None

    def notify(self) -> None:
        """A local write committed: check the revision now.  Safe to call from any thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._poke.set)

    def release_waiters(self) -> None:
        """Shutting down: answer every held long-poll now (304) instead of holding the server open."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._close_waiters)

    # ------------------------------------------------------------------ reading

    async def current(self) -> Published:
        """The config of the revision in the database right now (its hash computed once per revision)."""
        revision = await asyncio.to_thread(self._read_revision)
        if revision != self._revision:
            self._set_revision(revision)
        return await self._published_for(revision)

    async def full_body(self, published: Published) -> bytes:
        """The full snapshot body of ``published`` (built once per revision, then kept; once its gzip
        exists, only the gzip is kept and this decompresses it)."""
        if published.full is not None:
            return published.full
        if published.full_gzip is not None:
            return await asyncio.to_thread(gzip.decompress, b"".join(published.full_gzip))
        published.full = await asyncio.to_thread(self._full_body, published)
        return published.full

    async def wait_for_change(
        self, known_hash: str, timeout: float, *, since: int | None = None, gzip_ok: bool = False
    ) -> Reply | None:
        """What a worker at ``known_hash`` (and revision ``since``) needs as soon as the hash differs
        from it: a delta when the log covers ``since``, else the full snapshot; None after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        changed = self._changed
        published = await self.current()
        if published.hash == known_hash:
            self.waiting += 1
            try:
                found = await self._hold(published, known_hash, changed, deadline)
            finally:
                self.waiting -= 1
            if found is None:
                return None
            published = found
        return await self._reply(published, known_hash, since, gzip_ok)

    async def _hold(
        self, published: Published, known_hash: str, changed: asyncio.Event, deadline: float
    ) -> Published | None:
        loop = asyncio.get_running_loop()
        while published.hash == known_hash:
            remaining = deadline - loop.time()
            if self._closing or remaining <= 0:
                return None
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                return None
            # The poller just read the revision: no need for another query per waiter.
            changed = self._changed
            published = await self._published_for(self._revision)
        return published

    async def _reply(self, published: Published, known_hash: str, since: int | None, gzip_ok: bool) -> Reply:
        async with self._build_lock:  # bodies are built from the index, which moves under this lock only
            latest = self._published
            if latest is not None and latest.revision >= published.revision:
                published = latest
            # A delta only from a revision whose hash this replica knows to be the worker's (a worker
            # with a cache from another database history at the same revision number gets a full one).
            if since is not None and known_hash and 0 <= since < published.revision:
                if self._hashes.get(since, known_hash) == known_hash:
                    body = published.deltas.get(since)
                    if body is None:
                        body = published.deltas[since] = await asyncio.to_thread(self._delta, published, since)
                    if body:
                        return Reply(published.revision, published.hash, (body,), False, True)
            if not gzip_ok:
                return Reply(published.revision, published.hash, (await self.full_body(published),), False, False)
            if published.full_gzip is None:
                published.full_gzip = tuple(await asyncio.to_thread(self._gzip_parts, published))
                # Only the gzip is kept from now on (workers ask for it): the plain body (233 MB at a
                # million keys, ~2 x its gzip) is what a client without gzip gets decompressed from it.
                published.full = None
            return Reply(published.revision, published.hash, published.full_gzip, True, False)

    # ------------------------------------------------------------------ internals

    async def _warm(self) -> None:
        """At start, the current revision's full gzip, before a worker asks for it: deflating every
        chunk of the index (~3 s at a million keys) once, so the first worker to join does not wait
        for it; later revisions deflate only their changed chunks."""
        try:
            async with self._build_lock:
                published = self._published
                if self._closing or published is None or published.full_gzip is not None:
                    return
                index = self._index
                if index is None or index.revision != published.revision:
                    return
                published.full_gzip = tuple(await asyncio.to_thread(self._gzip_parts, published))
                published.full = None
        except Exception:  # only a head start: the first worker's request makes it otherwise
            log.warning("could not prepare the full snapshot's gzip", exc_info=True)

    async def _published_for(self, revision: int) -> Published:
        published = self._published
        if published is not None and published.revision == revision:
            return published
        async with self._build_lock:
            published = self._published
            if published is not None and published.revision == revision:
                return published
            published = await asyncio.to_thread(self._advance)
            self._published = published
            if published.revision != self._revision:
                self._set_revision(published.revision)
            log.debug("published revision=%d hash=%s", published.revision, published.hash)
            return published

    def _set_revision(self, revision: int) -> None:
        self._revision = revision
        self._wake()
        for listener in self.on_revision:
            listener()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _close_waiters(self) -> None:
        self._closing = True
        self._wake()

    async def _poll_forever(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self._poll_interval)
            self._poke.clear()
            if self._closing:
                return
            try:
                revision = await asyncio.to_thread(self._read_revision)
            except Exception:  # database briefly unreachable: keep serving the cached snapshot
                log.warning("could not read the config revision", exc_info=True)
                continue
            if revision != self._revision:
                self._set_revision(revision)

    def _read_revision(self) -> int:
        with self._sessions() as session:
            return current_revision(session)

    def _build(self) -> ContentIndex:
        with self._sessions() as session:
            snapshot = build_snapshot(session, box=self._box, cluster_token=self._cluster_token)
        index = ContentIndex.of(snapshot)
        del snapshot
        release_free_memory()  # the rows and snapshot types of the build: back to the system
        return index

    def _advance(self) -> Published:
        """Bring the index to the database's revision (in a thread): by the change log when it covers
        the step, else by a full build."""
        index = self._index
        if index is not None:
            try:
                if self._step(index):
                    return self._publish(index)
            except Exception:  # the index may be half-moved: rebuild from scratch below
                log.warning("could not apply the change log; building the full snapshot", exc_info=True)
        index = self._build()
        return self._publish(index)

    def _publish(self, index: ContentIndex) -> Published:
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self._index = index
        self._hashes[index.revision] = index.hash
        if len(self._hashes) > 2 * CHANGE_LOG_KEEP:
            for old in sorted(self._hashes)[:CHANGE_LOG_KEEP]:
                del self._hashes[old]
        return Published(revision=index.revision, hash=index.hash, generated_at=now)

    def _step(self, index: ContentIndex) -> bool:
        """Move ``index`` by the change log to the current revision; False when the log cannot."""
        with self._sessions() as session:
            if session.get_bind().dialect.name == "postgresql":
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            for _ in range(9):
                target = current_revision(session)
                if target == index.revision:
                    return True
                if target < index.revision:
                    return False  # the database went back (restored): start again
                rows = changelog.changes_since(session, index.revision, target)
                if rows is None:
                    return False
                changed: dict[str, set[str]] = defaultdict(set)
                for _rev, kind, ident, _op in rows:
                    if kind == changelog.FULL:
                        return False
                    if kind != changelog.NOTHING:
                        changed[kind].add(ident)
                if sum(len(ids) for ids in changed.values()) > MAX_DELTA:
                    return False
                loaded = {
                    kind: load_entities(session, kind, ids, box=self._box, cluster_token=self._cluster_token)
                    for kind, ids in changed.items()
                }
                # pysqlite reads outside one transaction: a write landing meanwhile moves the revision;
                # read again (every config write bumps it, so an unchanged revision means none landed).
                if session.get_bind().dialect.name != "postgresql" and current_revision(session) != target:
                    continue
                for kind, ids in changed.items():
                    for ident in ids:
                        entity = loaded[kind].get(ident)
                        if entity is None:
                            index.remove(kind, ident)
                        else:
                            index.upsert(kind, entity)
                index.revision = target
                if target // COMPACT_EVERY != (target - len(rows)) // COMPACT_EVERY:
                    self._compact(target)
                return True
        return False

    def _compact(self, revision: int) -> None:
        try:
            with self._sessions() as session:
                deleted = changelog.compact(session, keep_after=revision - CHANGE_LOG_KEEP)
                session.commit()
            if deleted:
                log.info("change log: %d rows of revisions <= %d deleted", deleted, revision - CHANGE_LOG_KEEP)
        except Exception:  # housekeeping: another replica may be doing the same
            log.warning("could not compact the change log", exc_info=True)

    def _full_body(self, published: Published) -> bytes:
        index = self._index
        assert index is not None and index.revision == published.revision
        return index.body(published.generated_at)

    def _gzip_parts(self, published: Published) -> list[bytes]:
        index = self._index
        assert index is not None and index.revision == published.revision
        return index.gzip_parts(published.generated_at)

    def _delta(self, published: Published, since: int) -> bytes:
        """The delta body from ``since`` to ``published``, or b"" when a full snapshot is due."""
        index = self._index
        if index is None or index.revision != published.revision:
            return b""
        with self._sessions() as session:
            rows = changelog.changes_since(session, since, published.revision)
        if rows is None:
            return b""
        changed: dict[tuple[str, str], None] = {}
        for _rev, kind, ident, _op in rows:
            if kind == changelog.FULL:
                return b""
            if kind == changelog.NOTHING:
                continue
            changed.pop((kind, ident), None)
            changed[(kind, ident)] = None  # ordered by the last change of each entity
        if len(changed) > MAX_DELTA:
            return b""
        return index.delta_body(since, list(changed))
