"""Snapshot distribution: one cached snapshot per process, long-poll waiters, and revision polling.

Concurrency model (all on the app's event loop; database work goes to threads):

* ``_snapshot`` is the cached sealed snapshot; it is rebuilt only when the revision differs, under
  ``_build_lock`` so a burst of waiters causes one build, not one each.
* ``_changed`` is replaced every time the known revision moves: a waiter grabs the current event
  *before* comparing hashes, so a change landing between the comparison and the wait still wakes it.
* The poll task reads ``config_state.revision`` every ``poll_interval`` seconds, or at once when
  :meth:`notify` is called after a local commit.  Polling is what carries a write made through
  another replica on the same database to the workers attached to this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from control_plane.secretbox import SecretBox
from control_plane.services.revision import current_revision
from control_plane.snapshots.build import build_snapshot
from data_plane.snapshot import Snapshot

log = logging.getLogger(__name__)


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
        self._snapshot: Snapshot | None = None
        self._revision = -1
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
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

    async def stop(self) -> None:
        # No cancel: a cancelled task would abandon a database read still running in its thread,
        # and that thread would hand its connection back to an engine already disposed of.
        self._close_waiters()
        self._poke.set()
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

    async def current(self) -> Snapshot:
        """The snapshot of the revision in the database right now (built once per revision)."""
        revision = await asyncio.to_thread(self._read_revision)
        if revision != self._revision:
            self._set_revision(revision)
        return await self._snapshot_for(revision)

    async def wait_for_change(self, known_hash: str, timeout: float) -> Snapshot | None:
        """The current snapshot as soon as its hash differs from ``known_hash``; None after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        changed = self._changed
        snapshot = await self.current()
        if snapshot.hash == known_hash:
            self.waiting += 1
            try:
                return await self._hold(snapshot, known_hash, changed, deadline)
            finally:
                self.waiting -= 1
        return snapshot

    async def _hold(
        self, snapshot: Snapshot, known_hash: str, changed: asyncio.Event, deadline: float
    ) -> Snapshot | None:
        loop = asyncio.get_running_loop()
        while snapshot.hash == known_hash:
            remaining = deadline - loop.time()
            if self._closing or remaining <= 0:
                return None
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                return None
            # The poller just read the revision: no need for another query per waiter.
            changed = self._changed
            snapshot = await self._snapshot_for(self._revision)
        return snapshot

    # ------------------------------------------------------------------ internals

    async def _snapshot_for(self, revision: int) -> Snapshot:
        snapshot = self._snapshot
        if snapshot is not None and snapshot.revision == revision:
            return snapshot
        async with self._build_lock:
            snapshot = self._snapshot
            if snapshot is not None and snapshot.revision == revision:
                return snapshot
            snapshot = await asyncio.to_thread(self._build)
            self._snapshot = snapshot
            if snapshot.revision != self._revision:
                self._set_revision(snapshot.revision)
            log.debug("built snapshot revision=%d hash=%s", snapshot.revision, snapshot.hash)
            return snapshot

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

    def _build(self) -> Snapshot:
        with self._sessions() as session:
            return build_snapshot(session, box=self._box, cluster_token=self._cluster_token)
