"""The webhook sender: one task per control-plane process that POSTs the outbox's due deliveries.

Each round leases up to ``concurrency`` due deliveries (:func:`~control_plane.services.webhook_outbox.claim`),
attempts them concurrently with httpx, and records each outcome under its lease.  It runs a round
every ``poll_interval``, at once when :meth:`poke` is called (the usage ingest and every revision
change call it, so a local event goes out without waiting), and straight again after a full round.
Every ``scan_interval`` it also writes ``tollgate.key.expiring`` events and purges old events.
State lives in the database only: a restarted process, or another replica, carries on where this
one stopped (a lease it held runs out and the delivery is claimed again).

One event per request, CloudEvents structured mode (``content-type: application/cloudevents+json``),
the body the same bytes on every attempt; headers ``webhook-id`` (the event id, for de-duplication)
and ``Tollgate-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the endpoint's
secret>`` (Stripe's scheme; a new ``t`` per attempt).  An answer in 200-299 delivers; anything else,
a connection failure or no complete answer within ``timeout`` is a failed attempt (redirects are not
followed).  Secrets and URLs are never logged: an endpoint is named by its id.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.orm import Session, sessionmaker

from control_plane.errors import SecretUnreadable
from control_plane.secretbox import SecretBox
from control_plane.services import webhook_events as events_svc
from control_plane.services import webhook_outbox as outbox
from control_plane.services.webhooks import authorization_aad, secret_aad
from control_plane.settings import WebhookSettings

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Tollgate-Signature"
CONTENT_TYPE = "application/cloudevents+json"
USER_AGENT = "Tollgate-Webhooks/1"
_LEASE_MARGIN = 30.0  # seconds a lease outlasts the attempt's timeout: recording the outcome fits in it
_ANSWER_READ = 65536  # bytes of an answer read (then the connection is dropped rather than drained)
_ERROR_SNIPPET = 200


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Tollgate-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def cloudevent(claimed: outbox.Claimed, source: str) -> bytes:
    """The event as sent: CloudEvents 1.0 JSON, attributes in the spec's order, compact."""
    doc = {
        "specversion": "1.0",
        "id": claimed.event_id,
        "source": source,
        "type": claimed.event_type,
        "subject": claimed.subject,
        "time": events_svc.rfc3339(claimed.time),
        "datacontenttype": "application/json",
        "data": claimed.data,
    }
    if doc["subject"] is None:
        del doc["subject"]
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


