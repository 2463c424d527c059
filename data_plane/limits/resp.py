"""A lean pipelined Redis connection for the request path (RESP2 over one asyncio protocol).

Why not redis-py's pipeline here: the limiter sends one batch of ``EVALSHA`` calls per event-loop
iteration, and redis-py's per-command Python work (command objects, connection checkout, response
callbacks) cost more than the Redis round trip itself (bench/limiter.py).  This module does only
what that path needs: encode commands as bytes (the constant part of each command is prebuilt by
the caller), write a whole batch with one ``write``, and parse replies with hiredis' C parser —
a maintained library, the same one redis-py uses when installed — resolving one future per batch.

``open`` connects over TLS when given an ``ssl.SSLContext`` (the server's name checked against the
host) and sends ``AUTH`` (ACL user or password only) and ``SELECT`` in one round trip; which servers
to open, and what to do with MOVED / ASK / READONLY, is ``limits/topology.py``'s business.

Replies arrive in order on one connection (Redis guarantees it), so a FIFO of waiting batches is
all the bookkeeping there is.  Any failure (connection lost, a batch timing out) closes the
connection and fails every waiting batch with :class:`RespConnectionError`: replies could no
longer be matched to their commands.  Error replies are returned as :class:`RespError` values in
the result list, never raised, so one bad command does not fail its batch.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable, Sequence
from ssl import SSLContext

import hiredis

from data_plane.errors import RespConnectionError, RespError


def encode(*parts: bytes | str | int | float) -> bytes:
    """One command in RESP: ``encode(b"GET", b"k")`` -> ``*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n``."""
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        b = p if isinstance(p, bytes) else str(p).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def encode_args(args: Iterable[bytes | str | int | float]) -> bytes:
    """Bulk strings only (no ``*N`` header): to append to a prebuilt command prefix."""
    out = []
    for p in args:
        b = p if isinstance(p, bytes) else str(p).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class _Batch:
    __slots__ = ("future", "expected", "replies")

    def __init__(self, future: asyncio.Future[list[object]], expected: int) -> None:
        self.future = future
        self.expected = expected
        self.replies: list[object] = []


class RespConnection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader(replyError=RespError)
        self.waiting: deque[_Batch] = deque()
        self.closed = False

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        timeout: float,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        ssl: SSLContext | None = None,
    ) -> RespConnection:
        """Connect (TLS when ``ssl`` is given: the server's name is checked against ``host``), then
        ``AUTH`` and ``SELECT`` in one round trip; all within ``timeout``."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            _, conn = await loop.create_connection(cls, host, port, ssl=ssl, server_hostname=host if ssl else None)
            setup: list[bytes] = []
            names: list[str] = []
            if password is not None:
                # ACL user (Redis 6+) or the default user's password (requirepass); never in an error
                setup.append(encode(b"AUTH", username, password) if username else encode(b"AUTH", password))
                names.append("AUTH")
            if db:
                setup.append(encode(b"SELECT", db))
                names.append(f"SELECT {db}")
            if setup:
                replies = await conn.execute(setup, timeout=timeout)
                for name, reply in zip(names, replies, strict=True):
                    if isinstance(reply, RespError):
                        conn.close()
                        raise RespConnectionError(f"{name} refused by Redis: {reply}")
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        waiting = self.waiting
        while True:
            reply = reader.gets()
            if reply is False:
                return
            if not waiting:
                self._fail(RespConnectionError("reply without a command"))
                return
            batch = waiting[0]
            batch.replies.append(reply)
            if len(batch.replies) == batch.expected:
                waiting.popleft()
                if not batch.future.done():
                    batch.future.set_result(batch.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(RespConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    def send(self, commands: Sequence[bytes]) -> asyncio.Future[list[object]]:
        """Write a batch of encoded commands at once; the future gets one reply per command, in order."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[object]] = loop.create_future()
        if self.closed or self.transport is None or self.transport.is_closing():
            future.set_exception(RespConnectionError("connection to Redis is closed"))
            return future
        self.waiting.append(_Batch(future, len(commands)))
        self.transport.writelines(commands)
        return future

    async def execute(self, commands: Sequence[bytes], *, timeout: float) -> list[object]:
        try:
            async with asyncio.timeout(timeout):
                return await self.send(commands)
        except TimeoutError:
            # Later replies would be matched to the wrong batch: this connection is done.
            self._fail(RespConnectionError(f"Redis did not answer within {timeout}s"))
            raise RespConnectionError(f"Redis did not answer within {timeout}s") from None

    def close(self) -> None:
        self._fail(RespConnectionError("connection closed"))

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        if self.transport is not None:
            # abort, not close: nothing more is to be sent, and a TLS close would wait for the peer's
            # close_notify (a dead server never sends it; a loop ending meanwhile leaks the socket)
            self.transport.abort()
        while self.waiting:
            batch = self.waiting.popleft()
            if not batch.future.done():
                batch.future.set_exception(exc)
