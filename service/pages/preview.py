"""``GET /{code}+``: what a short link leads to, before following it.

It shows the target URL as text, the title, the creation date and a plain
"Continue" link (``rel="noopener noreferrer"``), under ``X-Robots-Tag:
noindex``, and is not counted as a visit. For a link with a password it
shows only that one is needed: never the target, nor its title. A code that
does not exist or is not public yet gets the redirect's 404, a link that is
gone its 410 (never its fallback: a preview leads nowhere by itself).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..errors import StorageUnavailable
from ..store import sql
from . import gateway_answer
from .render import NO_STORE
from .routes import CODE
from .standing import State, look_up

router = APIRouter(include_in_schema=False)

NOINDEX = (b"x-robots-tag", b"noindex")


@router.get("/" + CODE + "+")
async def preview(code: str, request: Request) -> Response:
    """The preview page of a link."""
    gateway = request.app.redirect_gateway
    pages = request.app.state.pages
    try:
        found = await look_up(gateway, code)
        if found.state is State.LIVE:
            # Title and creation date are not in the redirect's cache; a preview is rare enough for SQL.
            async with request.app.state.db.reading() as session:
                link = await sql.find_any_link(session=session, code=code)
    except StorageUnavailable:
        retry_after = str(request.app.state.settings.sql_retry_after_seconds).encode()
        return pages.error(503, "Try again shortly", "The link store cannot be reached right now.",
                           headers=((b"retry-after", retry_after),)).response()
    if found.state is State.UNKNOWN:
        return gateway_answer.unknown(gateway, code)
    if found.state is State.GONE or link is None or link.deleted_at is not None:
        return gateway_answer.gone(gateway, code, None)
    base = request.app.state.settings.public_base_url.rstrip("/")
    context = {"short_url": f"{base}/{code}", "path": f"/{code}", "created_at": link.created_at,
               "protected": link.protected}
    if not link.protected:
        context.update(url=link.url, title=link.title)
    return pages.page(200, "preview.html", headers=(NO_STORE, NOINDEX), **context).response()
