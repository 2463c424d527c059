"""Shared machinery for the bench scripts: tools, processes, nginx configs, wrk runs.

Everything runs on 127.0.0.1 on free ports, in a temporary directory, and every process this
module starts is remembered in a :class:`Procs` and stopped by its own id (its own process
group, created at start) on exit, error or Ctrl-C.  Nothing here is imported by the project.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable

# Core 0: the proxy under test (Tollgate worker, or nginx as proxy). Core 1: load generator and backend.
PROXY_CORE = "0"
LOAD_CORE = "1"

# ~100 bytes, fixed, so every case moves the same bytes.
BACKEND_BODY = '{"ok":true,"service":"tollgate-bench-backend","note":"fixed body of about one hundred bytes"}'

# wrk prints one JSON line from done(); latency is in microseconds.
WRK_LUA = r"""
local extra = os.getenv("BENCH_WRK_HEADERS") or ""
for line in string.gmatch(extra, "[^\n]+") do
  local k, v = string.match(line, "^([^:]+):%s*(.*)$")
  if k then wrk.headers[k] = v end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"p999_us":%d,"max_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"status_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------- tools


def find_tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for d in ("/usr/sbin", "/usr/bin", "/sbin") if os.access(p := f"{d}/{name}", os.X_OK)), None
    )


def ensure_tools() -> dict[str, str]:
    """wrk and nginx from Debian's packages, installed when missing (needs root, as this machine is)."""
    tools = {n: find_tool(n) for n in ("wrk", "nginx", "taskset")}
    missing = [n for n, p in tools.items() if p is None]
    if missing:
        log(f"installing {', '.join(missing)} from Debian packages (apt-get) ...")
        if os.geteuid() != 0:
            sys.exit("wrk/nginx are missing and this is not root: apt-get install -y wrk nginx-light util-linux")
        # RUNLEVEL=1 with policy-rc.d (where present) keeps the package's own nginx service from starting.
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "RUNLEVEL": "1"}
        apt = ["apt-get", "-q", "-o", "DPkg::Lock::Timeout=300"]
        subprocess.run([*apt, "update"], env=env, check=True, stdout=subprocess.DEVNULL)
        pkgs = ["wrk", "util-linux"]
        if tools["nginx"] is None:
            pkgs.append("nginx-light")
        if subprocess.run([*apt, "install", "-y", *pkgs], env=env, stdout=subprocess.DEVNULL).returncode != 0:
            pkgs[-1] = "nginx"  # nginx-light is a transitional package or absent on newer releases
            subprocess.run([*apt, "install", "-y", *pkgs], env=env, check=True, stdout=subprocess.DEVNULL)
        tools = {n: find_tool(n) for n in ("wrk", "nginx", "taskset")}
        if any(p is None for p in tools.values()):
            sys.exit(f"still missing after apt-get: {[n for n, p in tools.items() if p is None]}")
    return {n: p for n, p in tools.items() if p is not None}


def ensure_py_spy() -> str:
    exe = Path(PYTHON).with_name("py-spy")
    if not exe.exists():
        log("installing py-spy into the venv (pip) ...")
        subprocess.run([PYTHON, "-m", "pip", "install", "--quiet", "py-spy"], check=True)
    return str(exe)


# Ports below the kernel's ephemeral range (32768 up, by default), handed out once per bench run:
# a port from bind(port 0) is free again until the worker binds it, and meanwhile the kernel may
# give it to any outgoing connection (wrk's, the worker's upstream ones) as its local port.
_next_port = 20000 + os.getpid() % 10000


def free_ports(n: int) -> int:
    """The first of ``n`` consecutive free ports (``--processes n`` puts child i's status port on p + i)."""
    global _next_port
    for _ in range(12000):
        if _next_port + n > 32000:
            _next_port = 20000
        base, _next_port = _next_port, _next_port + n
        if all(_bindable(base + i) for i in range(n)):
            return base
    raise RuntimeError(f"no {n} consecutive free ports in 20000-32000")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    return free_ports(1)


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout}s")


