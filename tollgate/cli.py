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
from typing import Annotated, Any

import typer

from tollgate import cli_admin, cli_certificates, cli_config, cli_resources, cli_usage, cli_webhooks
from tollgate.cli_openapi import register as register_openapi_commands

app = typer.Typer(help="Tollgate: an API gateway and load balancer.", no_args_is_help=True, add_completion=False)
snapshot_app = typer.Typer(help="Config snapshots (the worker's input).", no_args_is_help=True)
app.add_typer(snapshot_app, name="snapshot")

# Admin commands over the admin API (their own modules; each registers its sub-commands here).
cli_resources.register(app, cli_admin.EXTRA)
cli_certificates.register(app)
cli_config.register(app)
for _name, _command in cli_admin.USAGE.items():
    cli_usage.usage_app.command(_name)(_command)
cli_usage.register(app)
cli_webhooks.register(app)
cli_admin.register(app)


@app.callback()
def _global_options(
    ctx: typer.Context,
    url: Annotated[
        str | None, typer.Option("--url", help="Admin API URL [TOLLGATE_ADMIN_URL]", show_default=False)
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="Admin token [TOLLGATE_ADMIN_TOKEN, else <data_dir>/admin-token]",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="table | json | yaml (admin commands)", show_default=False)
    ] = None,
) -> None:
    """Tollgate: an API gateway and load balancer."""
    # The admin commands' --url, --token and -o work before the command too: given here, they become the
    # defaults of every command's own options (an option after the command still wins).
    given = {k: v for k, v in {"url": url, "token": token, "output": output}.items() if v is not None}
    if given:
        ctx.default_map = _defaults_for(ctx.command, given)


def _defaults_for(command: Any, given: dict[str, str]) -> dict[str, Any]:
    """``default_map`` for ``command`` and every command below it (Typer's own click: duck-typed)."""
    subcommands = getattr(command, "commands", None)
    if subcommands is not None:
        return {name: _defaults_for(sub, given) for name, sub in subcommands.items()}
    out: dict[str, Any] = {}
    for param in command.params:
        if param.name not in given:
            continue
        value = given[param.name]
        if param.name == "output" and value not in (getattr(param.type, "choices", None) or ()):
            continue  # `-o` of another meaning (`snapshot export -o FILE`) or a format the command lacks
        out[param.name] = value
    return out


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
    port_check: Annotated[
        bool, typer.Option("--port-check/--no-port-check", hidden=True, help="check the ports are free first")
    ] = True,
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
        # On the control plane's machine the token it generated is in the same data dir: use it (the
        # children of --processes and the worker settings read it from the environment).
        token_file = Path(os.environ.get("TOLLGATE_DATA_DIR") or ".tollgate") / "cluster-token"
        try:
            os.environ["TOLLGATE_CLUSTER_TOKEN"] = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            pass
        if not os.environ.get("TOLLGATE_CLUSTER_TOKEN"):
            raise typer.BadParameter(
                f"set TOLLGATE_CLUSTER_TOKEN to talk to the control plane (the control plane keeps it in "
                f"<data_dir>/cluster-token; {token_file} does not exist here)"
            )
    if port_check:
        from tollgate.ports import busy_message

        status_host = os.environ.get("TOLLGATE_STATUS_HOST", "127.0.0.1")
        checks = [(host, port, "--port / TOLLGATE_WORKER_PORT")]
        checks += [(status_host, status_port + i, "--status-port / TOLLGATE_STATUS_PORT") for i in range(processes)]
        checks += [(host, tls_port, "--tls-port / TOLLGATE_TLS_PORT")]
        problem = busy_message(checks)
        if problem:
            typer.echo(f"tollgate worker: {problem}", err=True)
            raise typer.Exit(1)
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
            args += ["--access-log", access_log, "--no-port-check"]  # checked here; the children share them
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
    url: Annotated[str | None, typer.Option("--url", help="Admin API URL [TOLLGATE_ADMIN_URL]")] = None,
    token: Annotated[str | None, typer.Option("--token", help="Admin token (role admin)")] = None,
) -> None:
    """Write the current config snapshot (from the control plane's admin API) for `tollgate worker --snapshot`."""
    # Through the admin API, not the database: the control plane knows its database, secret key and
    # cluster token; a wrong TOLLGATE_DATABASE_URL here used to print a traceback and leave an empty file.
    from tollgate import render
    from tollgate.adminclient import AdminClient, AdminError

    try:
        with AdminClient(url, token) as client:
            response = client.send("GET", "/v1/config/snapshot")
    except AdminError as exc:
        render.error(exc)
        raise typer.Exit(1) from None
    data = response.content
    revision, digest = response.headers.get("x-tollgate-revision", "?"), response.headers.get("x-tollgate-hash", "")
    if str(output) == "-":
        sys.stdout.buffer.write(data + b"\n")
    else:
        tmp = output.with_name(f".{output.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, output)
        typer.echo(f"wrote revision {revision} ({digest[:12]}) to {output}", err=True)


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
