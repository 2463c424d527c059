"""APIs and their routes, with the overlap rules both planes rely on.

* Two APIs conflict when their base paths are equal and their host sets intersect, or both match
  any host (empty list).  An any-host API next to a host-specific one is fine: the worker prefers
  the specific host.
* Two routes of one API conflict when their path templates have the same shape (parameter names
  do not matter: ``/items/{id}`` and ``/items/{item}`` match the same requests) and their method
  sets overlap (an empty set means any method, which overlaps everything).
* A usage plan's per-route throttle override names a route of the API by method + path template.
  Deleting or reshaping the last route that serves an override removes the override from its plans
  (as deleting an API removes it from the plans that grant it), in the same transaction: a plan
  never refers to a route that is not there, so a dump of it applies to an empty control plane.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from control_plane.certs import CertificateProblem, ca_bundle
from control_plane.errors import Conflict, Invalid, NotFound
from control_plane.models import Api, Route, Upstream, UsagePlanApi
from control_plane.schemas import ApiCreate, ApiUpdate, RouteCreate, RouteUpdate
from control_plane.services.common import apply_patch, integrity_as_conflict, paginate
from control_plane.services.revision import bump_revision
from data_plane.snapshot.paths import template_shape

_API_NULLABLE = frozenset(
    {
        "max_body_bytes",
        "key_query",
        "jwt_secret",
        "jwt_public_key",
        "jwt_issuer",
        "jwt_audience",
        "jwt_jwks_url",
        "mtls_ca_certificates",
        "policies",
    }
)
_ROUTE_NULLABLE = frozenset({"connect_timeout", "read_timeout", "total_timeout", "policies"})


def list_apis(*, session: Session, limit: int, offset: int) -> tuple[list[Api], int]:
    return paginate(session, select(Api).order_by(Api.created_at, Api.id), limit=limit, offset=offset)


def get_api(*, session: Session, api_id: str) -> Api:
    api = session.get(Api, api_id)
    if api is None:
        raise NotFound.of("api", api_id)
    return api


def create_api(*, session: Session, data: ApiCreate) -> Api:
    bump_revision(session)
    _check_api_name_free(session, data.name)
    check_api_overlap(session=session, base_path=data.base_path, hosts=data.hosts, exclude_id=None)
    api = Api(**data.model_dump())
    api.policies = api.policies or None  # {} is no policy
    check_auth_settings(api)
    session.add(api)
    with integrity_as_conflict(f"api name {data.name!r} is already used"):
        session.flush()
    return api


def update_api(*, session: Session, api_id: str, data: ApiUpdate) -> Api:
    bump_revision(session)
    api = get_api(session=session, api_id=api_id)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("name") not in (None, api.name):
        _check_api_name_free(session, changes["name"])
    base_path = changes.get("base_path") or api.base_path
    hosts = changes["hosts"] if changes.get("hosts") is not None else api.hosts
    check_api_overlap(session=session, base_path=base_path, hosts=hosts, exclude_id=api.id)
    apply_patch(api, changes, nullable=_API_NULLABLE)
    api.policies = api.policies or None
    check_auth_settings(api)
    with integrity_as_conflict("api name is already used"):
        session.flush()
    return api


def delete_api(*, session: Session, api_id: str) -> None:
    bump_revision(session)
    session.delete(get_api(session=session, api_id=api_id))  # routes go with it (FK ON DELETE CASCADE)
    session.flush()


def purge_cache(*, session: Session, api_id: str) -> tuple[Api, int]:
    """Bump the API's ``cache_epoch`` (workers drop its cached responses with the snapshot of the new
    revision, and every key they build carries the new epoch); the API and the revision."""
    revision = bump_revision(session)  # first: the row lock serialises this read-modify-write
    api = get_api(session=session, api_id=api_id)
    api.cache_epoch = (api.cache_epoch or 0) + 1
    session.flush()
    return api, revision


def check_auth_settings(api: Api) -> None:
    """The settings the API's auth mode needs are present and usable (checked on the merged row)."""
    if api.mtls_ca_certificates is not None:
        try:
            api.mtls_ca_certificates = ca_bundle(api.mtls_ca_certificates, "mtls_ca_certificates")
        except CertificateProblem as exc:
            raise Invalid(exc.field, exc.message) from None
    if api.auth == "mtls" and not api.mtls_ca_certificates:
        raise Invalid("mtls_ca_certificates", "auth mtls needs mtls_ca_certificates (PEM CA certificates)")
    if api.auth != "jwt":
        return
    algorithms = list(api.jwt_algorithms or [])
    if not algorithms:
        raise Invalid("jwt_algorithms", "auth jwt needs at least one of HS256, RS256, ES256")
    if "HS256" in algorithms and not api.jwt_secret:
        raise Invalid("jwt_secret", "HS256 needs jwt_secret")
    asymmetric = [a for a in algorithms if a != "HS256"]
    if api.jwt_jwks_url is not None:
        # One source of public keys: a JWKS replaces jwt_public_key (and is never used for HS256).
        if api.jwt_public_key is not None:
            raise Invalid("jwt_jwks_url", "set jwt_jwks_url or jwt_public_key, not both")
        if not asymmetric:
            raise Invalid("jwt_jwks_url", "jwt_jwks_url needs RS256 or ES256 in jwt_algorithms")
        return
    if asymmetric:
        if not api.jwt_public_key:
            raise Invalid("jwt_public_key", f"{asymmetric[0]} needs jwt_public_key (PEM)")
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        try:
            key = load_pem_public_key(api.jwt_public_key.encode())
        except (ValueError, TypeError, UnicodeError):
            raise Invalid("jwt_public_key", "jwt_public_key is not a PEM public key") from None
        wanted = {"RS256": rsa.RSAPublicKey, "ES256": ec.EllipticCurvePublicKey}
        for alg in asymmetric:
            if not isinstance(key, wanted[alg]):
                raise Invalid("jwt_public_key", f"jwt_public_key is not a key for {alg}")