def http_get(
    port: int, path: str = "/", host: str = "127.0.0.1", headers: tuple[str, ...] = (), tls: bool = False
) -> tuple[int, bytes]:
    """One tiny HTTP/1.1 request (no client library needed), for readiness and sanity checks;
    ``tls``: over HTTPS, the certificate not checked (the bench's own self-signed one)."""
    extra = "".join(f"{h}\r\n" for h in headers if not h.lower().startswith("connection:"))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        s = raw
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(raw, server_hostname="localhost")
        s.sendall(f"GET {path} HTTP/1.1\r\nhost: {host}\r\n{extra}connection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


# ---------------------------------------------------------------------------------------- processes


@dataclass
class Procs:
    """Every process the bench started; ``stop_all`` stops exactly those, newest first."""

    workdir: Path
    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(
        self, name: str, argv: Sequence[str], core: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        if core is not None:
            argv = ["taskset", "-c", core, *argv]
        out = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        full_env = {**os.environ, **env} if env else None
        proc = subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True, env=full_env
        )
        self.started.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)  # its own group: start_new_session above
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.started = [(n, p) for n, p in self.started if p is not proc]

    def stop_all(self) -> None:
        for _, proc in reversed(list(self.started)):
            self.stop(proc)

    def log_tail(self, name: str) -> str:
        try:
            return (self.workdir / f"{name}.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""


def start_redis_cluster(procs: Procs, masters: int = 3, core: str | None = None) -> str:
    """A Redis Cluster of the bench's own: ``masters`` redis-servers (no replicas) on free ports, slots
    spread by ``redis-cli --cluster create``; returns its ``redis+cluster://`` URL."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        raise RuntimeError("redis-server / redis-cli not found (apt-get install redis-server)")
    ports = [free_port() for _ in range(masters)]
    for port in ports:
        conf = procs.workdir / f"cluster-nodes-{port}.conf"
        argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        argv += ["--cluster-enabled", "yes", "--cluster-config-file", str(conf), "--dir", str(procs.workdir)]
        argv += ["--cluster-port", str(free_port())]  # not port + 10000, which may be taken
        proc = procs.start(f"redis-cluster-{port}", argv, core=core)
        wait_port(port, proc, "redis-server (cluster node)")
    create = [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports)]
    create += ["--cluster-replicas", "0", "--cluster-yes"]
    subprocess.run(create, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    deadline = time.monotonic() + 20
    while True:  # every node agrees the cluster is up before anyone measures it
        infos = [subprocess.run([cli, "-p", str(p), "cluster", "info"], capture_output=True, text=True) for p in ports]
        if all("cluster_state:ok" in i.stdout for i in infos):
            break
        if time.monotonic() > deadline:
            raise RuntimeError("the bench's Redis Cluster did not come up")
        time.sleep(0.05)
    log(f"Redis Cluster of the bench: {masters} masters on 127.0.0.1:{','.join(map(str, ports))}")
    return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports)


def install_signal_handlers() -> None:
    """SIGTERM behaves like Ctrl-C, so the ``finally`` that stops our processes always runs."""

    def raise_interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, raise_interrupt)


# ---------------------------------------------------------------------------------------- nginx


def _nginx_main(workdir: Path, name: str, http_body: str, processes: int = 1) -> str:
    tmp = workdir / f"{name}-tmp"
    tmp.mkdir(exist_ok=True)
    return f"""
worker_processes {processes};
daemon off;
pid {workdir}/{name}.pid;
error_log {workdir}/{name}-error.log warn;
events {{ worker_connections 4096; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
{http_body}
}}
"""


def backend_conf(workdir: Path, ports: Sequence[int]) -> Path:
    servers = "\n".join(
        f"""    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{ default_type application/json; return 200 '{BACKEND_BODY}'; }}
    }}"""
        for port in ports
    )
    path = workdir / "backend.conf"
    path.write_text(_nginx_main(workdir, "backend", servers))
    return path


def proxy_conf(
    workdir: Path,
    listen: int,
    targets: Sequence[int],
    processes: int = 1,
    tls: tuple[int, Path, Path] | None = None,
) -> Path:
    """nginx as a reverse proxy, configured like a careful production gateway: upstream keep-alive,
    round-robin over the same targets, the same forwarded headers Tollgate adds.  ``tls``: also
    terminate HTTPS on (port, certificate, key), TLS 1.2+ with session tickets and a session cache
    (what a production nginx sets; the Tollgate worker resumes sessions with tickets)."""
    upstream = "\n".join(f"        server 127.0.0.1:{p};" for p in targets)
    ssl_lines = ""
    if tls is not None:
        tls_port, cert, key = tls
        ssl_lines = f"""        listen 127.0.0.1:{tls_port} ssl reuseport;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
