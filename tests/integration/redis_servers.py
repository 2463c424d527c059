"""Redis set-ups the topology tests start for themselves, on loopback ports in a temporary directory:
a 3-master Redis Cluster, a Sentinel set (master, replica, 3 sentinels), a TLS server with ACL users.

Each waits for readiness with a deadline (never a fixed sleep) and stops exactly the processes it
started.  Setup and inspection use redis-py (synchronous), never the code under test.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import trustme

from tests.helpers import require_service
from tests.integration.harness import free_port

REDIS_SERVER = "/usr/bin/redis-server"
REDIS_CLI = "/usr/bin/redis-cli"
QUIET = ("--save", "", "--appendonly", "no", "--bind", "127.0.0.1", "--loglevel", "warning")


def require_binaries() -> None:
    for path in (REDIS_SERVER, REDIS_CLI):
        require_service(Path(path).name, shutil.which(path) is not None, f"{path} (apt-get install redis-server)")


def wait_for(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what} (last error: {last!r})")


class Server:
    """One redis-server (or redis-sentinel) process."""

    def __init__(self, workdir: Path, args: list[str], port: int, client: dict[str, Any] | None = None) -> None:
        self.port = port
        self.workdir = workdir
        self.args = args
        self.client_kwargs = {"host": "127.0.0.1", "port": port, "socket_timeout": 2, **(client or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [REDIS_SERVER, *self.args], cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(lambda: self.client().ping(), f"redis on port {self.port}")
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(**self.client_kwargs)

    def kill(self) -> None:
        """SIGKILL: a crash, no goodbye to clients or replicas."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


class RedisCluster:
    """Three masters, no replicas: ``redis-cli --cluster create`` spreads the 16384 slots over them."""

    def __init__(self, workdir: Path, masters: int = 3, password: str = "") -> None:
        self.password = password
        self.servers = []
        auth = ["--requirepass", password, "--masterauth", password] if password else []
        for i in range(masters):
            port = free_port()
            args = [
                "--port",
                str(port),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-node-timeout",
                "2000",
                "--cluster-port",  # the bus port: not port + 10000, which may be taken
                str(free_port()),
                *auth,
                *QUIET,
            ]
            self.servers.append(Server(workdir / f"node{i}", args, port, {"password": password or None}))

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis+cluster://{auth}" + ",".join(f"127.0.0.1:{s.port}" for s in self.servers[:2])

    def start(self) -> RedisCluster:
        for s in self.servers:
            s.start()
        subprocess.run(
            [REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{s.port}" for s in self.servers)]
            + ["--cluster-replicas", "0", "--cluster-yes"],
            env={**os.environ, "REDISCLI_AUTH": self.password},  # not on the command line
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
        for s in self.servers:
            wait_for(lambda s=s: s.client().execute_command("CLUSTER INFO")["cluster_state"] == "ok", "cluster ok")
        return self

    def owner(self, slot: int) -> Server:
        for s in self.servers:
            for start, end, *_ in s.client().execute_command("CLUSTER SLOTS"):
                if start <= slot <= end and _[0][1] == s.port:
                    return s
        raise AssertionError(f"no owner of slot {slot}")

    def node_id(self, server: Server) -> str:
        return server.client().execute_command("CLUSTER MYID").decode()

    def migrate_slot(self, slot: int, source: Server, target: Server, *, finalize: bool = True) -> None:
        """Move a slot and its keys as ``redis-cli --cluster reshard`` does.  ``finalize=False`` stops
        before the last step: the keys are on the target but the slot is still MIGRATING on the
        source and IMPORTING on the target (clients get ASK); :meth:`finalize` ends it."""
        src, dst = source.client(), target.client()
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", self.node_id(source))
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", self.node_id(target))
        while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
            auth = ["AUTH", self.password] if self.password else []
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, *auth, "KEYS", *keys)
        if finalize:
            self.finalize(slot, target)

    def finalize(self, slot: int, target: Server) -> None:
        for s in self.servers:
            s.client().execute_command("CLUSTER SETSLOT", slot, "NODE", self.node_id(target))

    def stop(self) -> None:
        for s in self.servers:
            s.stop()


class SentinelSet:
    """A master, one replica and three sentinels (quorum 2), passwords on the data nodes and on the
    sentinels.  ``down-after-milliseconds`` 400: a killed master is replaced in about two seconds."""

    MASTER = "tgmaster"

    def __init__(self, workdir: Path, password: str, sentinel_password: str) -> None:
        self.password = password
        self.sentinel_password = sentinel_password
        auth = {"password": password}
        mport, rport = free_port(), free_port()
        # no 5 s wait before the replica's first sync (Redis 7's diskless default)
        data = ["--requirepass", password, "--masterauth", password, "--repl-diskless-sync-delay", "0", *QUIET]
        self.master = Server(workdir / "master", ["--port", str(mport), *data], mport, auth)
        self.replica = Server(
            workdir / "replica", ["--port", str(rport), "--replicaof", "127.0.0.1", str(mport), *data], rport, auth
        )
        self.sentinels: list[Server] = []
        for i in range(3):
            port = free_port()
            conf = workdir / f"sentinel{i}" / "sentinel.conf"
            conf.parent.mkdir(parents=True, exist_ok=True)
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\n"
                f"requirepass {sentinel_password}\nsentinel sentinel-pass {sentinel_password}\n"
                f"sentinel monitor {self.MASTER} 127.0.0.1 {mport} 2\n"
                f"sentinel auth-pass {self.MASTER} {password}\n"
                f"sentinel down-after-milliseconds {self.MASTER} 400\n"
                f"sentinel failover-timeout {self.MASTER} 4000\n"
            )
            self.sentinels.append(Server(conf.parent, [str(conf), "--sentinel"], port, {"password": sentinel_password}))

    def url(self, fail_extra: str = "") -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://:{self.password}@{hosts}/{self.MASTER}?sentinel_password={self.sentinel_password}" + (
            f"&{fail_extra}" if fail_extra else ""
        )

    def start(self) -> SentinelSet:
        self.master.start()
        self.replica.start()
        wait_for(lambda: self.replica.client().info("replication")["master_link_status"] == "up", "replica in sync")
        for s in self.sentinels:
            s.start()
        for s in self.sentinels:  # every sentinel knows the replica and the other two: a failover can be elected
            wait_for(lambda s=s: self._ready(s), "sentinels ready")
        return self

    def _ready(self, sentinel: Server) -> bool:
        info = sentinel.client().sentinel_master(self.MASTER)
        return int(info["num-slaves"]) >= 1 and int(info["num-other-sentinels"]) >= 2

    def current_master_port(self) -> int:
        host, port = self.sentinels[0].client().sentinel_get_master_addr_by_name(self.MASTER)
        return int(port)

    def stop(self) -> None:
        for s in [*self.sentinels, self.replica, self.master]:
            s.stop()


