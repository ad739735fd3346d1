"""The visitor pages' templates, and the headers every page goes out with.

Templates are Jinja2 with auto-escaping on for every file, so a title or a
URL a link's owner typed is always text in the page, never markup. An
operator's ``LINKGATE_TEMPLATES_DIR`` is searched first, file by file: a
``base.html`` there rebrands every page, a ``gone.html`` only that one.
Pages that never change (404, 410) are rendered once at start.

Every page carries the same Content-Security-Policy: nothing but this
service's own style sheet and images, no script at all (``default-src
'none'`` and no ``script-src``), forms post only here (``form-action
'self'``), and no other site may frame it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined
from starlette.responses import Response

SHIPPED = Path(__file__).with_name("templates")
HTML = b"text/html; charset=utf-8"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
NO_STORE = (b"cache-control", b"no-store")


def accepts_json(scope) -> bool:
    """Whether the client asked for JSON rather than a page (then it gets problem JSON)."""
    for name, value in scope["headers"]:
        if name == b"accept":
            return b"json" in value and b"text/html" not in value
    return False


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole response of a page (or a redirect) that either the gateway or a route can send."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    content_type: bytes | None = HTML

    def header_list(self, request_id: bytes | None = None) -> list[tuple[bytes, bytes]]:
        headers = [*self.headers, (b"content-length", str(len(self.body)).encode())]
        if self.content_type is not None:
            headers.append((b"content-type", self.content_type))
        if request_id is not None:
            headers.append((b"x-request-id", request_id))
        return headers

    async def send(self, send, scope, request_id: bytes) -> int:
        """Send it as raw ASGI messages (the redirect gateway); returns the status."""
        await send({"type": "http.response.start", "status": self.status, "headers": self.header_list(request_id)})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else self.body})
        return self.status

    def response(self) -> Response:
        """As a Starlette response (a FastAPI route)."""
        response = Response(self.body, status_code=self.status)
        response.raw_headers = self.header_list()
        return response


class Pages:
    """The template set of this process, with the pages that never change rendered once."""

    def __init__(self, templates_dir: str | Path | None = None) -> None:
        loaders = []
        if templates_dir is not None:
            if not Path(templates_dir).is_dir():
                raise ValueError(f"LINKGATE_TEMPLATES_DIR: {templates_dir} is not a directory")
            loaders.append(FileSystemLoader(str(templates_dir)))
        loaders.append(FileSystemLoader(str(SHIPPED)))
        # StrictUndefined: an override that names a variable no page has fails loudly, not blank.
        self._env = Environment(loader=ChoiceLoader(loaders), autoescape=True, undefined=StrictUndefined)
        self.not_found_html = self.render("not_found.html")
        self.gone_html = self.render("gone.html")

    @classmethod
    def from_settings(cls, settings) -> Pages:
        return cls(settings.templates_dir)

    def render(self, name: str, **context) -> bytes:
        return self._env.get_template(name).render(**context).encode()

    def page(self, status: int, name: str, *, headers: tuple[tuple[bytes, bytes], ...] = (NO_STORE,),
             **context) -> Answer:
        return Answer(status=status, body=self.render(name, **context), headers=(*SECURITY_HEADERS, *headers))

    def error(self, status: int, title: str, message: str, *,
              headers: tuple[tuple[bytes, bytes], ...] = ()) -> Answer:
        return self.page(status, "error.html", headers=(NO_STORE, *headers), title=title, message=message)
