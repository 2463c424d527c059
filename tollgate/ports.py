"""Ports checked before anything starts, so a busy one is one line that says what to change
(``tollgate up`` a second time, a worker on a port another process holds) instead of a traceback
from a child process after the banner.

Who holds a port is read from Linux's ``/proc`` (the listening socket's inode, then the process
with a descriptor on it); elsewhere, or for another user's process, the message says only that the
port is in use.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from pathlib import Path

LISTEN = "0A"  # TCP state in /proc/net/tcp


def in_use(host: str, port: int) -> bool:
    """Whether binding ``host:port`` fails now (as the server would: SO_REUSEADDR, so TIME_WAIT is no obstacle)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def holder(port: int) -> str | None:
    """``pid 1234 (tollgate up)`` for the process listening on ``port``, when it can be found."""
    inodes = {f"socket:[{i}]" for i in _listening_inodes(port)}
    if not inodes:
        return None
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue  # gone, or another user's
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    return f"pid {pid} ({_short(cmdline.strip())})"
            except OSError:
                continue
    return None


def _short(cmdline: str, limit: int = 80) -> str:
    return cmdline if len(cmdline) <= limit else cmdline[: limit - 3] + "..."


def busy_message(ports: Iterable[tuple[str, int, str]]) -> str | None:
    """The first port of ``(host, port, what to change)`` that is in use, as one line; None when all are free."""
    for host, port, setting in ports:
        if port and in_use(host, port):
            who = holder(port)
            by = f" by {who}" if who else ""
            return f"port {port} is already in use{by}: stop that process, or choose another port with {setting}"
    return None
