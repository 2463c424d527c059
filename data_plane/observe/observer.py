"""What the request path reports when a request ends: counters, latency and the access-log line.

The exchange calls :meth:`Observer.done` once per request (``Exchange._finish`` and the few
endings that bypass it: truncated response, client gone, protocol upgrade), the client connection
calls :meth:`Observer.rejected` for a request it refused before an exchange existed (malformed
HTTP), and the limiter step calls :meth:`Observer.limited` with the refusing limit's name::

    self.env.observer.limited(decision.limit)  # "throttle" | "quota" | "unavailable"

Everything here is plain attribute and list work; see :mod:`data_plane.observe.stats` for why.
"""

from __future__ import annotations

from time import perf_counter, time
from typing import TYPE_CHECKING

from data_plane.limits.policy import QUOTA, THROTTLE, UNAVAILABLE
from data_plane.observe.accesslog import AccessLog
from data_plane.observe.stats import unrouted_stats

if TYPE_CHECKING:
    from data_plane.http.exchange import Exchange

LIMIT_REASONS = (THROTTLE, QUOTA, UNAVAILABLE)


class Observer:
    __slots__ = ("unrouted", "limits", "admitted", "access")

    def __init__(self, access: AccessLog | None = None) -> None:
        self.unrouted = unrouted_stats()
        self.limits = dict.fromkeys(LIMIT_REASONS, 0)  # rate-limit refusals by reason
        self.admitted = 0  # requests the usage-plan limiter let through
        self.access = access

    def done(self, ex: Exchange) -> None:
        """One request answered (or given up on): ``ex.status`` is what the client got."""
        elapsed = perf_counter() - ex.started
        status = ex.status
        route = ex.route
        stats = self.unrouted if route is None else route.stats
        stats.record(status, elapsed)
        trace = ex.trace
        if trace is not None and trace.rec is not None:
            trace.rec.finish(ex, elapsed)  # the server span ends here (data_plane/observe/tracing.py)
        access = self.access
        if access is not None:
            target = ex.picked
            error = ex.error
            # gateway errors: the prebuilt response's body; proxied ones: body bytes streamed
            sent = len(error) - error.find(b"\r\n\r\n") - 4 if error is not None else ex.bytes_out
            access.add(
                (
                    time(),
                    ex.request_id,
                    stats.log_labels,
                    ex.customer_id,
                    ex.method,
                    ex.url,
                    status,
                    target.label if target is not None else "",
                    elapsed,
                    ex.body_bytes,
                    sent,
                    ex.client_ip,
                    ex.client.peer_ip,
                    trace.trace_id if trace is not None else b"",
                )
            )

    def rejected(self, status: int, request_id: bytes, peer_ip: bytes) -> None:
        """A request refused while parsing (400/414/431): no route, no exchange, no timing."""
        stats = self.unrouted
        stats.record(status, 0.0)
        if self.access is not None:
            entry = (time(), request_id, stats.log_labels, b"", "", b"", status, "", 0.0, 0, 0, peer_ip, peer_ip, b"")
            self.access.add(entry)  # no headers parsed that could name another client: the peer

    def limited(self, reason: str) -> None:
        """A request refused by the usage-plan limiter; ``reason`` is ``Decision.limit``."""
        self.limits[reason] = self.limits.get(reason, 0) + 1

    def close(self) -> None:
        if self.access is not None:
            self.access.close()
