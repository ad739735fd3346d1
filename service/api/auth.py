"""Permission dependencies: each route names the object and action it needs, in one line.

The gate (service.access.gate) has authenticated the key before routing;
here the casbin policy decides whether the key's role may do the action,
and on which links. The result, a Grant, is what the use-cases take, and
its visibility is the filter every link query applies.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer

from ..access.gate import PRINCIPAL
from ..access.grant import Grant
from ..errors import Forbidden, Unauthenticated

# Declared for the OpenAPI document ("Authorize" in /docs); the gate reads the headers itself.
_bearer = HTTPBearer(auto_error=False, scheme_name="bearer",
                     description="`Authorization: Bearer lg_<id>_<secret>`")
_api_key = APIKeyHeader(name="X-Api-Key", auto_error=False, scheme_name="apiKey",
                        description="`X-Api-Key: lg_<id>_<secret>`")


def permission(obj: str, act: str):
    """A dependency granting `act` on `obj` to keys whose role the policy allows it."""

    async def grant(
        request: Request,
        _bearer_credential=Security(_bearer),
        _api_key_credential=Security(_api_key),
    ) -> Grant:
        principal = request.scope.get("state", {}).get(PRINCIPAL)
        if principal is None:  # only if a route were mounted outside /api
            raise Unauthenticated("Send an API key.")
        scope = request.app.state.permissions.scope(principal.role, obj, act)
        if scope is None:
            raise Forbidden(principal.role, obj, act)
        return Grant(principal=principal, scope=scope)

    grant.__name__ = f"may_{act}_{obj}"
    return grant


CreateLinks = Annotated[Grant, Depends(permission("links", "create"))]
ReadLinks = Annotated[Grant, Depends(permission("links", "read"))]
UpdateLinks = Annotated[Grant, Depends(permission("links", "update"))]
DeleteLinks = Annotated[Grant, Depends(permission("links", "delete"))]
ManageKeys = Annotated[Grant, Depends(permission("keys", "manage"))]
