"""Which Redis server runs each of the limit store's script calls: one server, Sentinel's master, a Cluster.

The store (``limits/redis.py``) hands a topology one batch at a time, ``run(keys, commands)``: the
encoded ``EVALSHA`` calls and, for each, its first key (both of a call's keys share the customer's
``{customer}`` hash tag, so they are in one slot).  The answer is one reply per command, in order.
Discovery and topology come from redis-py (its Sentinel client, its cluster ``NodesManager``: seed
nodes, ``CLUSTER SLOTS``, announced-address quirks); the calls themselves travel over the lean
pipelined connection of ``limits/resp.py``, one per server, because redis-py's per-command Python
work costs more than the round trip (bench/limiter.py measures both, docs/redis.md has the figures).

Shared by every topology (:func:`run_on`, one batch on one server):

* ``NOSCRIPT`` (a restarted or flushed server, a node the store never used): ``SCRIPT LOAD`` on
  *that* server and re-send just those calls.
* ``READONLY`` (the server became a replica: a failover, a DNS name that moved): the connection is
  closed and :class:`RespConnectionError` raised, so the store fails open or closed as configured
  and its reconnect loop asks for the master again (:meth:`Topology.connect`).
* ``wait_replicas`` > 0: the batch ends with ``WAIT n timeout``, so the decisions are answered only
  once a replica has the counts (or the timeout passed: ``unacked_batches`` counts those); without
  it a failover loses the writes of the last moments before the master died.

Cluster specifics (:class:`ClusterTopology`): the slot -> primary table is rebuilt from redis-py's
slot map at connect and after a ``MOVED`` (the one moved slot is fixed at once from the reply); a
batch is split by server and the parts sent concurrently; ``MOVED`` re-sends the call to the new
owner, ``ASK`` sends ``ASKING`` + the call to the importing node (a slot being migrated),
``TRYAGAIN`` (the customer's two keys split by a migration in progress) waits 20 ms and re-sends;
after :data:`MAX_REDIRECTS` rounds the last error reply stands (the store degrades that group).
A slot no primary serves (failover in progress) answers ``CLUSTERDOWN`` for its calls only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from ssl import SSLContext
from typing import Any

from redis.crc import key_slot
from redis.exceptions import RedisError

from data_plane.errors import RespConnectionError, RespError, UnexpectedReply
from data_plane.limits.redisurl import CLUSTER, SENTINEL, RedisTarget
from data_plane.limits.resp import RespConnection, encode

log = logging.getLogger("tollgate.limits")

SLOTS = 16384
MAX_REDIRECTS = 5
MAX_CACHED_SLOTS = 100_000  # key -> slot, as the store caches key names (customers at most)
REFRESH_INTERVAL = 1.0  # at most one background slot-map refresh per second (MOVED storms)
_ASKING = encode(b"ASKING")
_PING = encode(b"PING")
_ROLE = encode(b"ROLE")


class Node:
    """One Redis server and the store's one pipelined connection to it (opened on first use)."""

    __slots__ = ("host", "port", "name", "conn")

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.name = f"{host}:{port}"
        self.conn: RespConnection | None = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Topology:
    """Base: the connection settings and the per-server batch runner.  Subclasses route."""

    def __init__(self, target: RedisTarget, script_load: bytes) -> None:
        self.mode = target.mode
        self.target = target
        self.script_load = script_load
        self.ssl: SSLContext | None = target.tls.context() if target.tls is not None else None
        self.db = target.db
        self.timeout = target.timeout
        self.wait: bytes | None = (
            encode(b"WAIT", target.wait_replicas, target.wait_timeout_ms) if target.wait_replicas else None
        )
        self.unacked_batches = 0  # WAIT answered fewer replicas than asked for

    async def connection(self, node: Node) -> RespConnection:
        conn = node.conn
        if conn is None or conn.closed:
            t = self.target
            conn = node.conn = await RespConnection.open(
                node.host,
                node.port,
                timeout=self.timeout,
                db=self.db,
                username=t.username,
                password=t.password,
                ssl=self.ssl,
            )
        return conn

    def frame(self, commands: list[bytes], asking: bool) -> list[bytes]:
        """What goes on the wire for a batch: ASKING before each call if asked to, WAIT at the end."""
        if asking:
            commands = [part for c in commands for part in (_ASKING, c)]
        if self.wait is not None:
            commands = [*commands, self.wait]
        return commands

    async def settle(
        self, node: Node, conn: RespConnection, replies: list[Any], commands: list[bytes], asking: bool, load: bool
    ) -> list[Any]:
        """A batch's replies, one per command: WAIT's and ASKING's taken out, READONLY raised, calls
        that met NOSCRIPT re-sent once the script is loaded on this server."""
        if self.wait is not None:
            acked = replies.pop()
            if not isinstance(acked, int) or acked < self.target.wait_replicas:
                self.unacked_batches += 1
        if asking:
            replies = replies[1::2]
        missing: list[int] = []
        for i, reply in enumerate(replies):
            if isinstance(reply, RespError):
                text = str(reply)
                if text.startswith("READONLY"):
                    node.close()
                    raise RespConnectionError(f"{node.name} is no longer the master (READONLY)")
                if text.startswith("NOSCRIPT"):
                    missing.append(i)
        if missing and load:
            [loaded] = await conn.execute([self.script_load], timeout=self.timeout)
            if isinstance(loaded, RespError):
                raise UnexpectedReply(f"SCRIPT LOAD on {node.name} failed: {loaded}")
            again = await self.run_on(node, [commands[i] for i in missing], asking, load=False)
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    async def run_on(self, node: Node, commands: list[bytes], asking: bool = False, load: bool = True) -> list[Any]:
        """One batch on one server (see :meth:`settle`)."""
        conn = await self.connection(node)
        replies = await conn.execute(self.frame(commands, asking), timeout=self.timeout)
        return await self.settle(node, conn, replies, commands, asking, load)

    async def run(self, keys: Sequence[str], commands: list[bytes]) -> list[Any]:
        raise NotImplementedError

    async def masters(self) -> list[Node]:
        """Every server that holds keys (to SCAN them all: the control plane's usage collector)."""
        raise NotImplementedError

    async def connect(self) -> None:
        """(Re)discover the server(s) and round-trip to each; raises RespConnectionError / OSError."""
        raise NotImplementedError

    def reset(self) -> None:
        """Drop every connection (after an outage: the next use reconnects)."""
        raise NotImplementedError

    def status(self) -> dict[str, Any]:
        return {"mode": self.mode, "url": self.target.masked, "tls": self.ssl is not None}

    async def close(self) -> None:
        self.reset()


