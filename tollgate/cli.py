"""The ``tollgate`` command.

Process commands (``up``, ``control-plane``, ``worker``, ``migrate``, ``snapshot export``,
``echo``) import the plane they run lazily, so ``tollgate worker`` never imports the control
plane, FastAPI or SQLAlchemy: a worker host needs only the data plane.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from tollgate import cli_certificates, cli_config, cli_resources, cli_usage, cli_webhooks
from tollgate.cli_openapi import register as register_openapi_commands

app = typer.Typer(help="Tollgate: an API gateway and load balancer.", no_args_is_help=True, add_completion=False)
snapshot_app = typer.Typer(help="Config snapshots (the worker's input).", no_args_is_help=True)
app.add_typer(snapshot_app, name="snapshot")

# Admin commands over the admin API (their own modules; each registers its sub-commands here).
cli_resources.register(app)
cli_certificates.register(app)
cli_config.register(app)
cli_usage.register(app)
cli_webhooks.register(app)


def _logging(level: str, fmt: str = "text") -> None:
    from tollgate.logformat import setup

    try:
        setup(level, fmt)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


LogLevel = Annotated[str, typer.Option("--log-level", envvar="TOLLGATE_LOG_LEVEL", help="debug|info|warning|error")]
LogFormat = Annotated[
    str, typer.Option("--log-format", envvar="TOLLGATE_LOG_FORMAT", help="text|json (process log, on stderr)")
]


@app.command("control-plane")
def control_plane(
    host: Annotated[str | None, typer.Option(help="Admin API address [TOLLGATE_ADMIN_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Admin API port [TOLLGATE_ADMIN_PORT]")] = None,
    log_level: LogLevel = "info",
    log_format: LogFormat = "text",
) -> None:
    """Run the control plane (admin API on 8001, snapshot distribution to workers)."""
    _logging(log_level, log_format)
    from dataclasses import replace

    from control_plane.server import serve
    from control_plane.settings import Settings

    settings = Settings.from_env()
    if host:
        settings = replace(settings, admin_host=host)
    if port:
        settings = replace(settings, admin_port=port)
    serve(settings)


@app.command()
def worker(
    control_plane_url: Annotated[
        str | None, typer.Option("--control-plane", envvar="TOLLGATE_CONTROL_PLANE_URL", help="Control plane URL")
    ] = None,
    control_plane_ca: Annotated[
        Path | None,
        typer.Option(
            "--control-plane-ca",
            envvar="TOLLGATE_CONTROL_PLANE_CA",
            help="PEM file of the CA an https control plane's certificate must chain to (default: system store)",
        ),
    ] = None,
    snapshot: Annotated[
        Path | None, typer.Option("--snapshot", help="Serve this snapshot file; no control plane (DB-less mode)")
    ] = None,
    host: Annotated[str, typer.Option(envvar="TOLLGATE_WORKER_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="TOLLGATE_WORKER_PORT")] = 8000,
    status_port: Annotated[
        int, typer.Option(envvar="TOLLGATE_STATUS_PORT", help="Status port (/healthz, /metrics); process i uses +i")
    ] = 8100,
    processes: Annotated[int, typer.Option(min=1, max=64, help="Worker processes sharing the port")] = 1,
    cache_dir: Annotated[Path, typer.Option(envvar="TOLLGATE_WORKER_CACHE_DIR")] = Path(".tollgate/worker"),
    node_id: Annotated[str, typer.Option(envvar="TOLLGATE_NODE_ID", help="Node id (default: random)")] = "",
    access_log: Annotated[
        str,
        typer.Option(
            envvar="TOLLGATE_ACCESS_LOG", help="JSON access log: '-' (stdout), a file path (appended to), or 'off'"
        ),
    ] = "-",
    redis_url: Annotated[
        str | None,
        typer.Option(envvar="TOLLGATE_REDIS_URL", help="Usage-plan counters in Redis (default: in-process memory)"),
    ] = None,
    limit_fail_mode: Annotated[
        str, typer.Option(envvar="TOLLGATE_LIMIT_FAIL_MODE", help="Redis unreachable: open (per-worker) | closed (503)")
    ] = "open",
    trusted_proxies: Annotated[
        str,
        typer.Option(
            envvar="TOLLGATE_TRUSTED_PROXIES",
            help="Proxies/load balancers whose X-Forwarded-For names the client: CIDRs or addresses, comma-separated",
        ),
    ] = "",
    tls_port: Annotated[
        int, typer.Option(envvar="TOLLGATE_TLS_PORT", help="HTTPS port (0: none); certificates come from the config")
    ] = 0,
    tls_cert: Annotated[
        Path | None,
        typer.Option(envvar="TOLLGATE_TLS_CERT", help="PEM certificate chain served when no certificate matches SNI"),
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(envvar="TOLLGATE_TLS_KEY", help="PEM private key of --tls-cert")
    ] = None,
    otlp_endpoint: Annotated[
        str | None,
        typer.Option(
            "--otlp-endpoint",
            envvar="TOLLGATE_OTLP_ENDPOINT",
            help="OTLP/HTTP traces URL for the tracing policy's spans (http://collector:4318/v1/traces);"
            " default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces",
        ),
    ] = None,
    log_level: LogLevel = "info",
    log_format: LogFormat = "text",
) -> None:
    """Run proxy worker process(es): traffic on 8000, status on 8100. SIGHUP reopens the access log."""
    # Until the worker installs its SIGHUP handler (reopen the access log), a SIGHUP must not end the
    # process; children of --processes inherit the ignore, so the supervisor may pass one on at once.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if access_log not in ("-", "off"):
        try:
            Path(access_log).open("ab").close()  # fail here, with a message, not in every child
        except OSError as exc:
            raise typer.BadParameter(f"cannot write the access log {access_log}: {exc.strerror}") from None
    if limit_fail_mode not in ("open", "closed"):
        raise typer.BadParameter("--limit-fail-mode must be open or closed")
    if redis_url:
        from data_plane.limits.redisurl import parse_redis_url

        try:
            parse_redis_url(redis_url)  # here once, with a message (the URL masked), rather than in each child
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    from data_plane.http.realip import parse_trusted  # the worker's own check, here once rather than in each child

    try:
        parse_trusted(trusted_proxies)
    except ValueError as exc:
        raise typer.BadParameter(f"--trusted-proxies: {exc}") from None
    if not control_plane_url and snapshot is None:
        raise typer.BadParameter("give --control-plane URL (or TOLLGATE_CONTROL_PLANE_URL) or --snapshot FILE")
    if (tls_cert is None) != (tls_key is None):
        raise typer.BadParameter("--tls-cert and --tls-key go together")
    if otlp_endpoint and not otlp_endpoint.startswith(("http://", "https://")):
        raise typer.BadParameter("--otlp-endpoint must be an http(s) URL")
    for path in (tls_cert, tls_key):
        if path is not None and not path.is_file():
            raise typer.BadParameter(f"{path}: no such file")
    if control_plane_ca is not None:
        import ssl

        from data_plane.tls.channel import channel_context

        try:
            channel_context(control_plane_ca)  # here once, with a message, rather than in each child's sync
        except (OSError, ssl.SSLError) as exc:
            raise typer.BadParameter(f"--control-plane-ca {control_plane_ca}: cannot load it ({exc})") from None
    if control_plane_url and not os.environ.get("TOLLGATE_CLUSTER_TOKEN") and snapshot is None:
        raise typer.BadParameter("TOLLGATE_CLUSTER_TOKEN must be set to talk to the control plane")
    if processes > 1:
        from tollgate.supervise import Child, Supervisor, python_module

        sup = Supervisor()
        shared_limits: Path | None = None
        if not redis_url:
            # One counters table for the N processes (data_plane/limits/shared.py): a plan's limits are
            # exact across them, as with Redis across machines.  Fresh at each start; the control
            # plane's usage seeds the quotas as for one process.
            from data_plane.limits.shared import create_table

            shared_limits = cache_dir / f"limits-{port}.shm"
            create_table(shared_limits)
        for i in range(processes):
            args = ["worker", "--host", host, "--port", str(port), "--status-port", str(status_port + i)]
            args += ["--cache-dir", str(cache_dir), "--log-level", log_level, "--log-format", log_format]
            args += ["--access-log", access_log]
            if control_plane_url:
                args += ["--control-plane", control_plane_url]
            if control_plane_ca is not None:
                args += ["--control-plane-ca", str(control_plane_ca)]
            if snapshot is not None:
                args += ["--snapshot", str(snapshot)]
            if node_id:
                args += ["--node-id", f"{node_id}-{i}"]
            args += ["--limit-fail-mode", limit_fail_mode]
            if trusted_proxies:
                args += ["--trusted-proxies", trusted_proxies]
            if tls_port:
                args += ["--tls-port", str(tls_port)]
            if tls_cert is not None and tls_key is not None:
                args += ["--tls-cert", str(tls_cert), "--tls-key", str(tls_key)]
            if otlp_endpoint:
                args += ["--otlp-endpoint", otlp_endpoint]
            # the Redis URL may hold a password: in the environment, never on a command line (ps)
            child_env = (
                {"TOLLGATE_REDIS_URL": redis_url} if redis_url else {"TOLLGATE_SHARED_LIMITS": str(shared_limits)}
            )
            sup.start(Child(f"worker {i}", python_module("tollgate", *args), env=child_env, hup=True))
        sys.exit(sup.wait())

    _logging(log_level, log_format)
    from data_plane.server import run_worker
    from data_plane.settings import WorkerSettings

    settings = WorkerSettings.from_env(
        host=host,
        port=port,
        status_port=status_port,
        control_plane_url=control_plane_url,
        control_plane_ca=control_plane_ca,
        snapshot_file=snapshot,
        cache_dir=cache_dir,
        node_id=node_id or None,
        access_log=access_log,
        redis_url=redis_url,
        limit_fail_mode=limit_fail_mode,
        trusted_proxies=trusted_proxies,
        tls_port=tls_port or None,
        tls_cert_file=str(tls_cert) if tls_cert is not None else None,
        tls_key_file=str(tls_key) if tls_key is not None else None,
        otlp_endpoint=otlp_endpoint or None,
    )
    run_worker(settings)


@app.command()
def up(
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes")] = 1,
    port: Annotated[int, typer.Option(help="Traffic port")] = 8000,
    admin_port: Annotated[int, typer.Option(help="Admin API port")] = 8001,
    demo_port: Annotated[int, typer.Option(help="Port of the demo echo backend")] = 9001,
    tls_port: Annotated[
        int, typer.Option(help="HTTPS port, with a self-signed certificate for localhost (0: no HTTPS)")
    ] = 8443,
    data_dir: Annotated[Path, typer.Option(envvar="TOLLGATE_DATA_DIR")] = Path(".tollgate"),
) -> None:
    """Everything embedded: control plane on SQLite, worker(s), a demo backend. Ctrl-C stops all."""
    from tollgate.embedded import run_embedded

    code = run_embedded(
        workers=workers, port=port, admin_port=admin_port, demo_port=demo_port, data_dir=data_dir, tls_port=tls_port
    )
    sys.exit(code)


@app.command()
def migrate(
    check: Annotated[
        bool,
        typer.Option("--check", help="Change nothing: exit 0 if the schema is at (or past) this release's, else 1"),
    ] = False,
    wait: Annotated[
        float,
        typer.Option(min=0, help="With --check: keep checking for up to this many seconds (a replica's init step)"),
    ] = 0.0,
    log_level: LogLevel = "info",
) -> None:
    """Apply database migrations (alembic upgrade head) to TOLLGATE_DATABASE_URL."""
    _logging(log_level)
    from control_plane.migrate import upgrade
    from control_plane.settings import Settings

    url = Settings.from_env().database_url
    if check:
        sys.exit(_wait_for_schema(url, wait))
    upgrade(url)
    typer.echo("database is at the newest schema revision")


def _wait_for_schema(url: str, wait: float) -> int:
    """``migrate --check``: Kubernetes runs it before each control-plane replica, so the replicas
    start only once the migration Job has run (they never migrate themselves, nor concurrently)."""
    import logging

    from sqlalchemy.exc import SQLAlchemyError

    from control_plane.migrate import schema_state

    logging.getLogger("alembic").setLevel(logging.WARNING)  # its set-up lines, every 2 s otherwise
    deadline = time.monotonic() + wait
    said = ""
    while True:
        try:
            state, db_heads, code_heads = schema_state(url)
            problem = f"database schema at {', '.join(sorted(db_heads)) or 'nothing'}, this release needs "
            problem += f"{', '.join(sorted(code_heads))}: run `tollgate migrate`"
        except SQLAlchemyError as exc:
            state, problem = "unreachable", f"database unreachable: {type(exc).__name__}"  # no URL: it has a password
        if state in ("current", "ahead"):
            typer.echo(f"database schema is {state}" + (" (a newer release migrated it)" if state == "ahead" else ""))
            return 0
        if time.monotonic() >= deadline:
            typer.echo(problem, err=True)
            return 1
        if problem != said:  # once per distinct reason, not every 2 s
            typer.echo(f"waiting up to {wait:g} s: {problem}", err=True)
            said = problem
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))


@snapshot_app.command("export")
def snapshot_export(
    output: Annotated[Path, typer.Option("-o", "--output", help="File to write ('-' for stdout)")] = Path("-"),
) -> None:
    """Write the current config snapshot (from TOLLGATE_DATABASE_URL) for `tollgate worker --snapshot`."""
    from control_plane.db import make_engine, make_session_factory
    from control_plane.secretbox import SecretBox
    from control_plane.settings import Settings, ensure_cluster_token, ensure_secret_key
    from control_plane.snapshots.build import build_snapshot

    settings = Settings.from_env()
    # Certificates' keys are opened with the secret key and sealed with the cluster token the worker holds.
    box, token = SecretBox(ensure_secret_key(settings)), ensure_cluster_token(settings)
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            snap = build_snapshot(session, box=box, cluster_token=token)
    finally:
        engine.dispose()
    data = snap.to_json()
    if str(output) == "-":
        sys.stdout.buffer.write(data + b"\n")
    else:
        tmp = output.with_name(f".{output.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, output)
        typer.echo(f"wrote revision {snap.revision} ({snap.hash[:12]}) to {output}", err=True)


@app.command()
def echo(
    port: Annotated[int, typer.Option()] = 9001,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    name: Annotated[str, typer.Option(help="Name reported in responses")] = "echo",
) -> None:
    """Run a small echo backend (answers with what it received, as JSON)."""
    from tollgate.echo import main as echo_main

    echo_main(["--host", host, "--port", str(port), "--name", name])


register_openapi_commands(app)  # `tollgate import`, `tollgate sdk` (admin API clients, own module)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
