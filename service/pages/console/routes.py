"""The console's routes: the page at /console and its files under /console/static/."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
STATIC_URL = "/console/static"

# Nothing inline, nothing from another host: scripts, styles and images are
# the files below, and the page may only call back to this origin (the API).
# uPlot styles its elements through the CSSOM (element.style), which
# style-src does not govern, so no 'unsafe-inline' is needed for it.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidated on every load (ETag), so a new release's files are used at once.
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/console")
async def console_page() -> FileResponse:
    """The console's single page; the script renders each screen from its templates."""
    return FileResponse(STATIC / "console.html", media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/console/")
async def console_slash() -> RedirectResponse:
    return RedirectResponse("/console", status_code=308)


class _StaticWithHeaders:
    """StaticFiles, with the console's headers on every answer (404s included)."""

    def __init__(self, directory: Path) -> None:
        self.files = StaticFiles(directory=directory)
        self.headers = [(name.lower().encode(), value.encode()) for name, value in HEADERS.items()]

    async def __call__(self, scope, receive, send) -> None:
        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        await self.files(scope, receive, send_with_headers)


def mount(app: FastAPI) -> None:
    app.include_router(router)
    app.mount(STATIC_URL, _StaticWithHeaders(STATIC), name="console-static")
