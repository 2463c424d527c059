"""The proxy worker process: traffic listener, status listener, config sync.

:class:`Worker` owns the current :class:`CompiledConfig` (``worker.config``); applying a snapshot
compiles it off to the side and swaps the reference, so each request keeps the tables it
started with.  ``run_worker`` is the blocking entry point used by the CLI.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import uvloop

from data_plane import __version__, native
from data_plane.auth import AuthTables
from data_plane.compiler import CompiledConfig, compile_snapshot, retired_pools
from data_plane.health import Prober
from data_plane.heap import collector_paused, release_free_memory
from data_plane.http.env import ExchangeEnv
from data_plane.http.protocol import ClientConnection
from data_plane.http.realip import TrustedProxies, parse_trusted
from data_plane.http.shutdown import LISTEN_SETTLE, stop_handshakes
from data_plane.http.status import StatusConnection
from data_plane.http.upstream import ConnectionPool
from data_plane.incremental import apply_delta
from data_plane.limits.memory import MemoryStore
from data_plane.limits.seed import seed_from_control_plane
from data_plane.limits.shared import SharedStore
from data_plane.limits.stores import open_metering, open_store
from data_plane.observe.accesslog import open_access_log
from data_plane.observe.metrics import make_registry
from data_plane.observe.observer import Observer
from data_plane.policies import PolicyEnv
from data_plane.policies.cache import ResponseCache
from data_plane.policies.plugin_registry import PluginRegistry
from data_plane.settings import WorkerSettings
from data_plane.snapshot import Snapshot, SnapshotError
from data_plane.snapshot.delta import Delta, EntityStore, merge_deltas, parse_delta, with_key_table
from data_plane.sync import ConfigSync, journal_file, read_cache, read_journal
from data_plane.tls.server import TlsServer

log = logging.getLogger("tollgate.worker")

# How often idle upstream connections past their pool's keepalive_timeout are closed.  Correctness does
# not depend on it (get_idle never hands one out); it bounds how long an unused socket stays open.
IDLE_SWEEP_INTERVAL = 1.0
# SIGTERM, after the drain: one try at delivering the spooled usage (what is left stays spooled).  A
# pod's terminationGracePeriodSeconds must cover preStop + shutdown_timeout + LISTEN_SETTLE + this
# (deploy/kubernetes; tests/integration/test_kubernetes.py checks it).
USAGE_DELIVERY_AT_SHUTDOWN = 5.0


class Worker:
    def __init__(self, settings: WorkerSettings, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.loop = loop
        self.applied_at: float | None = None
        self.connections: set[ClientConnection] = set()
        self.sync: ConfigSync | None = None
        self.last_error: str | None = None
        # the config as entities by id (what deltas apply to); None until a snapshot is applied
        self.store: EntityStore | None = None
        # proxies whose X-Forwarded-For names the client (parsed once); None: the socket peer is the client
        trusted = parse_trusted(settings.trusted_proxies)
        self.trusted_proxies: TrustedProxies | None = TrustedProxies(trusted) if trusted else None
        self.prober = Prober(lambda: self.config)
        # key id -> last use (epoch s), written by the request path, shipped and emptied by the heartbeat
        self.keys_used: dict[str, int] = {}
        # request counters, latency, access log (data_plane/observe/observer.py); the log opens in start()
        self.observer = Observer()
        # usage plans: the counter store (memory or Redis) and the usage meter (None: nothing to meter into)
        self.limiter = open_store(settings)
        self.metering = open_metering(settings)
        # what exchanges use of the worker, kept current here: the config (swapped in apply) and draining
        https_port = settings.https_redirect_port or settings.tls_port or 443
        self.env = ExchangeEnv(
            loop, self.observer, self.limiter, self.metering, body_timeout=settings.body_timeout, https_port=https_port
        )
        # the certificates served on the TLS listener, by SNI (None: no TLS listener)
        self.tls: TlsServer | None = None
        if settings.tls_port:
            self.tls = TlsServer(settings.tls_cert_file, settings.tls_key_file)
        # What traffic policies compile against and what outlives a config swap (data_plane/policies):
        # the response cache is the worker's, bounded in bytes: kept across swaps, purged by cache_epoch;
        # the span exporter only with an OTLP endpoint (without one a tracing policy only propagates)
        # (Any: an OtlpTracer, whose module imports OpenTelemetry only when the worker has an endpoint)
        cache = ResponseCache(settings.cache_bytes) if settings.cache_bytes > 0 else None
        self.tracer: Any = None
        if settings.otlp_endpoint:
            from data_plane.observe.otlp import make_tracer

            self.tracer = make_tracer(settings)
        self.policy_env = PolicyEnv(cache=cache, tracer=self.tracer)
        # the installed Python plugins (entry point group tollgate.plugins), listed once per process
        self.policy_env.plugins = PluginRegistry.discover()
        # pools of targets that left the config while requests were in flight on them: their
        # connections come back after the swap and are closed by the sweep
        self.retired_pools: list[ConnectionPool] = []
        self.frozen_after_full = 0  # gc.get_freeze_count() after the last full collection (settle_heap)
        self._sweeper: asyncio.TimerHandle | None = None
        # Lists, not Optional attributes: uvloop's Server is no asyncio.Server subclass, and mypyc
        # checks the type of a value stored in an attribute (list items it does not).
        self._listeners: list[asyncio.Server] = []  # traffic
        self._status_servers: list[asyncio.Server] = []

    # ------------------------------------------------------------------ config

    @property
    def config(self) -> CompiledConfig | None:
        """The config requests start with now (held by ``env``, where exchanges read it)."""
        return self.env.config

    @config.setter
    def config(self, value: CompiledConfig | None) -> None:
        self.env.config = value

    @property
    def draining(self) -> bool:
        """SIGTERM received: finish what is in flight, accept nothing new."""
        return self.env.draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self.env.draining = value

    def apply(self, snapshot: Snapshot, validated: bool = False) -> None:
        """Validate (unless ``validated``: parsed by ``Snapshot.from_json``, which validates; ~1 s at a
        million keys), compile and swap in a snapshot; raises SnapshotError/ValueError and keeps the old one."""
        if not validated:
            snapshot.validate()
        old = self.config
        # one packed key table, shared by the entity store (deltas change it) and the key lookup
        snapshot = with_key_table(snapshot)
        compiled = self._compile(snapshot)
        self.store = EntityStore.of(snapshot)
        self._swap(old, compiled, snapshot)

    def _apply_received(self, snapshot: Snapshot) -> None:
        """A snapshot from the control plane, parsed (and so validated) by ``Snapshot.from_json``."""
        self.apply(snapshot, validated=True)

    def apply_delta(self, delta: Delta) -> None:
        """Apply a delta to the running config (data_plane/incremental.py: work proportional to the
        change); raises SnapshotError/ValueError and keeps the old config, entities included."""
        store, old = self.store, self.config
        if store is None or old is None:
            raise SnapshotError("no config to apply a delta to")
        revision, hash_, version = store.revision, store.hash, store.schema_version
        done = store.apply(delta)
        try:
            compiled = apply_delta(store, old, done, self._compile)
        except BaseException:
            store.undo(done, revision, hash_, version)
            raise
        if store.settle():
            log.info("keys packed again (%d keys) after the changes of many deltas", len(store.keys))
        if compiled is old:
            self.applied_at = time.time()
            self.last_error = None
            log.info("applied delta to revision %s (%s; %d changes)", delta.revision, delta.hash[:12], len(done))
            return
        # a recompile that kept the key tables left the bulk of the heap (the keys) as it was
        self._swap(old, compiled, store.snapshot(with_keys=False), whole=compiled.auth is not old.auth)

    def _compile(
        self, snapshot: Snapshot, auth: AuthTables | None = None, keep_apis: frozenset[str] | None = None
    ) -> CompiledConfig:
        return compile_snapshot(
            snapshot,
            self.config,
            self.keys_used,
            cluster_token=self.settings.cluster_token,
            policy_env=self.policy_env,
            auth=auth,
            keep_apis=keep_apis,
        )

    def _swap(
        self, old: CompiledConfig | None, compiled: CompiledConfig, snapshot: Snapshot, whole: bool = True
    ) -> None:
        if self.tls is not None:
            self.tls.update(snapshot, self.settings.cluster_token)  # the new certificates, for new handshakes
        self.config = compiled  # the swap: one reference assignment
        cache = self.policy_env.cache
        if cache is not None:
            cache.retain({api.id: api.cache_epoch for api in snapshot.apis})  # purged or gone APIs: dropped
        self.applied_at = time.time()
        self.last_error = None
        if old is not None:
            for pool in retired_pools(old.pools, compiled.pools):
                pool.close_idle()
                if pool.count > 0:
                    self.retired_pools.append(pool)
        if not self.draining:
            self.prober.update(compiled)
        # A whole new config: one full collection (the old config's cycles). A delta's recompile: the
        # new objects only, unless the frozen heap grew by an eighth since the last full collection
        # (what a young collection cannot free is bounded by that; a full one costs ~0.7 s at 1M keys).
        # The process's first config: everything alive is frozen without a collection first (a
        # decoded and compiled config leaves no cyclic garbage to speak of, and what it may leave is
        # collected at the next whole swap, which unfreezes first): ~0.2 s less at a million keys.
        frozen = gc.get_freeze_count()
        first = old is None
        full = whole or frozen > self.frozen_after_full + self.frozen_after_full // 8
        pause = settle_first() if first else settle_heap() if full else settle_young()
        if full:
            self.frozen_after_full = gc.get_freeze_count()
        log.info(
            "applied config revision %s (%s; heap settled in %.1f ms, %s)",
            snapshot.revision,
            snapshot.hash[:12],
            pause * 1e3,
            "first config, frozen" if first else "full collection" if full else "new objects only",
        )

    def status(self) -> dict[str, Any]:
        cfg = self.config
        sync = self.sync
        return {
            "node_id": self.settings.node_id,
            "hostname": self.settings.hostname,
            "version": __version__,
            "request_path": native.mode(),  # "compiled" (mypyc) or "pure-python"
            "pid": os.getpid(),
            "revision": cfg.revision if cfg else None,
            "hash": cfg.hash if cfg else None,
            "applied_at": self.applied_at,
            "control_plane_connected": sync.connected if sync else None,
            "last_error": (sync.last_error if sync else None) or self.last_error,
            "targets": self.target_status(),
            "limiter": self.limiter_status(),
            "cache": self.policy_env.cache.status() if self.policy_env.cache is not None else None,
            "tracing": self.tracer.status() if self.tracer is not None else None,
        }

    def limiter_status(self) -> dict[str, Any]:
        store = self.limiter
        out: dict[str, Any] = {
            "store": type(store).__name__,
            "decisions": {"admitted": self.observer.admitted, **self.observer.limits},
            "available": getattr(store, "available", True),
            "fallback_checks": getattr(store, "fallback_checks", 0),
            "unavailable_checks": getattr(store, "unavailable_checks", 0),
        }
        describe = getattr(store, "status", None)
        if describe is not None:
            out["redis"] = describe()  # mode, servers, the URL with its secrets masked
        m = self.metering
        if m is not None:
            out["usage"] = {
                "pending_batches": len(m.spool.pending()),
                "delivered_batches": m.delivered_batches,
                "failed_sends": m.failed_sends,
                "rejected_batches": m.rejected_batches,
                "unsent_counts": sum(m.counts.values()),
            }
        return out

    def target_status(self) -> dict[str, dict[str, Any]]:
        """Each target's health as this worker sees it, by target id (ids are unique across upstreams)."""
        cfg = self.config
        if cfg is None:
            return {}
        wall_offset = time.time() - time.monotonic()
        return {t.id: t.state.snapshot(wall_offset) for u in cfg.upstreams.values() for t in u.targets}

    # ------------------------------------------------------------------ lifecycle

    def load_initial(self) -> None:
        with collector_paused():
            s = self.settings
            if s.snapshot_file is not None:
                self.apply(Snapshot.from_json(s.snapshot_file.read_bytes()), validated=True)
            else:
                self._load_cache()

    def _load_cache(self) -> None:
        s = self.settings
        cached = read_cache(s.cache_file)
        if cached is not None:
            try:
                self._restore(cached, journal_file(s.cache_file))
                log.info(
                    "serving cached config revision %s until the control plane answers",
                    self.store and self.store.revision,
                )
            except Exception as exc:
                # Not only SnapshotError/ValueError: whatever compiling a cached snapshot raises, the
                # worker starts without it and waits for the control plane (with a traceback when
                # the failure is not a validation error: that one is a bug worth seeing).
                log.error(
                    "cached snapshot %s cannot be applied (%s: %s); ignoring it",
                    s.cache_file,
                    type(exc).__name__,
                    exc,
                    exc_info=not isinstance(exc, ValueError),  # SnapshotError is a ValueError
                )

    def _holding(self) -> EntityStore | None:
        return self.store

    def _restore(self, cached: Snapshot, journal: Path) -> None:
        """Start from the cache: the cached snapshot (read_cache: packed, or parsed by
        ``Snapshot.from_json``, so validated) with the deltas received after it (data_plane/sync.py
        journal), up to the first that does not apply (a line cut by a crash), compiled once, not once
        per delta (ten route changes cost a restart at 10,000 routes 0.6 s of compiling)."""
        snapshot = with_key_table(cached)
        store = EntityStore.of(snapshot)
        bodies = read_journal(journal)
        replayed = 0
        merged, count = merge_deltas(bodies)
        try:
            if merged is not None:
                store.apply(parse_delta(merged))  # all or nothing, validated: as one delta
                replayed = count
        except (SnapshotError, ValueError):
            pass  # then one by one, which finds the line that does not apply
        if replayed < len(bodies):
            for n, body in enumerate(bodies[replayed:], start=replayed):
                try:
                    store.apply(parse_delta(body))
                except (SnapshotError, ValueError) as exc:
                    log.warning("delta journal %s line %d not applied (%s); continuing from there", journal, n + 1, exc)
                    break
                replayed += 1
        if replayed:
            store.settle()
            snapshot = store.snapshot()
            log.info("%d deltas of the journal %s replayed onto the cached config", replayed, journal.name)
        try:
            compiled = self._compile(snapshot)
        except (SnapshotError, ValueError) as exc:
            if not replayed:
                raise
            # what the journal led to does not compile (the worker refused it when it came too, and
            # kept its config): the cached snapshot, then the deltas one by one while they apply
            log.warning("cached config with its journal does not compile (%s); replaying delta by delta", exc)
            self._replay_each(journal)
            return
        self.store = store
        self._swap(self.config, compiled, snapshot)

    def _replay_each(self, journal: Path) -> None:
        cached = read_cache(self.settings.cache_file)  # again: the store above changed its keys
        if cached is None:
            raise SnapshotError("the cache could not be read again")
        self.apply(cached, validated=True)
        for n, body in enumerate(read_journal(journal)):
            try:
                self.apply_delta(parse_delta(body))
            except (SnapshotError, ValueError) as exc:
                log.warning("delta journal %s line %d not applied (%s); continuing from there", journal, n + 1, exc)
                return

    def sweep_idle(self) -> None:
        """Every IDLE_SWEEP_INTERVAL: close the upstream connections idle past their pool's
        keepalive_timeout, and the idle ones of retired pools (one timer per worker, not per connection)."""
        cfg = self.config
        if cfg is not None:
            for pool in cfg.pools.values():
                pool.expire_idle()
        if self.retired_pools:
            for pool in self.retired_pools:
                pool.close_idle()
            self.retired_pools = [p for p in self.retired_pools if p.count > 0]
        if not self.draining:
            self._sweeper = self.loop.call_later(IDLE_SWEEP_INTERVAL, self.sweep_idle)

    async def start(self) -> None:
        s = self.settings
        self.observer.access = open_access_log(s.access_log, self.loop)
        self.load_initial()
        await self.seed_limits()
        self._sweeper = self.loop.call_later(IDLE_SWEEP_INTERVAL, self.sweep_idle)
        listener = await self.loop.create_server(
            lambda: ClientConnection(self), s.host, s.port, reuse_port=s.reuse_port, backlog=2048
        )
        self._listeners.append(listener)
        tls = self.tls
        if tls is not None:
            if not tls.has_certificates:
                log.warning(
                    "TLS port %s has no certificate yet: handshakes fail until the config brings one", s.tls_port
                )
            secure = await self.loop.create_server(
                lambda: ClientConnection(self, True),
                s.tls_host or s.host,
                s.tls_port,
                ssl=tls.base,
                ssl_handshake_timeout=s.header_timeout,
                reuse_port=s.reuse_port,
                backlog=2048,
            )
            self._listeners.append(secure)
        if s.status_port:
            registry = make_registry(self)
            status = await self.loop.create_server(
                lambda: StatusConnection(self, registry), s.status_host, s.status_port, reuse_port=s.reuse_port
            )
            self._status_servers.append(status)
        if self.metering is not None:
            self.metering.start()
        watch = getattr(self.limiter, "start_collector_watch", None)
        if watch is not None and s.control_plane_url and s.snapshot_file is None:
            watch()  # the Redis store: count usage in its script while a control plane collects it
        if self.tracer is not None:
            self.tracer.start()
        if s.control_plane_url and s.snapshot_file is None:
            self.sync = ConfigSync(
                s,
                self._apply_received,
                self.status,
                self.keys_used,
                apply_delta=self.apply_delta,
                holding=self._holding,
            )
            if self.config is not None:
                self.sync.known_hash = self.config.hash
        log.info(
            "worker %s listening on %s:%s%s (status %s:%s; request path %s)",
            s.node_id,
            s.host,
            s.port,
            f", https {s.tls_host or s.host}:{s.tls_port}" if s.tls_port else "",
            s.status_host,
            s.status_port,
            native.mode(),
        )
        stale = native.stale()
        if stale:
            log.warning("compiled modules older than their source (run `make install`): %s", ", ".join(stale))

    async def seed_limits(self) -> None:
        """The in-process store starts its quota counters from the control plane's usage, before the
        worker listens (data_plane/limits/seed.py)."""
        s = self.settings
        if isinstance(self.limiter, (MemoryStore, SharedStore)) and s.control_plane_url and s.snapshot_file is None:
            await seed_from_control_plane(self.limiter, self.metering, s)

    def reopen_logs(self) -> None:
        """SIGHUP: flush the access log to the file open now and open its path again (logrotate)."""
        access = self.observer.access
        if access is not None and access.reopen():  # stdout: flushed, nothing to reopen
            log.info("SIGHUP: access log reopened")

    async def serve_forever(self, stop: asyncio.Event) -> None:
        sync_task = asyncio.ensure_future(self.sync.run()) if self.sync is not None else None
        await stop.wait()
        await self.drain()
        self.observer.close()  # flush the access log: every request answered during the drain is in it
        if self.tracer is not None:  # export the spans of the drain too (bounded wait, off the loop)
            await self.loop.run_in_executor(None, self.tracer.close)
        if sync_task is not None:
            sync_task.cancel()
        await self.close_limits()

    async def close_limits(self) -> None:
        """Spool the last counts and try one delivery (bounded: a dead control plane must not hold
        the shutdown; what is not delivered stays spooled for the next start), then close the store."""
        if self.metering is not None:
            try:
                await asyncio.wait_for(self.metering.close(deliver=True), timeout=USAGE_DELIVERY_AT_SHUTDOWN)
            except TimeoutError:
                log.warning("usage delivery at shutdown timed out; batches stay spooled")
        await self.limiter.close()

    async def drain(self) -> None:
        """Graceful shutdown (docs/architecture.md, "Graceful shutdown"): stop accepting, answer every
        request already begun (the last response on a connection says ``connection: close``), keep
        idle connections open for ``shutdown_idle_grace`` in case a request is on its way, then
        close them with a FIN (never a reset); after ``shutdown_timeout`` close what is left.

        The listener first stops answering handshakes (:func:`stop_handshakes`) and is closed
        :data:`LISTEN_SETTLE` seconds later, once the handshakes the kernel had already answered
        were accepted: closing it at once would reset those clients, for whom the connection was open.
        """
        self.draining = True
        self.prober.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
        loop = self.loop
        s = self.settings
        deadline = loop.time() + s.shutdown_timeout
        for server in self._status_servers:
            server.close()
        held = bool(self._listeners) and all([stop_handshakes(server) for server in self._listeners])
        idle_until = loop.time() + s.shutdown_idle_grace
        for conn in list(self.connections):
            conn.drain(idle_until)  # connections accepted from here on get the grace in connection_made
        log.info("draining %d connection(s)", len(self.connections))
        if held:
            await asyncio.sleep(LISTEN_SETTLE)
        for server in self._listeners:
            server.close()
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.close()


