"""``Idempotency-Key`` on every POST of the admin API (Stripe's semantics): a retry is safe.

A POST to ``/v1/...`` carrying ``Idempotency-Key: <1-255 visible ASCII characters>``:

* first time: it runs, and its answer (status, content type, ``Location``, body) is kept for
  :data:`RETENTION` (24 h);
* again with the same key, the same path and the same body: the kept answer is sent again, with
  ``Idempotent-Replayed: true``, and nothing runs a second time (a quota grant retried after a lost
  response is granted once);
* again with the same key but another path or body: 422;
* while the first is still running: 409 (retry later);
* the first committed its write but its answer was lost (the process died in between): 409, never a
  second execution.  ``committed`` is set in the write's own transaction (``api/deps.py``,
  ``Writer.commit``), so "ran" and "recorded as ran" cannot disagree.

Keys are per caller: the scope is the SHA-256 of the bearer token (what ``admin_tokens.token_hash``
holds), so two tokens never share keys.  A kept answer may hold a secret shown once (an API key, an
admin token, a webhook signing secret), so its body is sealed at rest with the
:class:`~control_plane.secretbox.SecretBox` (the record's scope and key as associated data).
Answers that are about the caller rather than the request (401, 403) and server errors of a write
that did not commit are not kept: the retry runs.  A POST without the header behaves as before.
Implemented as a plain ASGI middleware: the body is read once, fingerprinted and handed on; the
answer is captured as it is sent.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from control_plane.errors import SecretUnreadable
from control_plane.models import IdempotencyRecord
from control_plane.secretbox import SecretBox

RETENTION = timedelta(hours=24)
# A record without an answer and without a committed write, older than this: its request died before
# committing (a crash), so a retry may run it.
ABANDONED_AFTER = timedelta(minutes=5)
HEADER = "Idempotency-Key"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PARAMETER = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "makes a retry safe: the same key with the same body within 24 h replays the first answer "
    "(Idempotent-Replayed: true) instead of running again; with another body: 422; still running: 409",
}


def state_key(scope: Scope) -> tuple[str, str] | None:
    """(scope, key) of the request being run under an Idempotency-Key (request.state.idempotency)."""
    value = scope.get("state", {}).get("idempotency")
    return value if isinstance(value, tuple) else None


def mark_committed(session: Session, idem: tuple[str, str]) -> None:
    """Called inside the write's transaction: from now on the request never runs again."""
    session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.scope == idem[0], IdempotencyRecord.key == idem[1])
        .values(committed=True)
    )


class _Answer:
    __slots__ = ("status", "content_type", "location", "body", "replayed")

    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: str | None = None,
        location: str | None = None,
        replayed: bool = False,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.location = location
        self.replayed = replayed


def _refusal(status: int, detail: str) -> _Answer:
    if status == 422:  # the shape of the API's other 422s, naming the header
        body: Any = [{"loc": ["header", HEADER], "msg": detail, "type": "value_error"}]
    else:
        body = detail
    return _Answer(status, json.dumps({"detail": body}).encode(), "application/json")


def _aad(owner: str, key: str) -> str:
    return f"idempotency_keys/{owner}/{key}"


