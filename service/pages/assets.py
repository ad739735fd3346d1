"""The visitor pages' own files: the style sheet, the favicon and robots.txt (static/).

Read once at start and served from memory, with a validator and a day of
caching: they change only with a release.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import APIRouter, Request
from starlette.responses import Response

STATIC = Path(__file__).with_name("static")
MAX_AGE_SECONDS = 86400

# URL path -> (file in static/, media type)
FILES = {
    "/static/pages.css": ("pages.css", "text/css; charset=utf-8"),
    "/favicon.ico": ("favicon.ico", "image/x-icon"),
    "/robots.txt": ("robots.txt", "text/plain; charset=utf-8"),
}


class Asset:
    __slots__ = ("body", "media_type", "etag")

    def __init__(self, path: Path, media_type: str) -> None:
        self.body = path.read_bytes()
        self.media_type = media_type
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'

    def response(self, request: Request) -> Response:
        headers = {"ETag": self.etag, "Cache-Control": f"public, max-age={MAX_AGE_SECONDS}",
                   "X-Content-Type-Options": "nosniff"}
        if request.headers.get("if-none-match") == self.etag:
            return Response(status_code=304, headers=headers)
        return Response(self.body, media_type=self.media_type, headers=headers)


def asset_router() -> APIRouter:
    """The routes of static/, each file read now."""
    router = APIRouter(include_in_schema=False)
    for url_path, (name, media_type) in FILES.items():
        router.add_api_route(url_path, _serving(Asset(STATIC / name, media_type)), methods=["GET"], name=name)
    return router


def _serving(asset: Asset):
    async def serve(request: Request) -> Response:
        return asset.response(request)

    return serve
