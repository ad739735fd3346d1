"""Permission dependencies: each route names the object and action it needs, in one line.

The gate (service.access.gate) has authenticated the key before routing;
here the casbin policy decides whether the key's role may do the action,
and on which links. The result, a Grant, is what the use-cases take, and
its visibility is the filter every link query applies.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..access.gate import PRINCIPAL
from ..access.grant import Grant
from ..access.policy import Scope
from ..errors import Forbidden, Unauthenticated

# The OpenAPI document's security schemes ("Authorize" in /docs). They are
# added to the document (document_security), not declared as dependencies:
# the gate has read the headers already, and two more dependencies per
# request were measurable in a profile of creates.
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer lg_<id>_<secret>`"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key",
               "description": "`X-Api-Key: lg_<id>_<secret>`"},
}


def document_security(openapi: dict) -> dict:
    """Declare both schemes, and require one of them on every operation under /api."""
    openapi.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    for path, operations in openapi.get("paths", {}).items():
        if path.startswith("/api/"):
            for operation in operations.values():
                operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
    return openapi


def permission(obj: str, act: str, *, over: Scope = Scope.OWN, what: str | None = None):
    """A dependency granting `act` on `obj` to keys whose role the policy allows it.

    `over=Scope.ANY`: only roles granted it over every link (a figure of
    the whole service); `what` names the object in the 403 then.
    """

    async def grant(request: Request) -> Grant:
        principal = request.scope.get("state", {}).get(PRINCIPAL)
        if principal is None:  # only if a route were mounted outside /api
            raise Unauthenticated("Send an API key.")
        scope = request.app.state.permissions.scope(principal.role, obj, act)
        if scope is None or (over is Scope.ANY and scope is not Scope.ANY):
            raise Forbidden(principal.role, what or obj, act)
        return Grant(principal=principal, scope=scope)

    grant.__name__ = f"may_{act}_{'all_' if over is Scope.ANY else ''}{obj}"
    return grant


def optional_permission(obj: str, act: str):
    """Like `permission`, but a key without it gets None instead of 403 (the use-case decides)."""
    required = permission(obj, act)

    async def grant_or_none(request: Request) -> Grant | None:
        try:
            return await required(request)
        except Forbidden:
            return None

    grant_or_none.__name__ = f"maybe_{act}_{obj}"
    return grant_or_none


CreateLinks = Annotated[Grant, Depends(permission("links", "create"))]
ReadLinks = Annotated[Grant, Depends(permission("links", "read"))]
UpdateLinks = Annotated[Grant, Depends(permission("links", "update"))]
DeleteLinks = Annotated[Grant, Depends(permission("links", "delete"))]
ManageKeys = Annotated[Grant, Depends(permission("keys", "manage"))]
MayBlockLinks = Annotated[Grant | None, Depends(optional_permission("links", "block"))]
ReadStats = Annotated[Grant, Depends(permission("stats", "read"))]
ManageWebhooks = Annotated[Grant, Depends(permission("webhooks", "manage"))]
ReadServiceStats = Annotated[
    Grant, Depends(permission("stats", "read", over=Scope.ANY, what="the whole service's stats"))
]