class IdempotencyMiddleware:
    def __init__(
        self, app: Any, sessions: sessionmaker[Session], box: SecretBox, clock: Callable[[], float] = time.time
    ) -> None:
        self.app = app
        self.sessions = sessions
        self.box = box
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        raw_key = headers.get(b"idempotency-key")
        token = headers.get(b"authorization", b"").partition(b" ")[2].strip()
        if raw_key is None or not token:
            await self.app(scope, receive, send)  # no key, or no caller to scope it to (answered 401)
            return
        key = raw_key.decode("latin-1").strip()
        if not 1 <= len(key) <= 255 or not all(0x20 <= ord(c) < 0x7F for c in key):
            await _send(send, _refusal(422, f"{HEADER} must be 1 to 255 visible ASCII characters"))
            return
        body = await _read_body(receive)
        owner = hashlib.sha256(token).hexdigest()
        fingerprint = hashlib.sha256(
            b"\0".join((scope["path"].encode(), scope.get("query_string", b""), body))
        ).hexdigest()
        verdict = await run_in_threadpool(self._begin, owner, key, fingerprint)
        if verdict is not None:
            await _send(send, verdict)
            return
        scope.setdefault("state", {})["idempotency"] = (owner, key)
        captured: dict[str, Any] = {"status": 500, "headers": [], "body": []}
        replayed_body = False

        async def replay_receive() -> Message:
            nonlocal replayed_body
            if not replayed_body:
                replayed_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = message.get("headers", [])
            elif message["type"] == "http.response.body":
                captured["body"].append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replay_receive, capture)
        except BaseException:
            await run_in_threadpool(self._finish, owner, key, None)
            raise
        got = {k.lower(): v for k, v in captured["headers"]}
        answer = _Answer(
            captured["status"],
            b"".join(captured["body"]),
            got.get(b"content-type", b"").decode("latin-1") or None,
            got.get(b"location", b"").decode("latin-1") or None,
        )
        await run_in_threadpool(self._finish, owner, key, answer)

    # ------------------------------------------------------------------ the record (in a thread)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def _begin(self, owner: str, key: str, fingerprint: str) -> _Answer | None:
        """None: run the request (its record is written); else what to answer instead."""
        now = self._now()
        with self.sessions() as session:
            session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < now - RETENTION))
            row = session.get(IdempotencyRecord, (owner, key))
            if row is not None:
                if row.fingerprint != fingerprint:
                    session.commit()
                    return _refusal(422, f"this {HEADER} was used with another request (path or body): use a new key")
                if row.status is not None:
                    session.commit()
                    assert row.body is not None
                    try:
                        body = self.box.decrypt(row.body.decode("ascii"), aad=_aad(owner, key))
                    except (SecretUnreadable, UnicodeDecodeError):
                        return _refusal(409, f"the answer kept for this {HEADER} cannot be read: read the resource")
                    return _Answer(row.status, body, row.content_type, row.location, replayed=True)
                if row.committed:
                    session.commit()
                    return _refusal(
                        409, f"the request with this {HEADER} was applied but its answer was lost: read the resource"
                    )
                if row.created_at > now - ABANDONED_AFTER:
                    session.commit()
                    return _refusal(409, f"a request with this {HEADER} is in progress: retry later")
                row.created_at = now  # the first attempt died before committing anything: this one runs
                session.commit()
                return None
            session.add(IdempotencyRecord(scope=owner, key=key, fingerprint=fingerprint, created_at=now))
            try:
                session.commit()
            except IntegrityError:  # the same key, at the same moment, from another request
                return _refusal(409, f"a request with this {HEADER} is in progress: retry later")
        return None

    def _finish(self, owner: str, key: str, answer: _Answer | None) -> None:
        with self.sessions() as session:
            row = session.get(IdempotencyRecord, (owner, key))
            if row is None:
                return
            keep = answer is not None and answer.status not in (401, 403) and (answer.status < 500 or row.committed)
            if not keep:
                if not row.committed:
                    session.delete(row)  # nothing happened that a retry could repeat: it runs again
            else:
                assert answer is not None
                row.status = answer.status
                row.body = self.box.encrypt(answer.body, aad=_aad(owner, key)).encode("ascii")
                row.content_type = answer.content_type
                row.location = answer.location
            session.commit()


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send(send: Send, answer: _Answer) -> None:
    headers = [(b"content-length", str(len(answer.body)).encode())]
    if answer.content_type:
        headers.append((b"content-type", answer.content_type.encode("latin-1")))
    if answer.location:
        headers.append((b"location", answer.location.encode("latin-1")))
    if answer.replayed:
        headers.append((b"idempotent-replayed", b"true"))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


def install(app: FastAPI, sessions: sessionmaker[Session], box: SecretBox) -> None:
    """The middleware, and the header declared on every POST operation of /v1 in the OpenAPI document."""
    app.add_middleware(IdempotencyMiddleware, sessions=sessions, box=box)
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            for path, operations in schema.get("paths", {}).items():
                post = operations.get("post")
                if path.startswith("/v1/") and post is not None:
                    post.setdefault("parameters", []).append(dict(PARAMETER))
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
