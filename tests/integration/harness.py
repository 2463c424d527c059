"""Real processes on real sockets for the integration tests: control plane, workers, echo backends.

Every process runs from the project's own console entry (``python -m tollgate ...``) on a free
127.0.0.1 port, logs to a file under the test's tmp dir (shown when a wait fails), and is stopped
with SIGTERM (then SIGKILL) at teardown.  Waits poll a condition against a deadline; nothing
sleeps longer than needed.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "test-admin-token-for-the-harness"


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Ports for the processes a test starts come from below the kernel's ephemeral range, handed out
# once per test run.  A port from bind(("127.0.0.1", 0)) is released before the process under
# test binds it, and in that gap the kernel may give it to any outgoing connection as its local
# port (or to the next bind to port 0: two calls can return the same port).  Below the range,
# only an explicit bind takes a port, and the counter never hands one out twice.
# Under pytest-xdist (`make test` runs two processes) each process gets its own slice of the range,
# so two tests running at once never pick the same port.
_PORT_LOW = 20000
_PORT_HIGH = max(_PORT_LOW + 2000, _ephemeral_low())


def _slice(low: int, high: int) -> tuple[int, int]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or count <= 1:
        return low, high
    index = int(worker[2:]) % count
    width = (high - low) // count
    return low + index * width, low + (index + 1) * width


_PORT_LOW, _PORT_HIGH = _slice(_PORT_LOW, _PORT_HIGH)
_next_port = _PORT_LOW + (os.getpid() * 7919) % (_PORT_HIGH - _PORT_LOW)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))  # no SO_REUSEADDR: a TIME_WAIT leftover counts as taken
        except OSError:
            return False
    return True


def free_ports(n: int) -> int:
    """The first of ``n`` consecutive free ports (``--processes n`` puts child i's status port on p + i)."""
    global _next_port
    for _ in range(_PORT_HIGH - _PORT_LOW):
        if _next_port + n > _PORT_HIGH:
            _next_port = _PORT_LOW
        base, _next_port = _next_port, _next_port + n
        if all(_bindable(base + i) for i in range(n)):
            return base
    raise AssertionError(f"no {n} consecutive free ports in {_PORT_LOW}-{_PORT_HIGH}")


def free_port() -> int:
    return free_ports(1)


def wait_until(check: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> T:
    """Poll ``check`` until it returns a truthy value (returned) or the deadline passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except (httpx.HTTPError, OSError, AssertionError, KeyError) as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc!r})")
        time.sleep(interval)


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        env = {**os.environ, **self.env}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def tollgate_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "tollgate", *args]


@dataclass
class Cluster:
    """Owns every process a test started; ``close()`` stops them all (in reverse order)."""

    tmp: Path
    procs: list[Proc] = field(default_factory=list)

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        p = Proc(name, argv, env or {}, self.tmp / f"{name}.log").start()
        self.procs.append(p)
        return p

    def wait_http(self, proc: Proc, url: str, timeout: float = 20.0, verify: ssl.SSLContext | bool = True) -> None:
        def ready() -> bool:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited early:\n{proc.log()}")
            return httpx.get(url, timeout=1.0, verify=verify).status_code < 500

        try:
            wait_until(ready, timeout=timeout, what=f"{proc.name} at {url}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- {proc.name} log ---\n{proc.log()}") from None

    def echo(self, name: str, port: int | None = None) -> Backend:
        port = port or free_port()
        proc = self.spawn(f"echo-{name}", [sys.executable, "-m", "tollgate.echo", "--port", str(port), "--name", name])
        backend = Backend(name, port, proc)
        self.wait_http(proc, f"{backend.url}/__echo/count")
        return backend

    def lab(self, name: str, port: int | None = None) -> Backend:
        """A programmable backend (tests/integration/lab_backend.py) as its own process."""
        port = port or free_port()
        script = str(ROOT / "tests" / "integration" / "lab_backend.py")
        proc = self.spawn(f"lab-{name}", [sys.executable, script, "--port", str(port), "--name", name])
        backend = Backend(name, port, proc)
        self.wait_http(proc, f"{backend.url}/__echo/count")
        return backend

    def control_plane(
        self,
        database_url: str | None = None,
        *,
        cluster_token: str = "test-cluster-token",
        name: str = "cp",
        extra_env: dict[str, str] | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> ControlPlane:
        """``extra_env`` with ``TOLLGATE_ADMIN_TLS_CERT`` / ``_KEY``: it serves https, checked with ``verify``."""
        port = free_port()
        data_dir = self.tmp / f"{name}-data"
        env = {
            "TOLLGATE_DATA_DIR": str(data_dir),
            "TOLLGATE_DATABASE_URL": database_url or f"sqlite:///{data_dir / 'tollgate.db'}",
            "TOLLGATE_ADMIN_HOST": "127.0.0.1",
            "TOLLGATE_ADMIN_PORT": str(port),
            "TOLLGATE_CLUSTER_TOKEN": cluster_token,
            "TOLLGATE_ADMIN_TOKEN": ADMIN_TOKEN,
            "TOLLGATE_REVISION_POLL_INTERVAL": "0.1",
            **(extra_env or {}),
        }
        proc = self.spawn(name, tollgate_argv("control-plane", "--log-level", "warning"), env)
        scheme = "https" if env.get("TOLLGATE_ADMIN_TLS_CERT") else "http"
        cp = ControlPlane(f"{scheme}://127.0.0.1:{port}", cluster_token, proc, env, verify=verify)
        self.wait_http(proc, f"{cp.url}/openapi.json", verify=verify)
        return cp

    def restart_control_plane(self, cp: ControlPlane) -> None:
        """Start ``cp`` again (same port, database and token) after it was stopped or killed."""
        cp.proc.stop()
        cp.proc = self.spawn(cp.proc.name, cp.proc.argv, cp.env)
        self.wait_http(cp.proc, f"{cp.url}/openapi.json", verify=cp.verify)

    def worker(
        self,
        cp: ControlPlane | None = None,
        *,
        name: str = "worker",
        cluster_token: str | None = None,
        snapshot: Path | None = None,
        port: int | None = None,
        status_port: int | None = None,
        cache_dir: Path | None = None,
        extra: tuple[str, ...] = (),
        wait: bool = True,
        env: dict[str, str] | None = None,
    ) -> Worker:
        port = port or free_port()
        status_port = status_port or free_port()
        args = ["worker", "--port", str(port), "--status-port", str(status_port), "--node-id", name]
        args += ["--cache-dir", str(cache_dir or self.tmp / f"{name}-cache"), "--log-level", "info", *extra]
        env = dict(env or {})
        if cp is not None:
            args += ["--control-plane", cp.url]
            env["TOLLGATE_CLUSTER_TOKEN"] = cp.cluster_token if cluster_token is None else cluster_token
        if snapshot is not None:
            args += ["--snapshot", str(snapshot)]
        proc = self.spawn(name, tollgate_argv(*args), env)
        w = Worker(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{status_port}", port, proc)
        if wait:
            self.wait_http(proc, f"{w.status_url}/status")
        return w

    def close(self) -> None:
        for p in reversed(self.procs):
            p.stop()


@dataclass
class Backend:
    name: str
    port: int
    proc: Proc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self) -> int:
        return int(httpx.get(f"{self.url}/__echo/count", timeout=2.0).json()["count"])

    def control(self, **settings: str | int) -> None:
        """Switch a lab backend's behaviour (``probe="fail"``, ``status=500``...)."""
        r = httpx.get(f"{self.url}/__ctl", params=settings, timeout=2.0)
        assert r.status_code == 200, r.text


@dataclass
class ControlPlane:
    url: str
    cluster_token: str
    proc: Proc
    env: dict[str, str]

    admin_token: str = ADMIN_TOKEN
    verify: ssl.SSLContext | bool = True  # how an https control plane's certificate is checked

    def admin(self) -> httpx.Client:
        headers = {"authorization": f"Bearer {self.admin_token}"}
        return httpx.Client(base_url=self.url, timeout=10.0, headers=headers, verify=self.verify)

    def get(self, path: str) -> httpx.Response:
        """One admin GET with the admin token (``path`` like ``/v1/nodes``)."""
        headers = {"authorization": f"Bearer {self.admin_token}"}
        return httpx.get(f"{self.url}{path}", timeout=10.0, headers=headers, verify=self.verify)

    def revision(self) -> int:
        with self.admin() as admin:
            return int(admin.get("/v1/config").json()["revision"])


@dataclass
class Worker:
    url: str
    status_url: str
    port: int
    proc: Proc

    def status(self) -> dict[str, Any]:
        return httpx.get(f"{self.status_url}/status", timeout=2.0).json()  # type: ignore[no-any-return]

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample of the worker's ``/metrics`` (``name`` as exposed: ``tollgate_requests_total``),
        the first whose labels include ``labels``; None when there is none."""
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"{self.status_url}/metrics", timeout=5.0).text
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return None

    def wait_revision(self, revision: int, timeout: float = 10.0) -> dict[str, Any]:
        return wait_until(
            lambda: (s := self.status())["revision"] is not None and s["revision"] >= revision and s,
            timeout=timeout,
            what=f"{self.proc.name} to apply revision {revision}",
        )


def create(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post(path, json=body)
    assert r.status_code == 201, f"POST {path} -> {r.status_code} {r.text}"
    return r.json()  # type: ignore[no-any-return]


def snapshot_file(
    path: Path,
    upstreams: list[dict[str, Any]],
    mounts: dict[str, str],
    route_fields: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """A standalone worker snapshot: each base path in ``mounts`` is an API whose one greedy route
    (``/{proxy+}``, base path stripped) goes to the named upstream id; ``route_fields`` adds fields
    to the route of a base path (``{"/ws": {"read_timeout": 0.5}}``)."""
    from data_plane.snapshot import Snapshot

    extra = route_fields or {}
    apis = [
        {
            "id": f"api-{i}",
            "name": f"api-{i}",
            "base_path": base,
            "routes": [{"id": f"route-{i}", "path": "/{proxy+}", "upstream_id": upstream_id, **extra.get(base, {})}],
        }
        for i, (base, upstream_id) in enumerate(mounts.items())
    ]
    doc = {"schema_version": "1.1", "revision": 1, "upstreams": upstreams, "apis": apis}
    path.write_bytes(Snapshot.from_dict(doc).to_json())
    return path


def targets(*backends: Backend, weights: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    return [
        {"id": f"t-{b.name}", "host": "127.0.0.1", "port": b.port, "weight": weights[i] if weights else 100}
        for i, b in enumerate(backends)
    ]


def raw_exchange(port: int, data: bytes, *, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Send ``data`` on a fresh connection and read until the server closes it (or ``timeout``).
    Returns (bytes received, closed by server)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                return out, False
            except ConnectionResetError:
                return out, True
            if not chunk:
                return out, True
            out += chunk
        return out, False