class WebhookSender:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: WebhookSettings,
        box: SecretBox,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._box = box
        self._transport = transport
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poke = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._next_scan = 0.0

    async def start(self) -> None:
        if not self._settings.deliver:
            log.info("webhook delivery is off in this process (TOLLGATE_WEBHOOK_DELIVER=false)")
            return
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._client = httpx.AsyncClient(
            transport=self._transport,
            follow_redirects=False,
            timeout=httpx.Timeout(self._settings.timeout),
            limits=httpx.Limits(max_connections=self._settings.concurrency),
            headers={"user-agent": USER_AGENT},
        )
        self._task = asyncio.create_task(self._run(), name="tollgate-webhook-sender")

    async def stop(self) -> None:
        # No cancel (as the publisher and the JWKS refresher): the round in flight finishes, bounded by
        # the attempt timeout, and records its outcomes; nothing is left half-recorded.
        self._closing = True
        self._poke.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def poke(self) -> None:
        """Look for due deliveries now.  Safe to call from any thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._poke.set)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        while not self._closing:
            full = False
            try:
                if self._clock() >= self._next_scan:
                    self._next_scan = self._clock() + self._settings.scan_interval
                    await asyncio.to_thread(self.scan)
                full = await self.run_round()
            except Exception:  # the database briefly unreachable: try again next period
                log.warning("webhook delivery round failed", exc_info=True)
            if full and not self._closing:
                continue  # more may be due: no pause
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self._settings.poll_interval)
            self._poke.clear()

    async def run_round(self) -> bool:
        """Attempt the due deliveries this process can lease now; True when it leased a full round."""
        limit = self._settings.concurrency
        claimed = await asyncio.to_thread(self._claim, limit)
        if not claimed:
            return False
        outcomes = await asyncio.gather(*(self._attempt(c) for c in claimed))
        await asyncio.to_thread(self._record, list(zip(claimed, outcomes, strict=True)))
        return len(claimed) >= limit

    def _claim(self, limit: int) -> list[outbox.Claimed]:
        lease_for = timedelta(seconds=self._settings.timeout + _LEASE_MARGIN)
        with self._sessions() as session:
            return outbox.claim(session=session, limit=limit, lease_for=lease_for, now=self._now())

    def _record(self, results: list[tuple[outbox.Claimed, outbox.Outcome]]) -> None:
        s = self._settings
        with self._sessions() as session:
            for claimed, outcome in results:
                status = outbox.record(
                    session=session,
                    claimed=claimed,
                    outcome=outcome,
                    now=self._now(),
                    max_age=timedelta(seconds=s.max_age),
                    base=s.backoff_base,
                    cap=s.backoff_cap,
                )
                if status == outbox.FAILED:
                    log.warning(
                        "webhook delivery %s (event %s) to endpoint %s failed for good after %d attempts: %s",
                        claimed.delivery_id,
                        claimed.event_id,
                        claimed.endpoint_id,
                        claimed.attempts + 1,
                        outcome.error,
                    )
            session.commit()

    def scan(self) -> None:
        """Expiring-key events, and the purge of events older than the retention."""
        s = self._settings
        now = self._now()
        with self._sessions() as session:
            n = events_svc.expiring_keys(session=session, within=timedelta(days=s.key_expiring_days), now=now)
            purged = outbox.purge(session=session, older_than=now - timedelta(seconds=s.retention))
            session.commit()
        if n or purged:
            log.info("webhooks: %d key-expiring event(s) written, %d old event(s) purged", n, purged)

    # ------------------------------------------------------------------ one attempt

    async def _attempt(self, claimed: outbox.Claimed) -> outbox.Outcome:
        assert self._client is not None
        try:
            secret = self._box.decrypt(claimed.secret_encrypted, aad=secret_aad(claimed.endpoint_id)).decode()
            authorization = None
            if claimed.authorization_encrypted is not None:
                authorization = self._box.decrypt(
                    claimed.authorization_encrypted, aad=authorization_aad(claimed.endpoint_id)
                ).decode()
        except SecretUnreadable:
            return outbox.Outcome(False, error="the endpoint's secret does not open with this replica's secret key")
        body = cloudevent(claimed, self._settings.source)
        headers = {
            "content-type": CONTENT_TYPE,
            "webhook-id": claimed.event_id,
            SIGNATURE_HEADER: sign(secret, body, int(self._clock())),
        }
        if authorization is not None:
            headers["authorization"] = authorization
        try:
            async with asyncio.timeout(self._settings.timeout):
                async with self._client.stream("POST", claimed.url, content=body, headers=headers) as response:
                    status = response.status_code
                    answer = b""
                    if not 200 <= status < 300:
                        async for chunk in response.aiter_bytes():
                            answer += chunk
                            if len(answer) >= _ANSWER_READ:
                                break
        except TimeoutError:
            return outbox.Outcome(False, error=f"timed out after {self._settings.timeout:g} s")
        except httpx.TimeoutException as exc:  # one phase (connect, write, read) over the timeout
            return outbox.Outcome(False, error=f"timed out after {self._settings.timeout:g} s ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return outbox.Outcome(False, error=f"{type(exc).__name__}: {exc}"[:500])
        if 200 <= status < 300:
            return outbox.Outcome(True, status)
        return outbox.Outcome(False, status, f"HTTP {status}: {_snippet(answer)}".rstrip(": "))


def _snippet(answer: bytes) -> str:
    text = answer[:_ERROR_SNIPPET].decode("utf-8", "replace")
    return "".join(c if c.isprintable() else " " for c in text).strip()
