"""REST API of API keys, for admins: /api/v1/keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response, status

from ..access.keys import KeyService, key_status, parse_duration
from ..errors import InvalidInput
from ..store.models import ApiKey
from . import problems
from .auth import ManageKeys
from .models import KeyCreate, KeyCreated, KeyList, KeyOut

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])

_ALWAYS = problems.responses(
    _401="No valid API key.",
    _403="The key's role may not manage keys.",
    _422="Invalid input; `errors` names each field.",
    _429="Over the rate limit; see Retry-After.",
    _503="SQL unreachable; nothing was changed.",
)
_NO_KEY = problems.responses(_404="No such key.")
_BODY = problems.responses(
    _400="The body cannot be read at all, e.g. it is not UTF-8.",
    _413="The body is larger than 64 KiB.",
)
KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$", description="The key's public id.")]


async def get_keys(request: Request) -> KeyService:
    return request.app.state.keys


KeysDep = Annotated[KeyService, Depends(get_keys)]


def to_out(key: ApiKey, keys: KeyService) -> KeyOut:
    return KeyOut(
        id=key.key_id, name=key.name, role=key.role, status=key_status(key, keys.clock()),
        created_at=key.created_at, expires_at=key.expires_at, revoked_at=key.revoked_at,
        last_used_at=key.last_used_at,
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=KeyCreated,
             responses={**_BODY, **problems.responses(_409="Name taken."), **_ALWAYS})
async def create_key(body: KeyCreate, response: Response, grant: ManageKeys, keys: KeysDep) -> KeyCreated:
    """Make an API key; the answer is the only time the whole key is shown."""
    lifetime = None
    if body.expires_in is not None:
        if body.expires_at is not None:
            raise InvalidInput("expires_in", "give expires_at or expires_in, not both")
        try:
            lifetime = parse_duration(body.expires_in)
        except ValueError as exc:
            raise InvalidInput("expires_in", str(exc)) from None
    key, token = await keys.create(name=body.name, role=body.role, expires_at=body.expires_at,
                                   lifetime=lifetime, by=grant.principal)
    response.headers["Location"] = f"/api/v1/keys/{key.key_id}"
    response.headers["Cache-Control"] = "no-store"
    return KeyCreated(**to_out(key, keys).model_dump(), key=token)


@router.get("", response_model=KeyList, responses=_ALWAYS)
async def list_keys(grant: ManageKeys, keys: KeysDep) -> KeyList:
    """List every key, revoked and expired ones included (never their secrets)."""
    return KeyList(data=[to_out(key, keys) for key in await keys.list()])


@router.get("/{key_id}", response_model=KeyOut, responses={**_NO_KEY, **_ALWAYS})
async def get_key(key_id: KeyId, grant: ManageKeys, keys: KeysDep) -> KeyOut:
    """Show one key."""
    return to_out(await keys.get(key_id), keys)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses={**_NO_KEY, **_ALWAYS})
async def revoke_key(key_id: KeyId, grant: ManageKeys, keys: KeysDep) -> Response:
    """Revoke a key: 401 from its next request on (on other replicas within LINKGATE_API_KEY_CACHE_TTL_SECONDS)."""
    await keys.revoke(key_id, by=grant.principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
