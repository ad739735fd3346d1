"""REST API of links: /api/v1/links."""

from __future__ import annotations

import asyncio

from typing import Annotated, Literal

from pydantic import AwareDatetime

from fastapi import APIRouter, Depends, Query, Request, Response, status

from ..access.keys import KeyService
from ..errors import InvalidInput
from ..lifecycle.state import LinkFlags, normal_tags, status_of
from ..links import LinkService, in_utc
from ..query_filter import QueryPolicy
from ..store.sql import LinkFilter
from ..store.models import Link
from . import problems
from .auth import CreateLinks, DeleteLinks, MayBlockLinks, ReadLinks, UpdateLinks
from .models import BatchItem, BatchRequest, BatchResult, LinkCreate, LinkOut, LinkPage, LinkUpdate, TagCount, TagList

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
    tags = await service.tags(links)
    visits = {} if new else await request.app.state.visit_stats.visits_of([link.id for link in links])
    base = service.settings.public_base_url
    now = service.clock()
    # model_construct: the fields come from the database; FastAPI validates the answer once more anyway.
    return [
        LinkOut.model_construct(
            code=link.code,
            short_url=f"{base}/{link.code}",
            url=link.url,
            redirect_status=link.redirect_status,
            query=QueryPolicy.model_validate(link.query_policy) if link.query_policy else None,
            created_at=link.created_at,
            updated_at=link.updated_at,
            created_by=names.get(link.created_by_id),
            updated_by=names.get(link.updated_by_id),
            status=status_of(link, now).value,
            title=link.title,
            tags=tags.get(link.id, []),
            valid_since=link.valid_since,
            valid_until=link.valid_until,
            max_visits=link.max_visits,
            visits_counted=link.visit_count or 0,
            disabled=bool((link.flags or 0) & LinkFlags.DISABLED),
            blocked=bool((link.flags or 0) & LinkFlags.BLOCKED),
            fallback_url=link.fallback_url,
            password_protected=link.protected,
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
    link = await links.create(grant=grant, **body.model_dump(exclude_unset=True, exclude={"query"}),
                              query=body.query)
    response.headers["Location"] = f"/api/v1/links/{link.code}"
    return (await to_out([link], links, request, new=True))[0]


StatusName = Literal["active", "scheduled", "expired", "exhausted", "disabled", "blocked"]


@router.get("", response_model=LinkPage, responses=_ALWAYS)
async def list_links(
    grant: ReadLinks,
    links: LinksDep,
    request: Request,
    limit: Annotated[int | None, Query(ge=1, description="Page size (capped by the operator).")] = None,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page.")] = None,
    tag: Annotated[list[str] | None, Query(max_length=20, description="Repeatable: links with every one of these tags.")] = None,
    q: Annotated[str | None, Query(min_length=1, max_length=200, description="Substring of the code, URL or title, any case.")] = None,
    status: Annotated[StatusName | None, Query(description="Only links in this derived status.")] = None,
    created_after: Annotated[AwareDatetime | None, Query(description="RFC 3339 with a time zone.")] = None,
    created_before: Annotated[AwareDatetime | None, Query(description="RFC 3339 with a time zone.")] = None,
) -> LinkPage:
    """List the links this key may see, newest first, filtered by tags, text, status and creation time."""
    filters = LinkFilter(
        tags=tuple(normal_tags(tag) or ()), q=q, status=status,
        created_after=in_utc(created_after, "created_after"), created_before=in_utc(created_before, "created_before"),
    )
    page, next_cursor = await links.list(grant=grant, limit=limit, cursor=cursor, filters=filters)
    return LinkPage(data=await to_out(page, links, request), next_cursor=next_cursor)


@router.get("/{code}", response_model=LinkOut, responses={**_NO_LINK, **_ALWAYS})
async def get_link(code: str, grant: ReadLinks, links: LinksDep, request: Request) -> LinkOut:
    """Show one link."""
    return (await to_out([await links.get(code, grant=grant)], links, request))[0]


@router.patch("/{code}", response_model=LinkOut, responses={**_BODY, **_NO_LINK, **_ALWAYS})
async def update_link(
    code: str, body: LinkUpdate, grant: UpdateLinks, may_block: MayBlockLinks, links: LinksDep, request: Request
) -> LinkOut:
    """Change any of a link's fields; only admins may block or unblock."""
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    for required in ("url", "redirect_status", "disabled", "blocked"):
        if required in changes and changes[required] is None:
            raise InvalidInput(required, "cannot be null; leave it out to keep the current value")
    link = await links.update(code, grant=grant, may_block=may_block is not None, **changes)
    return (await to_out([link], links, request))[0]


@router.delete("/{code}", status_code=status.HTTP_204_NO_CONTENT, responses={**_NO_LINK, **_ALWAYS})
async def delete_link(code: str, grant: DeleteLinks, links: LinksDep) -> Response:
    """Delete a link; its code answers 404 from then on and is never reused."""
    await links.delete(code, grant=grant)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


BATCH_MAX_BODY_BYTES = 8 * 1024 * 1024  # 1,000 links with the longest URLs the settings allow


@router.post("/batch", response_model=BatchResult, max_body_size=BATCH_MAX_BODY_BYTES,
             responses={**_BODY, **_ALWAYS})
async def create_links(body: BatchRequest, grant: CreateLinks, links: LinksDep, request: Request) -> BatchResult:
    """Create up to 1,000 links in one request; one result per item, in order; a bad item stops no other."""

    async def one(index: int, item: dict) -> BatchItem:
        try:
            wanted = LinkCreate.model_validate(item)
            link = await links.create(grant=grant, **wanted.model_dump(exclude_unset=True, exclude={"query"}),
                                      query=wanted.query)
        except Exception as exc:  # noqa: BLE001 - each item's error becomes its own problem
            described = problems.describe(exc, instance=f"/api/v1/links/batch#{index}")
            if described is None:
                raise
            return BatchItem(index=index, status=described["status"], problem=described)
        return BatchItem(index=index, status=201, link=(await to_out([link], links, request))[0])

    # Generated codes of the batch go out in one group commit; aliases each in their own transaction.
    return BatchResult(results=list(await asyncio.gather(*(one(i, item) for i, item in enumerate(body.links)))))


tags_router = APIRouter(prefix="/api/v1/tags", tags=["links"])


@tags_router.get("", response_model=TagList, responses=_ALWAYS)
async def list_tags(grant: ReadLinks, links: LinksDep) -> TagList:
    """The tags on the links this key may see, most used first, with how many links carry each."""
    return TagList(data=[TagCount(tag=tag, links=count) for tag, count in await links.tag_counts(grant=grant)])