"""
    body = f"""    upstream backends {{
{upstream}
        keepalive 128;
        keepalive_requests 10000000;
    }}
    server {{
        listen 127.0.0.1:{listen} reuseport;
{ssl_lines}        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $proxy_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Request-ID $request_id;
            add_header X-Request-ID $request_id;
        }}
    }}"""
    path = workdir / "proxy.conf"
    path.write_text(_nginx_main(workdir, "proxy", body, processes))
    return path


def start_nginx(
    procs: Procs, nginx: str, name: str, conf: Path, port: int, core: str | None
) -> subprocess.Popen[bytes]:
    proc = procs.start(name, [nginx, "-p", str(procs.workdir), "-c", str(conf), "-e", "stderr"], core=core)
    try:
        wait_port(port, proc, f"nginx {name}")
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n{procs.log_tail(name)}") from None
    return proc


# ---------------------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    errors: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "rps": round(self.rps, 1),
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "p999_ms": self.p999_ms,
            "errors": self.errors,
        }


def run_wrk(
    wrk: str,
    workdir: Path,
    url: str,
    *,
    seconds: float,
    connections: int,
    headers: Sequence[str] = (),
    on_start: Callable[[], None] | None = None,
    request_lua: str = "",
    core: str | None = LOAD_CORE,
    threads: int = 1,
) -> WrkResult:
    """One wrk run, pinned to the load core unless ``core`` is None; percentiles come from the Lua
    ``done()`` JSON line.  ``request_lua`` may define wrk's ``request()`` to vary requests."""
    script = workdir / f"bench-{abs(hash(request_lua))}.lua"
    if not script.exists():
        script.write_text(WRK_LUA + request_lua)
    argv = ["taskset", "-c", core] if core is not None else []
    argv += [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
    argv += ["--timeout", "5s", "-s", str(script), url]
    env = {**os.environ, "BENCH_WRK_HEADERS": "\n".join(headers)}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        if on_start is not None:
            on_start()
        out, _ = proc.communicate(timeout=seconds + 60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = out.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result:\n{text[-2000:]}")
    doc = json.loads(line[len("BENCH_JSON ") :])
    secs = doc["duration_us"] / 1e6
    errors = {k: doc[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")}
    return WrkResult(
        requests=doc["requests"],
        seconds=secs,
        rps=doc["requests"] / secs if secs else 0.0,
        p50_ms=doc["p50_us"] / 1000,
        p90_ms=doc["p90_us"] / 1000,
        p99_ms=doc["p99_us"] / 1000,
        p999_ms=doc["p999_us"] / 1000,
        errors={k: v for k, v in errors.items() if v},
    )


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid`` and its direct children (nginx: master + its worker).

    ``taskset -c N prog`` execs prog, so a started process's pid is the program's own.
    CPU per request is steadier than req/s on a shared machine: other processes steal wall
    time from the proxy, not the work each request costs it.  The split says how much of a
    request is the proxy's own code (user) and how much the kernel's socket work (system).
    """
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    children = Path(f"/proc/{pid}/task/{pid}/children")
    pids = [pid] + [int(c) for c in (children.read_text().split() if children.exists() else [])]
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11]) / tick  # utime, stime (fields 14, 15 of stat)
        system += int(fields[12]) / tick
    return user, system
