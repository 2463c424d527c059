"""The worker's access log: one JSON line per request, written in batches.

The request path only appends a tuple of values it already has to a list
(:meth:`AccessLog.add`); formatting and the ``write`` happen in :meth:`AccessLog.flush`, once per
``FLUSH_INTERVAL`` (one timer armed when the buffer goes from empty to non-empty, not one per
request) or as soon as ``FLUSH_LINES`` lines are waiting, and at shutdown.  So a busy worker makes
one ``write`` system call per ~100 ms or per 128 requests instead of one per request.  The batch
is small on purpose: formatting it blocks the loop, and 512 lines at a time (~0.8 ms) put the
worker's p99 at 2.4 ms in bench case g; 128 lines at a time: 1.9–2.0 ms, at the same req/s.

Lines are formatted by hand (``%`` and the C string escaper of the json module): about 3x cheaper
than ``json.dumps`` of a dict.  The API/route part is escaped once per route at compile time
(:attr:`RouteStats.log_labels`).  A route with a tracing policy adds ``trace_id`` (the request's
W3C trace id, sampled or not), so a log line leads to its trace.  Nothing secret is logged: the
path is logged without its query string (an API key may travel as a query parameter), and no
header is logged at all.

The write is a blocking one to a file or to stdout: a file write lands in the page cache; a stdout
pipe whose reader stops reading would stall the worker, as it would any program logging to stdout.

Rotation: :meth:`AccessLog.reopen` (the worker calls it on SIGHUP) writes what is buffered to the
file it has open, then opens the path again, so logrotate can rename the file and signal instead of
``copytruncate`` (which loses the lines written between its copy and its truncate).  Stdout is left
as it is.
"""

from __future__ import annotations

import logging
import os
import select
import stat
import sys
import time
from asyncio import AbstractEventLoop, TimerHandle
from json.encoder import encode_basestring_ascii as json_string
from typing import IO

log = logging.getLogger("tollgate.access")

FLUSH_INTERVAL = 0.1
FLUSH_LINES = 128
# Writes of at most PIPE_BUF bytes to a pipe are atomic (POSIX): worker processes sharing one
# stdout pipe (``--processes``, docker logs) then never interleave inside a line.
PIPE_BUF = getattr(select, "PIPE_BUF", 4096)

OFF = "off"
STDOUT = "-"

# (wall time, request id, api+route JSON fragment, customer id, method, path, status, target,
#  seconds, bytes in, bytes out, client ip, socket peer ip, trace id (b"": the route does not trace))
Entry = tuple[float, bytes, str, bytes, str, bytes, int, str, float, int, int, bytes, bytes, bytes]

_LINE = (
    '{"time":"%s.%03dZ","request_id":"%s",%s,"customer_id":%s,"method":"%s","path":%s,"status":%d,'
    '"upstream":%s,"latency_ms":%.3f,"bytes_in":%d,"bytes_out":%d,"client_ip":"%s","peer_ip":"%s"%s}\n'
)


class _Clock:
    """ISO 8601 seconds, formatted once per second rather than once per line."""

    __slots__ = ("second", "text")

    def __init__(self) -> None:
        self.second = -1
        self.text = ""

    def iso(self, second: int) -> str:
        if second != self.second:
            self.second = second
            self.text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return self.text


def format_entry(e: Entry, clock: _Clock) -> str:
    wall = e[0]
    second = int(wall)
    q = e[5].find(b"?")
    path = e[5] if q < 0 else e[5][:q]  # never the query: it may carry an API key
    return _LINE % (
        clock.iso(second),
        int((wall - second) * 1000),
        # request ids are generated or validated against [A-Za-z0-9-_.:] (exchange.py): no escaping
        e[1].decode("ascii"),
        e[2],
        json_string(e[3].decode("latin-1")),
        e[4],
        json_string(path.decode("latin-1")),
        e[6],
        json_string(e[7]),
        e[8] * 1000.0,
        e[9],
        e[10],
        e[11].decode("ascii", "replace"),  # an address (realip.py) or the peer: no escaping needed
        e[12].decode("ascii", "replace"),
        # 32 lowercase hex digits (data_plane/observe/tracing.py): no escaping; absent without tracing
        ',"trace_id":"' + e[13].decode("ascii") + '"' if e[13] else "",
    )


