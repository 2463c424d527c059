"""Graceful shutdown at the socket level: stop new handshakes without resetting the ones the kernel
already answered, and close a client connection without turning late bytes into a reset.

What a client must never see around a SIGTERM (issue 13, item 11) is a reset, or the end of the
connection, after its connection was accepted and its request sent.  Measured before this module
(``tests/integration/test_graceful_shutdown.py``, 15 rounds under load): 17–59 such failures in
9–13 of the rounds, all within 1–7 ms of the signal.  Besides the worker closing idle connections at
once (``ClientConnection.drain`` now gives them a grace), two kernel behaviours caused them:

* **Closing a listening socket resets every connection in its accept queue**, and every handshake
  in progress: those clients already had their SYN-ACK, so for them the connection was open.
  :func:`stop_handshakes` instead attaches a classic BPF socket filter to the listener that drops
  SYN segments: no new handshake starts (the client's retransmitted SYN, about a second later,
  meets the closed listener and is refused), while the final ACKs of handshakes already answered
  still complete them.  The worker keeps accepting for :data:`LISTEN_SETTLE` seconds — a few
  round trips — and only then closes the listener, with nothing left in its queue.
* **Closing a socket that holds unread bytes, or that receives bytes after the close, makes the
  kernel send RST.**  :func:`linger_close` (what nginx calls a lingering close) half-closes
  instead: the FIN goes out after what was written, then whatever the client still sends is read
  and discarded until its own FIN (or :data:`LINGER` seconds), and only then is the socket closed.

Linux only (``SO_ATTACH_FILTER``); elsewhere :func:`stop_handshakes` returns False and the
listener is closed at once, as before.
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import logging
import socket
import struct
import sys
import termios
from collections.abc import Callable

log = logging.getLogger("tollgate.worker")

LISTEN_SETTLE = 0.05  # seconds between dropping SYNs and closing the listener: handshakes in flight complete
LINGER = 2.0  # seconds a half-closed connection is read (and discarded) while waiting for the client's FIN

SO_ATTACH_FILTER = 26  # <asm-generic/socket.h>


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


# A TCP socket's filter sees the segment from its TCP header on: byte 13 holds the flags.
#   ldb [13]; jset #0x02 (SYN) -> drop; else accept the whole segment
_DROP_SYN = (
    (0x30, 0, 0, 13),  # BPF_LD | BPF_B | BPF_ABS
    (0x45, 0, 1, 0x02),  # BPF_JMP | BPF_JSET | BPF_K: SYN set -> next, else skip one
    (0x06, 0, 0, 0),  # BPF_RET | BPF_K: keep 0 bytes = drop
    (0x06, 0, 0, 0xFFFFFFFF),  # BPF_RET | BPF_K: keep everything
)


def _drop_syn_program() -> tuple[bytes, ctypes.Array[_SockFilter]]:
    """The ``struct sock_fprog`` bytes and the instruction array they point to (keep it alive
    until the ``setsockopt`` returned: the kernel copies it then)."""
    insns = (_SockFilter * len(_DROP_SYN))(*(_SockFilter(*i) for i in _DROP_SYN))
    prog = _SockFprog(len(_DROP_SYN), insns)
    return ctypes.string_at(ctypes.addressof(prog), ctypes.sizeof(prog)), insns


def stop_handshakes(server: asyncio.AbstractServer) -> bool:
    """Make the kernel drop SYNs to ``server``'s listening sockets, which stay open (and accepting)
    for the handshakes already answered.  True when that worked for all of them."""
    if not sys.platform.startswith("linux"):
        return False
    sockets = getattr(server, "sockets", None) or ()
    fprog, _insns = _drop_syn_program()
    try:
        for sock in sockets:
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    except OSError as exc:
        log.warning("cannot hold new connections off before closing the listener (%s)", exc)
        return False
    return bool(sockets)


def unread_bytes(transport: asyncio.BaseTransport) -> int:
    """Bytes the kernel holds for this connection that the loop has not read yet (0 if unknown)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        buf = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except (OSError, ValueError):
        return 0
    return int(struct.unpack("i", buf)[0])


class _Lingering(asyncio.Protocol):
    """Takes over a half-closed connection: discards what arrives, closes at the client's FIN."""

    def __init__(self, on_lost: Callable[[Exception | None], None], timer: asyncio.TimerHandle) -> None:
        self.on_lost = on_lost
        self.timer = timer

    def data_received(self, data: bytes) -> None:
        pass  # a request sent after our FIN: read so that closing later is not a reset

    def eof_received(self) -> bool:
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.timer.cancel()
        self.on_lost(exc)


def linger_close(
    transport: asyncio.Transport,
    loop: asyncio.AbstractEventLoop,
    on_lost: Callable[[Exception | None], None],
    linger: float = LINGER,
) -> None:
    """FIN after what ``transport`` has buffered, read and discard until the client's FIN or
    ``linger`` seconds, then close; ``on_lost`` is called when the connection is gone (the old
    protocol's ``connection_lost``).  Nothing may be written to ``transport`` afterwards."""
    if not transport.can_write_eof():
        transport.close()
        return
    transport.write_eof()
    timer = loop.call_later(linger, transport.close)
    transport.set_protocol(_Lingering(on_lost, timer))
    transport.resume_reading()
