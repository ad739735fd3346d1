"""A route's response that the redirect gateway itself sends: its 404 (and unknown-code limit) and its 410."""

from __future__ import annotations

from starlette.responses import Response


class ViaGateway(Response):
    """Hands the ASGI send to `answer(scope, send)`, one of the gateway's own answers.

    `problem_unless_html`: answer problem JSON unless the client asks for
    HTML (the QR route: an image's refusal is read by programs, a page only
    by a browser that navigated to it).
    """

    def __init__(self, answer, *, problem_unless_html: bool = False) -> None:
        super().__init__()
        self._answer = answer
        self._problem_unless_html = problem_unless_html

    async def __call__(self, scope, receive, send) -> None:
        if self._problem_unless_html and not _asks_for_html(scope):
            headers = [(name, value) for name, value in scope["headers"] if name != b"accept"]
            scope = {**scope, "headers": [*headers, (b"accept", b"application/problem+json")]}
        await self._answer(scope, send)


def _asks_for_html(scope) -> bool:
    return any(name == b"accept" and b"text/html" in value for name, value in scope["headers"])


def unknown(gateway, code: str, **options) -> ViaGateway:
    return ViaGateway(lambda scope, send: gateway.answer_unknown(scope, send, code), **options)


def gone(gateway, code: str, fallback: str | None, **options) -> ViaGateway:
    return ViaGateway(lambda scope, send: gateway.answer_gone(scope, send, code, fallback), **options)
