"""``tollgate up``: the whole gateway on one machine with no other service.

Starts the control plane on SQLite (``<data_dir>/tollgate.db``), a demo echo backend and the
worker process(es) as children, waits until each answers, registers a demo upstream and API on
the first start, and prints what to curl.  Ctrl-C stops everything; the data directory keeps
the database, the cluster token and the workers' last-known-good snapshot across restarts.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx

from tollgate.supervise import Child, Supervisor, python_module

DEMO_MARKER = "demo-registered"


def _wait_http(url: str, what: str, sup: Supervisor, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last: str = ""
    while time.monotonic() < deadline:
        for child in sup.children:
            if child.proc is not None and child.proc.poll() is not None:
                raise RuntimeError(f"{child.name} exited with status {child.proc.returncode} during start-up")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError as exc:
            last = exc.__class__.__name__
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer on {url} within {timeout:.0f}s ({last})")


def register_demo(admin_url: str, demo_port: int, headers: dict[str, str] | None = None) -> None:
    """A demo upstream (the echo backend) and API ``/demo`` routing everything to it."""
    with httpx.Client(base_url=admin_url, timeout=10.0, headers=headers) as client:
        r = client.post("/v1/upstreams", json={"name": "demo", "algorithm": "round_robin"})
        r.raise_for_status()
        upstream = r.json()
        client.post(
            f"/v1/upstreams/{upstream['id']}/targets", json={"host": "127.0.0.1", "port": demo_port}
        ).raise_for_status()
        r = client.post("/v1/apis", json={"name": "demo", "base_path": "/demo"})
        r.raise_for_status()
        api = r.json()
        for path in ("/", "/{proxy+}"):
            client.post(
                f"/v1/apis/{api['id']}/routes", json={"path": path, "upstream_id": upstream["id"]}
            ).raise_for_status()


def run_embedded(
    *, workers: int, port: int, admin_port: int, demo_port: int, data_dir: Path, tls_port: int = 8443
) -> int:
    from tollgate.ports import busy_message

    # Before anything starts: a second `tollgate up` (or anything else on these ports) is one line
    # naming the process and the option, not a banner followed by a child's traceback.
    status_port = int(os.environ.get("TOLLGATE_STATUS_PORT") or 8100)
    checks = [
        ("127.0.0.1", admin_port, "--admin-port"),
        ("127.0.0.1", port, "--port"),
        ("127.0.0.1", demo_port, "--demo-port"),
        ("127.0.0.1", tls_port, "--tls-port (0: no HTTPS)"),
    ]
    checks += [("127.0.0.1", status_port + i, "TOLLGATE_STATUS_PORT") for i in range(workers)]
    problem = busy_message(checks)
    if problem:
        print(f"tollgate up: {problem}", file=sys.stderr)
        return 1
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    from control_plane.settings import ADMIN_TOKEN_FILE, Settings, ensure_cluster_token, ensure_secret_file

    env_base = {
        "TOLLGATE_DATA_DIR": str(data_dir),
        "TOLLGATE_DATABASE_URL": os.environ.get("TOLLGATE_DATABASE_URL") or f"sqlite:///{data_dir / 'tollgate.db'}",
        "TOLLGATE_ADMIN_HOST": "127.0.0.1",
        "TOLLGATE_ADMIN_PORT": str(admin_port),
    }
    settings = Settings.from_env({**os.environ, **env_base})
    token = ensure_cluster_token(settings)
    # The admin token: TOLLGATE_ADMIN_TOKEN if set, else generated once into <data_dir>/admin-token (0600).
    admin_token_file = data_dir / ADMIN_TOKEN_FILE
    if settings.admin_token:
        admin_token, new_admin_token = settings.admin_token, False
    else:
        admin_token, new_admin_token = ensure_secret_file(admin_token_file, "admin token", prefix="tga_")
    env_base["TOLLGATE_ADMIN_TOKEN"] = admin_token
    admin_headers = {"authorization": f"Bearer {admin_token}"}
    admin_url = f"http://127.0.0.1:{admin_port}"

    sup = Supervisor()
    try:
        cp_argv = python_module("tollgate", "control-plane", "--log-level", "warning")
        sup.start(Child("control plane", cp_argv, env_base))
        sup.start(Child("demo backend", python_module("tollgate.echo", "--port", str(demo_port), "--name", "demo")))
        _wait_http(f"{admin_url}/openapi.json", "the control plane", sup)

        marker = data_dir / DEMO_MARKER
        if not marker.exists():
            register_demo(admin_url, demo_port, admin_headers)
            marker.write_text("1\n")

        worker_env = {
            "TOLLGATE_CLUSTER_TOKEN": token,
            "TOLLGATE_WORKER_CACHE_DIR": str(data_dir / "worker"),
        }
        argv = ["worker", "--control-plane", admin_url, "--port", str(port), "--processes", str(workers)]
        # An interactive terminal is for the banner and errors: the access log goes to a file.
        argv += ["--access-log", str(data_dir / "access.log")]
        if tls_port:
            from tollgate.selfsigned import ensure_localhost_certificate

            cert_file, key_file = ensure_localhost_certificate(data_dir / "tls")
            argv += ["--tls-port", str(tls_port), "--tls-cert", str(cert_file), "--tls-key", str(key_file)]
        worker_argv = python_module("tollgate", *argv, "--log-level", "warning")
        sup.start(Child("worker", worker_argv, worker_env, hup=True))  # SIGHUP: reopen .tollgate/access.log
        _wait_http(f"http://127.0.0.1:{port}/demo/", "the worker", sup)
    except (RuntimeError, httpx.HTTPError) as exc:
        print(f"tollgate up: {exc}", file=sys.stderr)
        sup.stop()
        return 1

    https_line = ""
    if tls_port:
        https_line = (
            f"\n  https       https://localhost:{tls_port}   (self-signed: {data_dir / 'tls' / 'localhost.crt'})"
        )
    https_try = ""
    if tls_port:
        https_try = f"  curl --cacert {data_dir / 'tls' / 'localhost.crt'} https://localhost:{tls_port}/demo/hello\n"
    token_source = "$TOLLGATE_ADMIN_TOKEN" if settings.admin_token else f"$(cat {admin_token_file})"
    if settings.admin_token:
        token_note = "admin token: the value of TOLLGATE_ADMIN_TOKEN\n"
    elif new_admin_token:
        token_note = f"admin token (shown once; kept in {admin_token_file}):\n  {admin_token}\n"
    else:
        token_note = f"admin token: in {admin_token_file}\n"
    print(
        f"""
Tollgate is up (data in {data_dir}).
{token_note}
  admin API   {admin_url}   (docs: {admin_url}/docs)
  console     {admin_url}/console/   (sign in with the admin token) · portal {admin_url}/portal/
  traffic     http://127.0.0.1:{port}   ({workers} worker process{"es" if workers > 1 else ""}){https_line}
  demo        http://127.0.0.1:{demo_port}   (echo backend)
  access log  {data_dir / "access.log"}   (one JSON line per request)

Try:
  curl localhost:{port}/demo/hello
{https_try}  TOKEN={token_source}
  curl -H "authorization: Bearer $TOKEN" {admin_url}/v1/apis
  curl -H "authorization: Bearer $TOKEN" {admin_url}/v1/nodes

Ctrl-C stops everything.
""",
        flush=True,
    )
    return sup.wait()