async def _ping(topology: Topology, node: Node, command: bytes = _PING) -> Any:
    conn = await topology.connection(node)
    [reply] = await conn.execute([command], timeout=topology.timeout)
    if isinstance(reply, RespError):
        node.close()
        raise RespConnectionError(f"{node.name}: {reply}")
    return reply


class SingleTopology(Topology):
    """``redis://`` / ``rediss://``: one server (a managed service's primary endpoint is one, too)."""

    def __init__(self, target: RedisTarget, script_load: bytes) -> None:
        super().__init__(target, script_load)
        host, port = target.nodes[0]
        self.node = Node(host, port)

    async def run(self, keys: Sequence[str], commands: list[bytes]) -> list[Any]:
        return await self.run_on(self.node, commands)

    async def masters(self) -> list[Node]:
        return [self.node]

    async def connect(self) -> None:
        await _ping(self, self.node)

    def reset(self) -> None:
        self.node.close()

    def status(self) -> dict[str, Any]:
        return {**super().status(), "server": self.node.name}


class SentinelTopology(Topology):
    """``redis+sentinel://``: the master the sentinels name, asked for at first use and again after
    every outage (a lost connection or READONLY ends in the store's reconnect loop, which calls
    :meth:`connect`)."""

    def __init__(self, target: RedisTarget, script_load: bytes) -> None:
        super().__init__(target, script_load)
        self.node: Node | None = None
        self._sentinel: Any = None  # redis.asyncio.sentinel.Sentinel, made on first use
        self._lock = asyncio.Lock()
        self.discoveries = 0

    async def run(self, keys: Sequence[str], commands: list[bytes]) -> list[Any]:
        node = self.node
        if node is None:
            async with self._lock:  # the first batches of a worker: one discovery for all of them
                if self.node is None:
                    await self.connect()
            node = self.node
            assert node is not None
        return await self.run_on(node, commands)

    async def masters(self) -> list[Node]:
        if self.node is None:
            await self.connect()
        assert self.node is not None
        return [self.node]

    async def connect(self) -> None:
        from redis.asyncio.sentinel import Sentinel

        t = self.target
        if self._sentinel is None:
            self._sentinel = Sentinel(t.nodes, sentinel_kwargs=t.sentinel_redis_py())
        try:
            host, port = await self._sentinel.discover_master(t.master_name)
        except RedisError as exc:
            raise RespConnectionError(f"sentinels name no master {t.master_name!r}: {t.redact(str(exc))}") from None
        self.discoveries += 1
        node = self.node
        if node is None or (host, int(port)) != (node.host, node.port):
            level = logging.INFO if node is None else logging.WARNING  # a new master after a failover
            log.log(level, "rate limit store: the sentinels name %s:%s master %r", host, port, t.master_name)
            if node is not None:
                node.close()
            node = self.node = Node(host, int(port))
        # The sentinels' view can lag a failover by a moment: only a server that says so is the master.
        role = await _ping(self, node, _ROLE)
        if not (isinstance(role, list) and role and role[0] == b"master"):
            node.close()
            raise RespConnectionError(f"{node.name}, named master by the sentinels, is not (yet) one")

    def reset(self) -> None:
        if self.node is not None:
            self.node.close()

    def status(self) -> dict[str, Any]:
        return {
            **super().status(),
            "master_name": self.target.master_name,
            "master": self.node.name if self.node is not None else None,
            "sentinels": [f"{h}:{p}" for h, p in self.target.nodes],
            "discoveries": self.discoveries,
        }

    async def close(self) -> None:
        self.reset()
        if self._sentinel is not None:
            for client in self._sentinel.sentinels:
                await client.aclose()
            self._sentinel = None


