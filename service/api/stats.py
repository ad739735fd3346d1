"""REST API of visit stats: /api/v1/links/{code}/stats and /api/v1/stats."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from ..visits.stats import MAX_DAYS, VisitStats
from . import problems
from .auth import ReadServiceStats, ReadStats
from .links import LinksDep
from .models import LinkStats, ServiceStats

router = APIRouter(prefix="/api/v1", tags=["stats"])

_ALWAYS = problems.responses(
    _401="No valid API key.",
    _403="The key's role may not read these stats.",
    _422="A parameter is invalid, or the range is longer than 400 days.",
    _429="Over the rate limit; see Retry-After.",
    _503="SQL unreachable. Retry after Retry-After seconds.",
)
_NO_LINK = problems.responses(_404="No such link, or not one this key may see.")
_DAY = r"^\d{4}-\d{2}-\d{2}$"

From = Annotated[str | None, Query(
    alias="from", pattern=_DAY, description="First UTC day, YYYY-MM-DD (default: 29 days before `to`).")]
To = Annotated[str | None, Query(
    pattern=_DAY, description=f"Last UTC day, YYYY-MM-DD (default: today); at most {MAX_DAYS} days from `from`.")]
IncludeBots = Annotated[bool, Query(description="Add bot visits (crawlers, previewers, scripts) to every figure.")]


async def get_stats(request: Request) -> VisitStats:
    return request.app.state.visit_stats


StatsDep = Annotated[VisitStats, Depends(get_stats)]


@router.get("/links/{code}/stats", response_model=LinkStats, responses={**_NO_LINK, **_ALWAYS})
async def link_stats(code: str, grant: ReadStats, links: LinksDep, stats: StatsDep, from_: From = None,
                     to: To = None, include_bots: IncludeBots = False) -> LinkStats:
    """Visits of one link per UTC day, with its top referrers, countries, browsers, OS and devices."""
    start, end = stats.range(from_, to)
    link = await links.get(code, grant=grant)
    return LinkStats(**await stats.of_link(link.id, start=start, end=end, include_bots=include_bots))


@router.get("/stats", response_model=ServiceStats, responses=_ALWAYS)
async def service_stats(grant: ReadServiceStats, stats: StatsDep, from_: From = None, to: To = None,
                        include_bots: IncludeBots = False) -> ServiceStats:
    """Visits of every link together, and the visits of codes that were not live (orphans), per status."""
    start, end = stats.range(from_, to)
    return ServiceStats(**await stats.of_service(start=start, end=end, include_bots=include_bots))
