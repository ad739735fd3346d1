"""``GET /{code}/qr``: a QR code of a link's short URL, as SVG (default) or PNG.

The code encodes ``<short URL>?qr=1`` (marker.py), so a scan is counted as
``qr`` in the link's stats. Parameters, each checked (422 problem JSON when
not valid):

- ``format``: ``svg`` or ``png``;
- ``size``: the image's width and height in pixels, clamped to 64-2048
  (default 256). An SVG is exactly that size; a PNG is whole pixels per
  module, so it is the largest such image that fits (at least one pixel per
  module);
- ``margin``: the quiet zone, 0-16 modules (default 4, what readers expect);
- ``ecc``: error correction ``L``, ``M`` (default), ``Q`` or ``H``;
- ``fg``, ``bg``: hex colours (``1a2b3c``, ``#1a2b3c`` or ``#abc``).

An image depends only on the short URL and the parameters, so it carries a
strong ``ETag`` (``If-None-Match`` gets a 304) and may be cached for a day.
A code that does not exist or is not public yet answers the redirect's 404,
a link that is gone its 410, never an image: as problem JSON, or the
redirect's page for a client that asks for HTML.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
from typing import Annotated, Literal

import segno
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from ..api import problems
from ..errors import StorageUnavailable
from . import gateway_answer
from .marker import marked
from .routes import CODE
from .standing import State, look_up

router = APIRouter(tags=["visitor pages"])

MIN_SIZE, MAX_SIZE, DEFAULT_SIZE = 64, 2048, 256
MAX_AGE_SECONDS = 86400
MEDIA_TYPES = {"svg": "image/svg+xml", "png": "image/png"}
HEX_COLOUR = r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$"


def colour(text: str) -> str:
    """`#rrggbb` in lower case from any accepted form."""
    digits = text.lstrip("#").lower()
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return f"#{digits}"


@functools.lru_cache(maxsize=256)
def render_qr(content: str, kind: str, size: int, margin: int, ecc: str, dark: str, light: str) -> bytes:
    """The image bytes (pure: the same arguments give the same bytes, so recent ones are kept)."""
    # boost_error=False: the level asked for, not a higher one that happens to fit the same version.
    code = segno.make(content, error=ecc, micro=False, boost_error=False)
    modules = code.symbol_size(scale=1, border=margin)[0]
    out = io.BytesIO()
    if kind == "svg":
        # Vector: drawn one unit per module, and shown exactly `size` wide through its viewBox.
        code.save(out, kind="svg", scale=1, border=margin, dark=dark, light=light, xmldecl=False,
                  svgclass=None, lineclass=None)
        drawn = f'width="{modules}" height="{modules}"'.encode()
        shown = f'width="{size}" height="{size}" viewBox="0 0 {modules} {modules}"'.encode()
        return out.getvalue().replace(drawn, shown, 1)
    else:
        code.save(out, kind="png", scale=max(1, size // modules), border=margin, dark=dark, light=light)
    return out.getvalue()


def etag_of(*parts: object) -> str:
    return '"' + hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:32] + '"'


@router.get(
    "/" + CODE + "/qr",
    response_class=Response,
    responses={
        200: {"content": {"image/svg+xml": {}, "image/png": {}}, "description": "The QR code."},
        304: {"description": "Not modified (If-None-Match)."},
        **problems.responses(_404="No such link (or not public yet).", _410="The link is gone.",
                             _422="A parameter is not valid.", _503="SQL unreachable."),
    },
)
async def qr_code(
    code: str,
    request: Request,
    format: Annotated[Literal["svg", "png"], Query(description="svg or png.")] = "svg",
    size: Annotated[int, Query(description="Pixels, clamped to 64-2048.")] = DEFAULT_SIZE,
    margin: Annotated[int, Query(ge=0, le=16, description="Quiet zone in modules.")] = 4,
    ecc: Annotated[Literal["L", "M", "Q", "H"], Query(description="Error correction level.")] = "M",
    fg: Annotated[str, Query(pattern=HEX_COLOUR, description="Hex colour of the dark modules.")] = "000000",
    bg: Annotated[str, Query(pattern=HEX_COLOUR, description="Hex colour of the light modules.")] = "ffffff",
) -> Response:
    """A QR code of the link's short URL (scans are counted as `qr` in its stats)."""
    gateway = request.app.redirect_gateway
    try:
        found = await look_up(gateway, code)
    except StorageUnavailable:
        retry_after = str(request.app.state.settings.sql_retry_after_seconds)
        return problems.problem(503, "storage-unavailable", "Storage unavailable",
                                "The link store cannot be reached; try again shortly.",
                                instance=request.url.path, headers={"Retry-After": retry_after})
    if found.state is State.UNKNOWN:
        return gateway_answer.unknown(gateway, code, problem_unless_html=True)
    if found.state is State.GONE:
        return gateway_answer.gone(gateway, code, None, problem_unless_html=True)
    content = marked(f"{request.app.state.settings.public_base_url.rstrip('/')}/{code}")
    arguments = (content, format, min(max(size, MIN_SIZE), MAX_SIZE), margin, ecc, colour(fg), colour(bg))
    etag = etag_of(*arguments)
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={MAX_AGE_SECONDS}"}
    if etag in (part.strip() for part in request.headers.get("if-none-match", "").split(",")):
        return Response(status_code=304, headers=headers)
    # PNG compression of a large code takes milliseconds: not on the event loop.
    image = await asyncio.to_thread(render_qr, *arguments)
    headers["X-Content-Type-Options"] = "nosniff"
    return Response(image, media_type=MEDIA_TYPES[format], headers=headers)