def settle_heap() -> float:
    """Take what is alive now out of the cyclic garbage collector's way; returns the seconds it took.

    Everything alive after a config swap (modules, the compiled config, pools) stays until the next
    swap, yet every full collection would walk it: with short-lived connections (a new one per
    request) full collections ran about twice a second and paused the loop up to 16 ms each (p99
    10 ms vs nginx 2.4 ms in bench case h).  ``gc.freeze`` moves it to the permanent generation,
    which collections skip.  First ``unfreeze`` + ``collect``: the previous config may hold cycles,
    and frozen objects would never be collected.  One full collection per config change instead.
    """
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    release_free_memory()
    return time.perf_counter() - started


def settle_first() -> float:
    """The first config of the process: what is alive frozen (:func:`settle_heap` without its
    collection); returns the seconds it took."""
    started = time.perf_counter()
    gc.freeze()
    release_free_memory()
    return time.perf_counter() - started


def settle_young() -> float:
    """After a delta's recompile: collect what is not frozen (the objects made since the last swap),
    freeze what survives; the frozen heap (a million keys) is not walked.  Returns the seconds it took."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    return time.perf_counter() - started


def run_worker(settings: WorkerSettings) -> None:
    """Run one worker process until SIGINT/SIGTERM; SIGHUP reopens the access log."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        worker = Worker(settings, loop)
        await worker.start()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # SIGHUP's default action would end the process without draining; until this line the CLI
        # ignores it (tollgate/cli.py), so a logrotate during start-up loses nothing either.
        loop.add_signal_handler(signal.SIGHUP, worker.reopen_logs)
        await worker.serve_forever(stop)

    uvloop.run(main())
