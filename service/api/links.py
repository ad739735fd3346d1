"""REST API of links: /api/v1/links."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from ..access.keys import KeyService
from ..errors import InvalidInput
from ..links import LinkService
from ..store.models import Link
from . import problems
from .auth import CreateLinks, DeleteLinks, ReadLinks, UpdateLinks
from .models import LinkCreate, LinkOut, LinkPage, LinkUpdate

router = APIRouter(prefix="/api/v1/links", tags=["links"])

# What can go wrong, per route; every error body is a Problem (RFC 9457).
_ALWAYS = problems.responses(
    _401="No valid API key.",
    _403="The key's role may not do this.",
    _422="Invalid input; `errors` names each field.",
    _429="Over the rate limit; see Retry-After.",
    _503="SQL unreachable; nothing was changed. Retry after Retry-After seconds.",
)
_BODY = problems.responses(
    _400="The body cannot be read at all, e.g. it is not UTF-8.",
    _413="The body is larger than 64 KiB.",
)
_NO_LINK = problems.responses(_404="No such link, or not one this key may see.")
_TAKEN = problems.responses(_409="Alias taken.")


async def get_links(request: Request) -> LinkService:
    """Async on purpose: FastAPI runs a plain def dependency in a worker thread."""
    return request.app.state.links


LinksDep = Annotated[LinkService, Depends(get_links)]


async def to_out(links: list[Link], service: LinkService, request: Request, *, new: bool = False) -> list[LinkOut]:
    """`new`: links just created, which have no visits yet (no query for them)."""
    keys: KeyService = request.app.state.keys
    names = await keys.names({k for link in links for k in (link.created_by_id, link.updated_by_id) if k})
    visits = {} if new else await request.app.state.visit_stats.visits_of([link.id for link in links])
    base = service.settings.public_base_url
    return [
        LinkOut(
            code=link.code,
            short_url=f"{base}/{link.code}",
            url=link.url,
            redirect_status=link.redirect_status,
            query=link.query_policy,
            created_at=link.created_at,
            updated_at=link.updated_at,
            created_by=names.get(link.created_by_id),
            updated_by=names.get(link.updated_by_id),
            visits=visits.get(link.id, 0),
        )
        for link in links
    ]


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=LinkOut, responses={**_BODY, **_TAKEN, **_ALWAYS}
)
async def create_link(
    body: LinkCreate, response: Response, grant: CreateLinks, links: LinksDep, request: Request
) -> LinkOut:
    """Create a short link, owned by the key that creates it."""
    link = await links.create(
        grant=grant, url=body.url, alias=body.alias, redirect_status=body.redirect_status, query=body.query
    )
    response.headers["Location"] = f"/api/v1/links/{link.code}"
    return (await to_out([link], links, request, new=True))[0]


@router.get("", response_model=LinkPage, responses=_ALWAYS)
async def list_links(
    grant: ReadLinks,
    links: LinksDep,
    request: Request,
    limit: Annotated[int | None, Query(ge=1, description="Page size (capped by the operator).")] = None,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page.")] = None,
) -> LinkPage:
    """List the links this key may see, newest first."""
    page, next_cursor = await links.list(grant=grant, limit=limit, cursor=cursor)
    return LinkPage(data=await to_out(page, links, request), next_cursor=next_cursor)


@router.get("/{code}", response_model=LinkOut, responses={**_NO_LINK, **_ALWAYS})
async def get_link(code: str, grant: ReadLinks, links: LinksDep, request: Request) -> LinkOut:
    """Show one link."""
    return (await to_out([await links.get(code, grant=grant)], links, request))[0]


@router.patch("/{code}", response_model=LinkOut, responses={**_BODY, **_NO_LINK, **_ALWAYS})
async def update_link(code: str, body: LinkUpdate, grant: UpdateLinks, links: LinksDep, request: Request) -> LinkOut:
    """Change a link's URL, redirect status or query policy."""
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    for required in ("url", "redirect_status"):
        if required in changes and changes[required] is None:
            raise InvalidInput(required, "cannot be null; leave it out to keep the current value")
    link = await links.update(code, grant=grant, **changes)
    return (await to_out([link], links, request))[0]


@router.delete("/{code}", status_code=status.HTTP_204_NO_CONTENT, responses={**_NO_LINK, **_ALWAYS})
async def delete_link(code: str, grant: DeleteLinks, links: LinksDep) -> Response:
    """Delete a link; its code answers 404 from then on and is never reused."""
    await links.delete(code, grant=grant)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