class AccessLog:
    def __init__(self, stream: IO[bytes], loop: AbstractEventLoop, *, owned: bool, path: str | None = None) -> None:
        self.stream = stream
        self.chunked = _chunked(stream)
        self.loop = loop
        self.owned = owned  # close the stream on close() (a file we opened, not stdout)
        self.path = path  # what reopen() opens again (None: stdout, left alone)
        self.pending: list[Entry] = []
        self.written = 0
        self.failed = False
        self._timer: TimerHandle | None = None
        self._clock = _Clock()

    def add(self, entry: Entry) -> None:
        pending = self.pending
        pending.append(entry)
        n = len(pending)
        if n == 1:
            self._timer = self.loop.call_later(FLUSH_INTERVAL, self.flush)
        elif n >= FLUSH_LINES:
            self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending = self.pending
        if not pending:
            return
        self.pending = []
        if self.failed:
            return
        clock = self._clock
        lines = [format_entry(e, clock) for e in pending]
        try:
            if self.chunked:
                for chunk in _chunks(lines, PIPE_BUF):
                    self.stream.write(chunk)
                    self.stream.flush()
            else:
                self.stream.write("".join(lines).encode("ascii"))
                self.stream.flush()
        except (OSError, ValueError) as exc:
            # A full disk or a closed stdout must not take the proxy down: stop logging, say so once.
            self.failed = True
            log.error("access log disabled: cannot write it (%s)", exc)
            return
        self.written += len(pending)

    def reopen(self) -> bool:
        """Flush to the file open now, then open ``path`` again (after logrotate renamed the file).

        If the path cannot be opened, keep writing to the old file (nothing is lost) and say so.  A
        log disabled by a failed write (disk full) is enabled again: rotating is how one recovers.
        True when a new file is open.
        """
        self.flush()
        if self.path is None:
            return False
        try:
            stream = open(self.path, "ab")  # noqa: SIM115 - closed by close() or the next reopen()
        except OSError as exc:
            log.error("access log %s not reopened (%s); still writing to the file open before", self.path, exc)
            return False
        old, self.stream = self.stream, stream
        self.chunked = _chunked(stream)
        if self.failed:
            self.failed = False
            log.warning("access log %s reopened: logging again", self.path)
        try:
            old.close()
        except OSError as exc:  # a close that fails can only lose what flush() could not write either
            log.error("closing the previous access log failed: %s", exc)
        return True

    def close(self) -> None:
        self.flush()
        self.path = None  # a SIGHUP during the rest of the shutdown reopens nothing
        if self.owned:
            self.stream.close()


def _chunked(stream: IO[bytes]) -> bool:
    """Pieces of at most PIPE_BUF bytes unless ``stream`` is a regular file."""
    try:
        # Regular files are opened O_APPEND: one write() of whole lines is atomic there.
        return not stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError):
        return True


def _chunks(lines: list[str], limit: int) -> list[bytes]:
    """Whole lines grouped into pieces of at most ``limit`` bytes (a longer line stands alone)."""
    out: list[bytes] = []
    group: list[str] = []
    size = 0
    for line in lines:
        n = len(line)  # ASCII: characters are bytes
        if size + n > limit and group:
            out.append("".join(group).encode("ascii"))
            group, size = [], 0
        group.append(line)
        size += n
    if group:
        out.append("".join(group).encode("ascii"))
    return out


def open_access_log(spec: str, loop: AbstractEventLoop) -> AccessLog | None:
    """``off`` -> None; ``-`` -> stdout; anything else is a file path, opened for appending."""
    if spec == OFF:
        return None
    if spec == STDOUT:
        return AccessLog(sys.stdout.buffer, loop, owned=False)
    return AccessLog(open(spec, "ab"), loop, owned=True, path=spec)  # noqa: SIM115 - closed by AccessLog.close