def _check_api_name_free(session: Session, name: str) -> None:
    if session.execute(select(exists().where(Api.name == name))).scalar():
        raise Conflict(f"api name {name!r} is already used")


def check_api_overlap(*, session: Session, base_path: str, hosts: Iterable[str], exclude_id: str | None) -> None:
    """Conflict when another API (not ``exclude_id``) serves ``base_path`` on a shared host (or both on
    any host); the OpenAPI import checks with it too."""
    wanted = set(hosts)
    stmt = select(Api).where(Api.base_path == base_path)
    if exclude_id is not None:
        stmt = stmt.where(Api.id != exclude_id)
    for other in session.execute(stmt).scalars():
        theirs = set(other.hosts)
        if (not wanted and not theirs) or wanted & theirs:
            shared = ", ".join(sorted(wanted & theirs)) or "any host"
            raise Conflict(f"api {other.name!r} already serves base path {base_path!r} on {shared}")


# ---------------------------------------------------------------------------- routes


def list_routes(*, session: Session, api_id: str, limit: int, offset: int) -> tuple[list[Route], int]:
    get_api(session=session, api_id=api_id)
    stmt = select(Route).where(Route.api_id == api_id).order_by(Route.created_at, Route.id)
    return paginate(session, stmt, limit=limit, offset=offset)


def get_route(*, session: Session, api_id: str, route_id: str) -> Route:
    route = session.get(Route, route_id)
    if route is None or route.api_id != api_id:
        get_api(session=session, api_id=api_id)
        raise NotFound.of("route", route_id)
    return route


def create_route(*, session: Session, api_id: str, data: RouteCreate) -> Route:
    bump_revision(session)
    get_api(session=session, api_id=api_id)
    _check_upstream_exists(session, data.upstream_id)
    _check_route_overlap(session, api_id, data.path, data.methods, exclude_id=None)
    route = Route(api_id=api_id, **data.model_dump())
    route.policies = route.policies or None
    session.add(route)
    with integrity_as_conflict("the route's api or upstream was deleted concurrently"):
        session.flush()
    return route


def update_route(*, session: Session, api_id: str, route_id: str, data: RouteUpdate) -> Route:
    bump_revision(session)
    route = get_route(session=session, api_id=api_id, route_id=route_id)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("upstream_id") is not None:
        _check_upstream_exists(session, changes["upstream_id"])
    path = changes.get("path") or route.path
    methods = changes["methods"] if changes.get("methods") is not None else route.methods
    _check_route_overlap(session, api_id, path, methods, exclude_id=route.id)
    apply_patch(route, changes, nullable=_ROUTE_NULLABLE)
    route.policies = route.policies or None
    with integrity_as_conflict("the route's upstream was deleted concurrently"):
        session.flush()
    if "path" in changes or "methods" in changes:
        drop_dangling_overrides(session=session, api_id=api_id)
    return route


def delete_route(*, session: Session, api_id: str, route_id: str) -> None:
    bump_revision(session)
    session.delete(get_route(session=session, api_id=api_id, route_id=route_id))
    session.flush()
    drop_dangling_overrides(session=session, api_id=api_id)


def override_matches(method: str, path: str, routes: Iterable[tuple[str, list[str]]]) -> bool:
    """Whether a route of ``routes`` (path template, methods; none: any) serves an override's method + path."""
    return any(p == path and (not methods or method in methods) for p, methods in routes)


def drop_dangling_overrides(*, session: Session, api_id: str) -> list[tuple[str, str]]:
    """Remove the plans' overrides of ``api_id`` that no route of it serves any more (after a route was
    deleted, moved or narrowed); the (method, path) removed.  Runs under the caller's revision bump."""
    routes = [(r.path, list(r.methods)) for r in session.execute(select(Route).where(Route.api_id == api_id)).scalars()]
    removed: list[tuple[str, str]] = []
    for entry in session.execute(select(UsagePlanApi).where(UsagePlanApi.api_id == api_id)).scalars():
        kept = [o for o in entry.overrides if override_matches(o["method"], o["path"], routes)]
        if len(kept) != len(entry.overrides):
            removed += [(o["method"], o["path"]) for o in entry.overrides if o not in kept]
            entry.overrides = kept
    session.flush()
    return removed


def _check_upstream_exists(session: Session, upstream_id: str) -> None:
    if session.get(Upstream, upstream_id) is None:
        raise Invalid("upstream_id", f"upstream {upstream_id!r} does not exist")


def _check_route_overlap(
    session: Session, api_id: str, path: str, methods: Iterable[str], *, exclude_id: str | None
) -> None:
    shape, wanted = template_shape(path), set(methods)
    stmt = select(Route).where(Route.api_id == api_id)
    if exclude_id is not None:
        stmt = stmt.where(Route.id != exclude_id)
    for other in session.execute(stmt).scalars():
        if template_shape(other.path) != shape:
            continue
        theirs = set(other.methods)
        if not wanted or not theirs or wanted & theirs:
            both = ", ".join(sorted(wanted & theirs)) or "any method"
            raise Conflict(f"route {other.path!r} of this api already handles {both} on the same path")
