"""The console's overview (workers, revision, traffic), audit log and declarative config pages."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUpload

from control_plane.api.deps import Writer
from control_plane.config_document import ApplyRequest
from control_plane.models import AuditEntry, UsageHourly
from control_plane.services import apis as apis_svc
from control_plane.services import declarative as declarative_svc
from control_plane.services import nodes as nodes_svc
from control_plane.services import usage as usage_svc
from control_plane.web.charts import bar_chart
from control_plane.web.console.core import ALL, C, Ctx, act, page, router

# ---------------------------------------------------------------------------- overview


@router.get("/")
async def overview(request: Request, ctx: C) -> HTMLResponse:
    snapshot = await request.app.state.publisher.current()
    data = await run_in_threadpool(_overview_data, request, snapshot.hash)
    return page(request, ctx, "overview.html", revision=snapshot.revision, **data)


def _overview_data(request: Request, current_hash: str) -> dict[str, Any]:
    since = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    with request.app.state.sessions() as s:
        nodes, _ = nodes_svc.list_nodes(session=s, current_hash=current_hash, limit=ALL, offset=0)
        apis, _ = apis_svc.list_apis(session=s, limit=ALL, offset=0)
        rows = s.execute(
            select(UsageHourly.api_id, UsageHourly.status_class, func.sum(UsageHourly.count))
            .where(UsageHourly.hour >= since)
            .group_by(UsageHourly.api_id, UsageHourly.status_class)
        ).all()
        hourly = s.execute(
            select(UsageHourly.hour, func.sum(UsageHourly.count))
            .where(UsageHourly.hour >= since)
            .group_by(UsageHourly.hour)
        ).all()
        refused = usage_svc.refusals_since(session=s, since=since)
    per_api: dict[str, dict[str, Any]] = defaultdict(lambda: {"requests": 0, "errors": 0, "refused": 0, "why": ""})
    for api_id, status_class, n in rows:
        per_api[api_id]["requests"] += int(n)
        if status_class and not status_class.startswith("2") and not status_class.startswith("3"):
            per_api[api_id]["errors"] += int(n)
    for api_id, by_status in refused.items():
        per_api[api_id]["refused"] = sum(by_status.values())
        per_api[api_id]["why"] = ", ".join(f"{st}: {n}" for st, n in sorted(by_status.items()))
    by_hour = {h.replace(tzinfo=UTC) if h.tzinfo is None else h: int(n) for h, n in hourly}
    points = [
        ((since + timedelta(hours=i)).strftime("%H:00"), by_hour.get(since + timedelta(hours=i), 0)) for i in range(24)
    ]
    names = {a.id: a.name for a in apis}
    return {
        "nodes": nodes,
        "api_counts": sorted(((names.get(k, k), v) for k, v in per_api.items()), key=lambda kv: kv[0]),
        "chart": bar_chart(points, title="Requests per hour, last 24 hours (all APIs)"),
    }


# ---------------------------------------------------------------------------- audit log


@router.get("/audit")
def audit_page(
    request: Request, ctx: C, who: str = "", method: str = "", path: str = "", since: str = ""
) -> HTMLResponse:
    stmt = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(500)
    if who:
        stmt = stmt.where(AuditEntry.token_name.contains(who, autoescape=True))
    if method:
        stmt = stmt.where(AuditEntry.method == method.upper())
    if path:
        stmt = stmt.where(AuditEntry.path.contains(path, autoescape=True))
    errors = []
    if since:
        try:
            stmt = stmt.where(AuditEntry.at >= datetime.fromisoformat(since).replace(tzinfo=UTC))
        except ValueError:
            errors.append("since: not a date (YYYY-MM-DD)")
    with request.app.state.sessions() as s:
        rows = s.execute(stmt).scalars().all()
        return page(
            request,
            ctx,
            "audit.html",
            entries=rows,
            errors=errors,
            filters={"who": who, "method": method, "path": path, "since": since},
        )


# ---------------------------------------------------------------------------- declarative config


@router.get("/config")
def config_page(request: Request, ctx: C) -> HTMLResponse:
    with request.app.state.sessions() as s:
        current = declarative_svc.export_document(session=s)
    text = yaml.safe_dump(current.model_dump(mode="json", exclude_none=True), sort_keys=False)
    return page(request, ctx, "config.html", document=text, changes=None, errors=[], applied=None)


@router.post("/config")
async def config_submit(request: Request, ctx: C) -> Response:
    async with request.form() as form:  # closes the upload's spooled file
        csrf = str(form.get("csrf") or "")
        upload = form.get("file")
        text = str(form.get("document") or "")
        if isinstance(upload, StarletteUpload) and upload.filename:
            text = (await upload.read(2_000_000)).decode("utf-8", "replace")
        apply = form.get("action") == "apply"
        prune = form.get("prune") == "on"
    return await run_in_threadpool(_config_run, request, ctx, csrf, text, apply, prune)


def _config_run(request: Request, ctx: Ctx, csrf: str, text: str, apply: bool, prune: bool) -> Response:
    def show(errors: list[str], status_code: int, changes: Any = None, applied: Any = None) -> HTMLResponse:
        return page(
            request, ctx, "config.html", status_code, document=text, changes=changes, errors=errors, applied=applied
        )

    def do(w: Writer) -> HTMLResponse:
        try:
            parsed = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            return show([f"not YAML: {exc}"], 422)
        body = ApplyRequest.model_validate({"config": parsed, "prune": prune, "dry_run": not apply})
        result = declarative_svc.apply_config(
            session=w.session, doc=body.config, prune=body.prune, dry_run=body.dry_run, box=request.app.state.secret_box
        )
        if result.changed:
            w.commit()
        else:
            w.session.rollback()
        return show([], 200, changes=result.changes, applied=result if apply else None)

    return act(request, ctx, csrf, do, lambda m, st: show(m, st))