class TlsRedis:
    """redis-server on a TLS port only, certificates from trustme, ACL users:

    * ``default`` with ``requirepass`` (password-only AUTH),
    * ``tollgate``: only what the limit store sends, only keys under ``tg:`` (docs/redis.md).
    ``require_client_cert``: ``--tls-auth-clients yes`` (else ``optional``)."""

    USER = "tollgate"

    def __init__(self, workdir: Path, password: str, user_password: str, require_client_cert: bool = False) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA()
        server_cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.client_cert = self.ca.issue_cert("tollgate-worker")
        self.ca_file = workdir / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        cert_file, key_file = workdir / "server.pem", workdir / "server.key"
        server_cert.cert_chain_pems[0].write_to_path(str(cert_file))
        server_cert.private_key_pem.write_to_path(str(key_file))
        self.client_cert_file, self.client_key_file = workdir / "client.pem", workdir / "client.key"
        self.client_cert.cert_chain_pems[0].write_to_path(str(self.client_cert_file))
        self.client_cert.private_key_pem.write_to_path(str(self.client_key_file))
        self.password = password
        self.user_password = user_password
        port = free_port()
        # reads and writes of its own keys (the script's commands run with the caller's ACL), nothing
        # dangerous (FLUSHALL, CONFIG, KEYS...), plus the store's own commands
        acl = (
            f"{self.USER} on >{user_password} ~tg:* resetchannels -@all +@read +@write -@dangerous"
            " +evalsha +script|load +ping +wait +role"
        )
        args = [
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--tls-cert-file",
            str(cert_file),
            "--tls-key-file",
            str(key_file),
            "--tls-ca-cert-file",
            str(self.ca_file),
            "--tls-auth-clients",
            "yes" if require_client_cert else "optional",
            "--requirepass",
            password,
            "--user",
            *acl.split(),
            *QUIET,
        ]
        client = {
            "password": password,
            "ssl": True,
            "ssl_ca_certs": str(self.ca_file),
            "ssl_certfile": str(self.client_cert_file),
            "ssl_keyfile": str(self.client_key_file),
        }
        self.server = Server(workdir, args, port, client)
        self.port = port

    def url(self, *, user: bool = True, client_cert: bool = False, host: str = "127.0.0.1") -> str:
        auth = f"{self.USER}:{self.user_password}" if user else f":{self.password}"
        query = f"ssl_ca_certs={self.ca_file}"
        if client_cert:
            query += f"&ssl_certfile={self.client_cert_file}&ssl_keyfile={self.client_key_file}"
        return f"rediss://{auth}@{host}:{self.port}/0?{query}"

    def start(self) -> TlsRedis:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
