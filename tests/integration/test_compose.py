"""docker-compose.yml, tested without Docker: its services' commands run as local processes.

The file is parsed with PyYAML; ``${VAR:-default}`` and ``${VAR:?message}`` are interpolated as
compose does (a missing required variable is an error naming it, as ``docker compose`` refuses to
start).  Image-only
services (PostgreSQL, Redis) are this machine's own: ``postgres``/``redis`` map to 127.0.0.1, and
the control planes get a fresh PostgreSQL database.  Every port a service listens on (``--port``,
``--status-port`` in its command) is remapped to a free local port, and every ``http://SERVICE:PORT``
in commands, environments and the applied gateway.yaml is rewritten to match.  Services start in
dependency order, one-shots run to completion, long-running ones are waited on through their own
healthcheck URL; then traffic through each worker must reach both demo backends.

The file's deployment defaults are checked too: secrets have no defaults, the admin API and the
status ports are published on 127.0.0.1 only, and each worker's cache dir (snapshot cache and usage
spool) is a named volume of its own that the image's runtime user can write.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Iterator
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tests.helpers import port_open, require_service
from tests.integration.harness import ROOT, Cluster, Proc, free_port, wait_until

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
# ${NAME}, ${NAME:-default} / ${NAME-default}, ${NAME:?message} / ${NAME?message}
_VAR = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")
# What the operator must set (compose refuses to start without them): throw-away values for the tests.
SECRETS = ("TOLLGATE_CLUSTER_TOKEN", "TOLLGATE_ADMIN_TOKEN", "POSTGRES_PASSWORD")
_URL = re.compile(r"(https?|postgresql|redis)://([^/@\s'\"]+@)?([A-Za-z0-9_.-]+):(\d+)")
_HEALTH_URL = re.compile(r"https?://[^'\"\s]+")
INFRA_PORTS = {"postgres": 5432, "redis": 6379}
POSTGRES_URL = os.environ.get("TOLLGATE_TEST_POSTGRES_URL") or "postgresql+psycopg://postgres@127.0.0.1:5432/test"


class MissingVariables(Exception):
    """``${NAME:?message}`` with NAME unset or empty: ``docker compose`` stops with the message."""


def secrets() -> dict[str, str]:
    return {name: uuid.uuid4().hex for name in SECRETS}


def load_document(values: dict[str, str]) -> dict[str, Any]:
    missing: dict[str, str] = {}

    def interpolate(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2) or "", m.group(3) or ""
        value = values.get(name)
        unset = not value if op.startswith(":") else value is None  # ":" also treats empty as unset
        if unset and op.endswith("?"):
            missing[name] = arg
            return ""
        if unset and op.endswith("-"):
            return arg
        return value or ""

    doc: dict[str, Any] = yaml.safe_load(_VAR.sub(interpolate, COMPOSE.read_text()))
    if missing:
        raise MissingVariables(missing)
    return doc


def load_compose(values: dict[str, str]) -> dict[str, Any]:
    return load_document(values)["services"]  # type: ignore[no-any-return]


def depends(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (cond or {}).get("condition", "service_started") for name, cond in deps.items()}


def is_one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart") == "no"


def health_url(service: dict[str, Any]) -> str | None:
    check = service.get("healthcheck")
    if not check:
        return None
    m = _HEALTH_URL.search(" ".join(check["test"]))
    return m.group(0) if m else None


def test_dependency_graph_is_acyclic_and_matches_healthchecks() -> None:
    services = load_compose(secrets())
    order = list(
        TopologicalSorter({n: set(depends(s)) for n, s in services.items()}).static_order()
    )  # raises on a cycle
    assert set(order) == set(services)
    for name, service in services.items():
        for dep, condition in depends(service).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            target = services[dep]
            if condition == "service_healthy":
                assert target.get("healthcheck"), f"{name} waits for {dep} to be healthy, but {dep} has no healthcheck"
            elif condition == "service_completed_successfully":
                assert is_one_shot(target), f"{name} waits for {dep} to complete, but {dep} restarts"
            else:
                pytest.fail(f"{name} -> {dep}: use service_healthy or service_completed_successfully, not {condition}")
        if not is_one_shot(service) and "command" in service and service.get("build"):
            assert health_url(service), f"long-running service {name} has no HTTP healthcheck"
    workers = [n for n, s in services.items() if "worker" in s.get("command", [])]
    planes = [n for n, s in services.items() if "control-plane" in s.get("command", [])]
    echoes = [n for n, s in services.items() if "echo" in s.get("command", [])]
    assert len(workers) == 3 and len(planes) == 2 and len(echoes) == 2
    assert any("apply" in s.get("command", []) for s in services.values())


def test_secrets_have_no_defaults_and_compose_refuses_to_start_without_them() -> None:
    text = COMPOSE.read_text()
    uses = [(m.group(1), m.group(2) or "") for m in _VAR.finditer(text)]
    for name in SECRETS:
        ops = {op for var, op in uses if var == name}
        assert ops == {":?"}, f"{name} must always be ${{{name}:?...}} (required, no default), found {ops}"
    # any other secret-looking variable is required too, and no placeholder token is left anywhere
    for var, op in uses:
        if any(word in var for word in ("TOKEN", "PASSWORD", "SECRET")):
            assert op == ":?", f"{var} has a default ({op!r})"
    assert "change-me" not in text
    with pytest.raises(MissingVariables) as refused:
        load_compose({})
    assert set(refused.value.args[0]) == set(SECRETS)
    assert all(message for message in refused.value.args[0].values())  # compose prints it: say what to set
    for name in SECRETS:
        with pytest.raises(MissingVariables) as one:
            load_compose({**secrets(), name: ""})  # empty counts as unset, as with compose's ":?"
        assert set(one.value.args[0]) == {name}


def _published(entry: str | dict[str, Any]) -> tuple[str, int, int]:
    """(host ip, host port, container port) of a ``ports`` entry; host ip "" = every interface."""
    if isinstance(entry, dict):
        return str(entry.get("host_ip", "")), int(entry["published"]), int(entry["target"])
    parts = str(entry).split(":")
    if len(parts) == 2:
        parts.insert(0, "")
    host_ip, host_port, container_port = parts
    return host_ip, int(host_port), int(container_port.split("/")[0])


def _flag(argv: list[str], flag: str) -> int | None:
    return int(argv[argv.index(flag) + 1]) if flag in argv else None


def test_admin_and_status_ports_are_published_on_loopback_only() -> None:
    services = load_compose(secrets())
    private = 0
    for name, service in services.items():
        argv = service.get("command") or []
        # the admin API (control plane --port) and a worker's status port: never on every interface
        internal = {p for p in (_flag(argv, "--status-port"),) if p is not None}
        if "control-plane" in argv:
            internal.add(_flag(argv, "--port") or 8001)
        published = [_published(e) for e in service.get("ports") or []]
        for host_ip, host_port, container_port in published:
            if container_port in internal:
                where = f"{host_ip or 'every interface'}:{host_port}"
                assert host_ip == "127.0.0.1", f"{name} publishes its port {container_port} on {where}"
                private += 1
        if "worker" in argv:
            traffic = _flag(argv, "--port")
            assert any(c == traffic for _, _, c in published), f"{name} does not publish its traffic port"
    assert private == 2 + 3  # both admin APIs and every worker's status port are published, on loopback


def test_worker_cache_and_usage_spool_are_on_named_volumes() -> None:
    from data_plane.settings import WorkerSettings

    doc = load_document(secrets())
    named = set(doc.get("volumes") or {})
    workers = {n: s for n, s in doc["services"].items() if "worker" in (s.get("command") or [])}
    sources = []
    dockerfile = DOCKERFILE.read_text()
    user = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)[-1]
    for name, service in workers.items():
        cache_dir = service["environment"]["TOLLGATE_WORKER_CACHE_DIR"]
        assert not cache_dir.startswith("/tmp"), f"{name}: cache dir {cache_dir} is lost with the container"
        mounts = {}
        for volume in service.get("volumes") or []:
            source, target = (volume["source"], volume["target"]) if isinstance(volume, dict) else volume.split(":")[:2]
            mounts[target] = source
        assert cache_dir in mounts, f"{name}: {cache_dir} is not a volume"
        assert mounts[cache_dir] in named, f"{name}: {mounts[cache_dir]} is not a named volume"
        sources.append(mounts[cache_dir])
        # the snapshot cache and the usage spool both live under it (as the worker computes them)
        settings = WorkerSettings.from_env({"TOLLGATE_WORKER_CACHE_DIR": cache_dir})
        assert settings.cache_file.is_relative_to(cache_dir) and settings.usage_spool_dir.is_relative_to(cache_dir)
        # an empty named volume takes the owner of the image's directory: it must exist for the runtime user
        assert re.search(rf"mkdir -p [^\n]*{re.escape(cache_dir)}[^\n]*chown -R {user}\b", dockerfile), (
            f"the Dockerfile must create {cache_dir} owned by {user}"
        )
    assert len(workers) == 3
    assert len(set(sources)) == len(sources), "workers share a volume: a usage spool must have one owner"


@pytest.fixture
def database() -> Iterator[str]:
    base = make_url(POSTGRES_URL)
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"tollgate_compose_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        require_service("PostgreSQL", False, str(exc).splitlines()[0])
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class Local:
    """The rewriting from compose names and ports to this machine's."""

    def __init__(self, services: dict[str, Any], database_url: str, tmp: Path) -> None:
        self.tmp = tmp
        self.database_url = database_url
        self.ports: dict[tuple[str, int], int] = {}
        for name, service in services.items():
            argv = service.get("command") or []
            for flag, value in zip(argv, argv[1:], strict=False):
                if flag in ("--port", "--status-port"):
                    self.ports[(name, int(value))] = free_port()
        for name, port in INFRA_PORTS.items():
            self.ports[(name, port)] = port

    def url(self, value: str) -> str:
        def sub(m: re.Match[str]) -> str:
            local = self.ports.get((m.group(3), int(m.group(4))))
            if local is None:
                return m.group(0)
            return f"{m.group(1)}://{m.group(2) or ''}127.0.0.1:{local}"

        return _URL.sub(sub, value)

    def argv(self, name: str, argv: list[str]) -> list[str]:
        out: list[str] = []
        for i, arg in enumerate(argv):
            prev = argv[i - 1] if i else ""
            if prev in ("--port", "--status-port"):
                arg = str(self.ports[(name, int(arg))])
            elif prev == "--host":
                arg = "127.0.0.1"  # tests send traffic to loopback only
            elif prev == "-f":
                arg = str(self.gateway_file(arg))
            out.append(self.url(arg))
        assert out[0] == "tollgate"
        return [sys.executable, "-m", "tollgate", *out[1:]]

    def env(self, name: str, environment: dict[str, Any]) -> dict[str, str]:
        env = {k: self.url(str(v)) for k, v in (environment or {}).items()}
        if "TOLLGATE_DATABASE_URL" in env:
            env["TOLLGATE_DATABASE_URL"] = self.database_url
        for key in ("TOLLGATE_DATA_DIR", "TOLLGATE_WORKER_CACHE_DIR"):
            if key in env:
                env[key] = str(self.tmp / f"{name}-{key.lower()}")
        if "TOLLGATE_STATUS_HOST" in env:
            env["TOLLGATE_STATUS_HOST"] = "127.0.0.1"
        return env

    def health(self, name: str, url: str) -> str:
        m = re.match(r"(https?)://[^:/]+:(\d+)(.*)", url)
        assert m, url
        return f"{m.group(1)}://127.0.0.1:{self.ports[(name, int(m.group(2)))]}{m.group(3)}"

    def gateway_file(self, container_path: str) -> Path:
        """The config file the apply job reads, with ``{host: demo-a, port: 9001}`` targets made local."""
        source = ROOT / container_path.removeprefix("/app/")
        doc = yaml.safe_load(source.read_text())
        for upstream in doc.get("upstreams", []):
            for target in upstream.get("targets", []):
                target["port"] = self.ports[(target["host"], int(target["port"]))]
                target["host"] = "127.0.0.1"
        out = self.tmp / source.name
        out.write_text(yaml.safe_dump(doc))
        return out