class ClusterTopology(Topology):
    """``redis+cluster://``: calls routed by hash slot to each slot's primary (see the module docstring)."""

    def __init__(self, target: RedisTarget, script_load: bytes) -> None:
        super().__init__(target, script_load)
        self.db = 0
        self.nodes: dict[str, Node] = {}
        self.slots: list[Node | None] = [None] * SLOTS
        self._slot_of: dict[str, int] = {}
        self._cluster: Any = None  # redis.asyncio.cluster.RedisCluster: discovery only
        self._refresh_task: asyncio.Task[None] | None = None
        self._refreshed_at = 0.0
        self._lock = asyncio.Lock()
        self.refreshes = 0
        self.redirects = 0

    def slot(self, key: str) -> int:
        slot = self._slot_of.get(key)
        if slot is None:
            if len(self._slot_of) >= MAX_CACHED_SLOTS:
                self._slot_of.clear()
            slot = self._slot_of[key] = key_slot(key.encode())
        return slot

    def _node(self, host: str, port: int) -> Node:
        name = f"{host}:{port}"
        node = self.nodes.get(name)
        if node is None:
            node = self.nodes[name] = Node(host, port)
        return node

    async def refresh(self) -> None:
        """The slot table from redis-py's view of the cluster (CLUSTER SLOTS through its seed nodes)."""
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        t = self.target
        self._refreshed_at = time.monotonic()
        try:
            if self._cluster is None:
                # require_full_coverage=False: during a failover the other slots keep working
                cluster = RedisCluster(
                    startup_nodes=[ClusterNode(h, p) for h, p in t.nodes], require_full_coverage=False, **t.redis_py()
                )
                await cluster.initialize()
                self._cluster = cluster
            else:
                await self._cluster.nodes_manager.initialize()
        except RedisError as exc:
            raise RespConnectionError(f"cluster slot map unavailable: {t.redact(str(exc))}") from None
        slots_cache = self._cluster.nodes_manager.slots_cache
        table: list[Node | None] = [None] * SLOTS
        for slot in range(SLOTS):
            owners = slots_cache.get(slot)
            if owners:
                table[slot] = self._node(owners[0].host, owners[0].port)
        self.slots = table
        self.refreshes += 1
        used = {id(n) for n in table if n is not None}
        for name in [name for name, node in self.nodes.items() if id(node) not in used]:
            self.nodes.pop(name).close()

    def _refresh_soon(self) -> None:
        task = self._refresh_task
        if task is None or task.done():
            self._refresh_task = asyncio.get_running_loop().create_task(self._background_refresh())

    async def _background_refresh(self) -> None:
        # at most one refresh per REFRESH_INTERVAL however many MOVED arrive (a resharding moves many)
        await asyncio.sleep(max(0.0, self._refreshed_at + REFRESH_INTERVAL - time.monotonic()))
        try:
            await self.refresh()
        except (RespConnectionError, OSError, TimeoutError) as exc:
            log.warning("rate limit store: cluster slot map refresh failed: %s", self.target.redact(str(exc)))

    async def connect(self) -> None:
        await self.refresh()
        for node in list(self.nodes.values()):
            await _ping(self, node)

    def reset(self) -> None:
        for node in self.nodes.values():
            node.close()

    async def masters(self) -> list[Node]:
        if not self.refreshes:
            await self.connect()
        seen: dict[str, Node] = {}
        for node in self.slots:
            if node is not None:
                seen.setdefault(node.name, node)
        return list(seen.values())

    async def run(self, keys: Sequence[str], commands: list[bytes]) -> list[Any]:
        if not self.refreshes:
            async with self._lock:  # the first batches of a worker: one discovery for all of them
                if not self.refreshes:
                    await self.connect()
        results: list[Any] = [None] * len(commands)
        route: list[tuple[Node | None, bool]] = [(self.slots[self.slot(k)], False) for k in keys]
        todo = list(range(len(commands)))
        for _ in range(MAX_REDIRECTS):
            by_node: dict[str, tuple[Node, bool, list[int]]] = {}
            for i in todo:
                node, asking = route[i]
                if node is None:
                    results[i] = RespError("CLUSTERDOWN no primary serves this customer's slot")
                    continue
                part = by_node.get(node.name)
                if part is None:
                    by_node[node.name] = (node, asking, [i])
                elif part[1] == asking:
                    part[2].append(i)
                else:  # the same node asked both plainly and with ASKING: a part of its own
                    by_node[node.name + "/ask"] = (node, asking, [i])
            parts = list(by_node.values())
            if len(parts) == 1:
                node, asking, idx = parts[0]
                answers = [await self.run_on(node, [commands[i] for i in idx], asking)]
            else:
                answers = await self._run_parts(parts, commands)
            todo = []
            pause = False
            for (_, _, idx), replies in zip(parts, answers, strict=True):
                for i, reply in zip(idx, replies, strict=True):
                    results[i] = reply
                    if not isinstance(reply, RespError):
                        continue
                    text = str(reply)
                    if text.startswith(("MOVED ", "ASK ")):
                        kind, slot_text, address = text.split(" ", 2)
                        host, _, port = address.rpartition(":")
                        target = self._node(host or self.target.nodes[0][0], int(port))
                        self.redirects += 1
                        if kind == "MOVED":  # the slot has a new owner: fix it now, the rest soon
                            self.slots[int(slot_text)] = target
                            route[i] = (target, False)
                            self._refresh_soon()
                        else:  # being migrated: only this call goes to the importing node
                            route[i] = (target, True)
                        todo.append(i)
                    elif text.startswith("TRYAGAIN"):
                        todo.append(i)
                        pause = True
            if not todo:
                break
            if pause:
                await asyncio.sleep(0.02)
        return results

    async def _run_parts(self, parts: list[tuple[Node, bool, list[int]]], commands: list[bytes]) -> list[list[Any]]:
        """Several servers' parts of a batch: all written before any reply is awaited (one round trip
        in all, no task per part), under one timeout."""
        conns = [await self.connection(node) for node, _, _ in parts]
        batches = [[commands[i] for i in idx] for _, _, idx in parts]
        pending = [
            conn.send(self.frame(batch, part[1])) for conn, batch, part in zip(conns, batches, parts, strict=True)
        ]
        try:
            async with asyncio.timeout(self.timeout):
                raw = [await fut for fut in pending]
        except BaseException as exc:
            for conn, fut in zip(conns, pending, strict=True):
                if not fut.done():
                    conn.close()  # its replies would no longer match its batches
                elif not fut.cancelled():
                    fut.exception()  # retrieved: one failure is reported once, by the raise below
            if isinstance(exc, TimeoutError):
                raise RespConnectionError(f"Redis did not answer within {self.timeout}s") from None
            raise
        return [
            await self.settle(node, conn, replies, batch, asking, True)
            for (node, asking, _), conn, replies, batch in zip(parts, conns, raw, batches, strict=True)
        ]

    def status(self) -> dict[str, Any]:
        return {
            **super().status(),
            "nodes": sorted(self.nodes),
            "slots_served": sum(n is not None for n in self.slots),
            "refreshes": self.refreshes,
            "redirects": self.redirects,
        }

    async def close(self) -> None:
        task = self._refresh_task
        if task is not None and not task.done():
            task.cancel()
        self.reset()
        if self._cluster is not None:
            await self._cluster.aclose()
            self._cluster = None


def open_topology(target: RedisTarget, script_load: bytes) -> Topology:
    if target.mode == CLUSTER:
        return ClusterTopology(target, script_load)
    if target.mode == SENTINEL:
        return SentinelTopology(target, script_load)
    return SingleTopology(target, script_load)
