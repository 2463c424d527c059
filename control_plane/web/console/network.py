"""Console pages for upstreams (targets, health per worker) and APIs (routes): create, edit, delete."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from control_plane.api.deps import Writer
from control_plane.schemas import (
    ApiCreate,
    ApiUpdate,
    RouteCreate,
    RouteUpdate,
    TargetCreate,
    UpstreamCreate,
    UpstreamUpdate,
)
from control_plane.services import apis as apis_svc
from control_plane.services import nodes as nodes_svc
from control_plane.services import upstreams as upstreams_svc
from control_plane.web.console.core import ALL, PATH, C, Csrf, Ctx, F, act, page, router
from control_plane.web.pages import lines

# ---------------------------------------------------------------------------- upstreams


@router.get("/upstreams")
def upstreams_page(request: Request, ctx: C) -> HTMLResponse:
    return _upstreams_page(request, ctx)


def _upstreams_page(
    request: Request, ctx: Ctx, errors: list[str] | None = None, status_code: int = 200
) -> HTMLResponse:
    with request.app.state.sessions() as s:
        rows, _ = upstreams_svc.list_upstreams(session=s, limit=ALL, offset=0)
        items = [(u, len(u.targets)) for u in rows]
    return page(request, ctx, "upstreams.html", status_code, upstreams=items, errors=errors or [])


@router.post("/upstreams")
def create_upstream(
    request: Request, ctx: C, name: F, algorithm: F = "round_robin", targets: F = "", csrf: Csrf = ""
) -> Response:
    def do(w: Writer) -> str:
        row = upstreams_svc.create_upstream(
            session=w.session, data=UpstreamCreate.model_validate({"name": name, "algorithm": algorithm})
        )
        for item in lines(targets):
            host, _, port = item.rpartition(":")
            upstreams_svc.create_target(
                session=w.session, upstream_id=row.id, data=TargetCreate.model_validate({"host": host, "port": port})
            )
        w.commit(row.id)
        return f"{PATH}/upstreams/{row.id}"

    return act(request, ctx, csrf, do, lambda m, st: _upstreams_page(request, ctx, m, st))


@router.get("/upstreams/{upstream_id}")
def upstream_page(request: Request, ctx: C, upstream_id: str) -> HTMLResponse:
    return _upstream_page(request, ctx, upstream_id)


def _upstream_page(
    request: Request, ctx: Ctx, upstream_id: str, errors: list[str] | None = None, status_code: int = 200
) -> HTMLResponse:
    with request.app.state.sessions() as s:
        row = upstreams_svc.get_upstream(session=s, upstream_id=upstream_id)
        health = nodes_svc.upstream_health(session=s, upstream_id=upstream_id)
        return page(request, ctx, "upstream.html", status_code, u=row, health=health, errors=errors or [])


@router.post("/upstreams/{upstream_id}")
def edit_upstream(request: Request, ctx: C, upstream_id: str, name: F, algorithm: F, csrf: Csrf = "") -> Response:
    def do(w: Writer) -> str:
        data = UpstreamUpdate.model_validate({"name": name, "algorithm": algorithm})
        upstreams_svc.update_upstream(session=w.session, upstream_id=upstream_id, data=data)
        w.commit()
        return f"{PATH}/upstreams/{upstream_id}"

    return act(request, ctx, csrf, do, lambda m, st: _upstream_page(request, ctx, upstream_id, m, st))


@router.post("/upstreams/{upstream_id}/delete")
def delete_upstream(request: Request, ctx: C, upstream_id: str, csrf: Csrf = "") -> Response:
    def do(w: Writer) -> str:
        upstreams_svc.delete_upstream(session=w.session, upstream_id=upstream_id)
        w.commit()
        return f"{PATH}/upstreams"

    return act(request, ctx, csrf, do, lambda m, st: _upstream_page(request, ctx, upstream_id, m, st))


@router.post("/upstreams/{upstream_id}/targets")
def add_target(
    request: Request, ctx: C, upstream_id: str, host: F, port: F, weight: F = "100", csrf: Csrf = ""
) -> Response:
    def do(w: Writer) -> str:
        data = TargetCreate.model_validate({"host": host, "port": port, "weight": weight})
        row = upstreams_svc.create_target(session=w.session, upstream_id=upstream_id, data=data)
        w.commit(row.id)
        return f"{PATH}/upstreams/{upstream_id}"

    return act(request, ctx, csrf, do, lambda m, st: _upstream_page(request, ctx, upstream_id, m, st))


@router.post("/upstreams/{upstream_id}/targets/{target_id}/delete")
def delete_target(request: Request, ctx: C, upstream_id: str, target_id: str, csrf: Csrf = "") -> Response:
    def do(w: Writer) -> str:
        upstreams_svc.delete_target(session=w.session, upstream_id=upstream_id, target_id=target_id)
        w.commit()
        return f"{PATH}/upstreams/{upstream_id}"

    return act(request, ctx, csrf, do, lambda m, st: _upstream_page(request, ctx, upstream_id, m, st))


# ---------------------------------------------------------------------------- APIs and routes


@router.get("/apis")
def apis_page(request: Request, ctx: C) -> HTMLResponse:
    return _apis_page(request, ctx)


def _apis_page(request: Request, ctx: Ctx, errors: list[str] | None = None, status_code: int = 200) -> HTMLResponse:
    with request.app.state.sessions() as s:
        rows, _ = apis_svc.list_apis(session=s, limit=ALL, offset=0)
        return page(request, ctx, "apis.html", status_code, apis=rows, errors=errors or [])


@router.post("/apis")
def create_api(
    request: Request, ctx: C, name: F, base_path: F = "/", hosts: F = "", auth: F = "none", csrf: Csrf = ""
) -> Response:
    def do(w: Writer) -> str:
        data = ApiCreate.model_validate({"name": name, "base_path": base_path, "hosts": lines(hosts), "auth": auth})
        row = apis_svc.create_api(session=w.session, data=data)
        w.commit(row.id)
        return f"{PATH}/apis/{row.id}"

    return act(request, ctx, csrf, do, lambda m, st: _apis_page(request, ctx, m, st))


@router.get("/apis/{api_id}")
def api_page(request: Request, ctx: C, api_id: str) -> HTMLResponse:
    return _api_page(request, ctx, api_id)


def _api_page(
    request: Request, ctx: Ctx, api_id: str, errors: list[str] | None = None, status_code: int = 200
) -> HTMLResponse:
    with request.app.state.sessions() as s:
        row = apis_svc.get_api(session=s, api_id=api_id)
        routes, _ = apis_svc.list_routes(session=s, api_id=api_id, limit=ALL, offset=0)
        ups, _ = upstreams_svc.list_upstreams(session=s, limit=ALL, offset=0)
        return page(request, ctx, "api.html", status_code, api=row, routes=routes, upstreams=ups, errors=errors or [])


@router.post("/apis/{api_id}")
def edit_api(
    request: Request, ctx: C, api_id: str, name: F, base_path: F, hosts: F = "", auth: F = "none", csrf: Csrf = ""
) -> Response:
    def do(w: Writer) -> str:
        data = ApiUpdate.model_validate({"name": name, "base_path": base_path, "hosts": lines(hosts), "auth": auth})
        apis_svc.update_api(session=w.session, api_id=api_id, data=data)
        w.commit()
        return f"{PATH}/apis/{api_id}"

    return act(request, ctx, csrf, do, lambda m, st: _api_page(request, ctx, api_id, m, st))


@router.post("/apis/{api_id}/delete")
def delete_api(request: Request, ctx: C, api_id: str, csrf: Csrf = "") -> Response:
    def do(w: Writer) -> str:
        apis_svc.delete_api(session=w.session, api_id=api_id)
        w.commit()
        return f"{PATH}/apis"

    return act(request, ctx, csrf, do, lambda m, st: _api_page(request, ctx, api_id, m, st))


@router.post("/apis/{api_id}/routes")
def add_route(
    request: Request, ctx: C, api_id: str, path: F, upstream_id: F, methods: F = "", csrf: Csrf = ""
) -> Response:
    def do(w: Writer) -> str:
        data = RouteCreate.model_validate(
            {"path": path, "upstream_id": upstream_id, "methods": [m.upper() for m in lines(methods)]}
        )
        row = apis_svc.create_route(session=w.session, api_id=api_id, data=data)
        w.commit(row.id)
        return f"{PATH}/apis/{api_id}"

    return act(request, ctx, csrf, do, lambda m, st: _api_page(request, ctx, api_id, m, st))


@router.post("/apis/{api_id}/routes/{route_id}")
def edit_route(
    request: Request, ctx: C, api_id: str, route_id: str, path: F, upstream_id: F, methods: F = "", csrf: Csrf = ""
) -> Response:
    def do(w: Writer) -> str:
        data = RouteUpdate.model_validate(
            {"path": path, "upstream_id": upstream_id, "methods": [m.upper() for m in lines(methods)]}
        )
        apis_svc.update_route(session=w.session, api_id=api_id, route_id=route_id, data=data)
        w.commit()
        return f"{PATH}/apis/{api_id}"

    return act(request, ctx, csrf, do, lambda m, st: _api_page(request, ctx, api_id, m, st))


@router.post("/apis/{api_id}/routes/{route_id}/delete")
def delete_route(request: Request, ctx: C, api_id: str, route_id: str, csrf: Csrf = "") -> Response:
    def do(w: Writer) -> str:
        apis_svc.delete_route(session=w.session, api_id=api_id, route_id=route_id)
        w.commit()
        return f"{PATH}/apis/{api_id}"

    return act(request, ctx, csrf, do, lambda m, st: _api_page(request, ctx, api_id, m, st))
