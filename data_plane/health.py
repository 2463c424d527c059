"""Target health: runtime state per target, the active and passive state machines, the prober.

:class:`TargetState` lives as long as the target does in a worker: it is keyed by
``(upstream id, host, port)`` and carried across snapshot swaps like the connection pools, so a
config change keeps in-flight counts, probe history and ejections.

* **Active** (``Upstream.health_check``): every worker probes every target of the upstream each
  ``interval``; ``unhealthy_threshold`` consecutive failed probes mark it down,
  ``healthy_threshold`` consecutive good ones bring it back.  Probes run in one asyncio task per
  upstream, never on the request path.
* **Passive** (``Upstream.passive``, outlier detection): ``consecutive_failures`` connection
  failures or responses with a status in ``statuses`` eject the target for
  ``base_ejection_time * n`` (n = how many times in a row it was ejected, capped at
  ``max_ejection_time``); at most ``max_ejection_percent`` of the upstream's targets are ejected at
  once.  Ejection ends lazily: the balancer asks :meth:`TargetState.check_available` only about a
  target that is currently unavailable, so there is no timer per ejection and no clock read on the
  healthy path.

The clock is injectable (``TargetState.clock``) so the state machines are unit-tested without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from data_plane.snapshot import HealthCheck, Passive

if TYPE_CHECKING:
    from data_plane.compiler import CompiledConfig, CompiledTarget

log = logging.getLogger("tollgate.health")

Clock = Callable[[], float]


class TargetState:
    __slots__ = (
        "clock",
        "in_flight",
        "available",
        "healthy",
        "probe_ok",
        "probe_failed",
        "failures",
        "ejected",
        "ejected_until",
        "ejections",
        "last_ejection_end",
    )

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.in_flight = 0
        self.available = True  # healthy and not ejected: the one flag the balancers read
        self.healthy = True  # active checks' verdict
        self.probe_ok = 0
        self.probe_failed = 0
        self.failures = 0  # consecutive passive failures
        self.ejected = False
        self.ejected_until = 0.0
        self.ejections = 0
        self.last_ejection_end = 0.0

    def check_available(self) -> bool:
        """Slow path for an unavailable target: end an ejection whose time is up."""
        if self.ejected and self.clock() >= self.ejected_until:
            self.ejected = False
            self.failures = 0
            self.available = self.healthy
        return self.available

    # ------------------------------------------------------------------ active

    def probe_result(self, ok: bool, check: HealthCheck) -> bool:
        """Record one probe; returns True when the healthy verdict changed."""
        if ok:
            self.probe_failed = 0
            self.probe_ok += 1
            if not self.healthy and self.probe_ok >= check.healthy_threshold:
                self._set_healthy(True)
                return True
        else:
            self.probe_ok = 0
            self.probe_failed += 1
            if self.healthy and self.probe_failed >= check.unhealthy_threshold:
                self._set_healthy(False)
                return True
        return False

    def _set_healthy(self, healthy: bool) -> None:
        self.healthy = healthy
        self.available = healthy and not self.ejected

    def reset_active(self) -> None:
        """The upstream no longer has active checks: forget their verdict."""
        self.probe_ok = self.probe_failed = 0
        self._set_healthy(True)

    # ------------------------------------------------------------------ passive

    def report_failure(self, passive: Passive, peers: Sequence[TargetState]) -> bool:
        """A connection failure or a failing status from real traffic; returns True if this ejected it."""
        self.failures += 1
        if self.ejected or self.failures < passive.consecutive_failures:
            return False
        now = self.clock()
        ejected_now = sum(1 for p in peers if p.ejected and now < p.ejected_until)
        if (ejected_now + 1) * 100 > passive.max_ejection_percent * len(peers):
            return False  # ejecting it would leave too few targets: keep it, as Envoy does
        if now - self.last_ejection_end > passive.max_ejection_time:
            self.ejections = 0  # it behaved for a long time: start again from the base time
        self.ejections += 1
        duration = min(passive.base_ejection_time * self.ejections, passive.max_ejection_time)
        self.ejected = True
        self.ejected_until = now + duration
        self.last_ejection_end = self.ejected_until
        self.available = False
        self.failures = 0
        return True

    def snapshot(self, wall_offset: float) -> dict[str, Any]:
        ejected = self.ejected and self.clock() < self.ejected_until
        return {
            "healthy": self.healthy and not ejected,
            "active_healthy": self.healthy,
            "ejected_until": round(self.ejected_until + wall_offset, 3) if ejected else None,
            "in_flight": self.in_flight,
        }


def probe_ok(status: int, check: HealthCheck) -> bool:
    if check.expected_statuses:
        return status in check.expected_statuses
    return 200 <= status < 400


async def probe(
    host: str,
    port: int,
    check: HealthCheck,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> bool:
    """One HTTP probe on a fresh connection (so it says nothing about pooled ones); over TLS with the
    target pool's context and server name for an https target (a certificate that does not verify
    fails the probe, as a refused connection does)."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    request = (
        f"{check.method} {check.path} HTTP/1.1\r\nhost: {authority}\r\nuser-agent: tollgate-health\r\n"
        "connection: close\r\n\r\n"
    ).encode()
    writer = None
    try:
        async with asyncio.timeout(check.timeout):
            if tls is None:
                reader, writer = await asyncio.open_connection(host, port)
            else:
                reader, writer = await asyncio.open_connection(host, port, ssl=tls, server_hostname=server_hostname)
            writer.write(request)
            line = await reader.readline()
        parts = line.split(None, 2)
        return len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and probe_ok(int(parts[1]), check)
    except (OSError, TimeoutError, ValueError):
        return False
    finally:
        if writer is not None:
            writer.close()


class Prober:
    """One probing task per upstream that has a health check, following config swaps."""

    def __init__(self, config: Callable[[], CompiledConfig | None]) -> None:
        self._config = config
        self._tasks: dict[str, tuple[HealthCheck, asyncio.Task[None]]] = {}

    def update(self, config: CompiledConfig) -> None:
        wanted = {uid: u.health_check for uid, u in config.upstreams.items() if u.health_check is not None}
        for uid, (check, task) in list(self._tasks.items()):
            if wanted.get(uid) != check:
                task.cancel()
                del self._tasks[uid]
        for uid, check in wanted.items():
            if uid not in self._tasks:
                self._tasks[uid] = (check, asyncio.ensure_future(self._run(uid, check)))

    def stop(self) -> None:
        for _, task in self._tasks.values():
            task.cancel()
        self._tasks.clear()

    async def _run(self, upstream_id: str, check: HealthCheck) -> None:
        while True:
            config = self._config()
            upstream = config.upstreams.get(upstream_id) if config is not None else None
            if upstream is None:
                return
            targets: list[CompiledTarget] = list(upstream.targets)
            results = await asyncio.gather(
                *(probe(t.host, t.port, check, t.pool.ssl, t.pool.server_hostname) for t in targets)
            )
            for target, ok in zip(targets, results, strict=True):
                if target.state.probe_result(ok, check):
                    log.warning(
                        "upstream %s target %s is now %s (active check)",
                        upstream.name,
                        target.label,
                        "healthy" if ok else "unhealthy",
                    )
            await asyncio.sleep(check.interval)