def test_compose_services_run_and_serve_traffic(tmp_path: Path, database: str) -> None:
    require_service("Redis", port_open(6379, timeout=1))
    values = secrets()
    services = load_compose(values)
    local = Local(services, database, tmp_path)
    cluster = Cluster(tmp_path)
    try:
        graph = {n: set(depends(s)) for n, s in services.items()}
        sorter = TopologicalSorter(graph)
        sorter.prepare()
        while sorter.is_active():
            ready = sorter.get_ready()
            started: list[tuple[str, Proc]] = []
            for name in ready:
                service = services[name]
                if "build" not in service:  # an image we do not build: the machine's PostgreSQL / Redis
                    assert name in INFRA_PORTS, f"no local stand-in for {name}"
                    continue
                argv = local.argv(name, service["command"])
                started.append((name, cluster.spawn(name, argv, local.env(name, service.get("environment") or {}))))
            for name, proc in started:
                service = services[name]
                if is_one_shot(service):
                    assert proc.proc is not None
                    rc = proc.proc.wait(timeout=30)
                    assert rc == 0, f"{name} exited {rc}:\n{proc.log()}"
                else:
                    url = health_url(service)
                    assert url is not None
                    check = local.health(name, url)
                    wait_until(lambda p=proc, u=check: _healthy(p, u), timeout=30, what=f"{name} healthy")
            sorter.done(*ready)

        workers = [n for n, s in services.items() if "worker" in s.get("command", [])]
        for name in workers:
            port = local.ports[(name, 8000)]
            seen: set[str] = set()

            def through(port: int = port, seen: set[str] = seen) -> bool:
                r = httpx.get(f"http://127.0.0.1:{port}/demo/hello", timeout=3.0)
                if r.status_code == 200:
                    seen.add(r.json()["server"])
                return seen == {"demo-a", "demo-b"}

            wait_until(through, timeout=15, what=f"{name} to reach both demo backends")
        # every worker reported in to the control planes (node registry shared through PostgreSQL)
        token = values["TOLLGATE_ADMIN_TOKEN"]
        cp2 = local.ports[("control-plane-2", 8001)]
        nodes = httpx.get(f"http://127.0.0.1:{cp2}/v1/nodes", headers={"authorization": f"Bearer {token}"}).json()
        assert {n["id"] for n in nodes["items"]} >= set(workers)
    finally:
        cluster.close()


def _healthy(proc: Proc, url: str) -> bool:
    if not proc.alive():
        raise RuntimeError(f"{proc.name} exited early:\n{proc.log()}")
    return httpx.get(url, timeout=2.0).status_code == 200
