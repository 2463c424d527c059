"""The control plane's JWKS refresher: one task per process that keeps fetched key sets current.

Workers never fetch a JWKS (they need no egress and stay stateless): this task fetches every
``auth: jwt`` API's ``jwt_jwks_url`` when it falls due (no keys yet, URL changed, or last checked
``interval`` seconds ago) and stores the result through :mod:`control_plane.services.jwks`, which
bumps the config revision when the key set changed; ``on_change`` then tells the local publisher.

It runs a round at start, when the next API falls due, and when :meth:`poke` is called (the
publisher calls it on every revision change, so an API that gets or changes its URL, through any
replica or the declarative apply, is fetched at once).  A round whose fetches change nothing writes
only ``checked_at``/``last_error``.  Fetches and database work run in a thread; replicas may fetch
the same URL in one period, which costs a request and no revision (same keys, no bump).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from control_plane.jwks import Fetched, try_fetch
from control_plane.models import utcnow
from control_plane.services import jwks as svc

log = logging.getLogger(__name__)

_MIN_WAIT = 0.5  # seconds between rounds at the least, whatever falls due


class JwksRefresher:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        interval: float,
        timeout: float,
        on_change: Callable[[], None],
    ) -> None:
        self._sessions = sessions
        self._interval = interval
        self._timeout = timeout
        self._on_change = on_change
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poke = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._task = asyncio.create_task(self._run(), name="tollgate-jwks-refresh")

    async def stop(self) -> None:
        # No cancel (as the publisher): the round in its thread finishes, bounded by the fetch timeout.
        self._closing = True
        self._poke.set()
        if self._task is not None:
            await self._task
            self._task = None

    def poke(self) -> None:
        """Look for due key sets now.  Safe to call from any thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._poke.set)

    async def _run(self) -> None:
        while not self._closing:
            try:
                wait = await asyncio.to_thread(self.run_round)
            except Exception:  # database briefly unreachable: try again next period
                log.warning("jwks refresh round failed", exc_info=True)
                wait = self._interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), max(wait, _MIN_WAIT))
            self._poke.clear()

    def run_round(self) -> float:
        """Fetch and store every due key set; the seconds until the next one falls due."""
        with self._sessions() as session:
            due, wait = svc.due_for_fetch(session=session, now=utcnow(), interval=self._interval)
        results: dict[str, Fetched] = {}
        for api_id, url in due:
            if self._closing:
                break
            if url not in results:  # APIs sharing an identity provider: one fetch per round
                results[url] = try_fetch(url, timeout=self._timeout)
            self.store(api_id, url, results[url])
        return wait

    def store(self, api_id: str, url: str, result: Fetched) -> bool:
        keys, error = result
        if error is not None:
            # The URL is not logged: it may carry a credential.  The last good keys stay in use.
            log.warning("jwks fetch for api %s failed: %s; keeping the last good keys", api_id, error)
        with self._sessions() as session:
            try:
                changed = svc.record_fetch(
                    session=session, api_id=api_id, url=url, keys=keys, error=error, now=utcnow()
                )
                session.commit()
            except IntegrityError:  # another replica stored this API's first key set at the same moment
                session.rollback()
                return False
        if changed:
            log.info("jwks of api %s changed: %d key(s)", api_id, len(keys or []))
            self._on_change()
        return changed
