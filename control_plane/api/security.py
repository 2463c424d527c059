"""Admin API access control: every ``/v1`` request carries ``Authorization: Bearer <admin token>``.

No, unknown or revoked token -> 401 (``WWW-Authenticate: Bearer``); a ``viewer`` token may only
read (GET/HEAD), anything else -> 403.  The caller is left in ``request.state.principal`` for the
audit log.  The cluster token opens only ``/cluster/v1`` and an admin token only ``/v1``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from control_plane.schemas import ErrorDetail
from control_plane.services import admin as svc

_bearer = HTTPBearer(auto_error=False, scheme_name="adminToken", description="admin API token (role admin or viewer)")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorDetail, "description": "admin token missing, unknown or revoked"},
    403: {"model": ErrorDetail, "description": "the token's role may not do this (viewer writing)"},
}


def require_admin(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> svc.Principal:
    principal = None
    if credentials is not None and credentials.scheme.lower() == "bearer" and credentials.credentials:
        with request.app.state.sessions() as session:
            principal = svc.authenticate(session=session, token=credentials.credentials)
    if principal is None:
        # No token and a wrong one are different mistakes with different fixes: say which (never the token).
        sent = credentials is not None and bool(credentials.credentials)
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="invalid admin token (unknown or revoked)" if sent else "admin token required (none was sent)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if principal.role != "admin" and request.method not in READ_METHODS:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=f"role {principal.role!r} may only read")
    request.state.principal = principal
    return principal
