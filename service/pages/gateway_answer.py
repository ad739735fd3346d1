"""A route's response that the redirect gateway itself sends: its 404 (and unknown-code limit) and its 410."""

from __future__ import annotations

from starlette.responses import Response


class ViaGateway(Response):
    """Hands the ASGI send to `answer(scope, send)`, one of the gateway's own answers."""

    def __init__(self, answer) -> None:
        super().__init__()
        self._answer = answer

    async def __call__(self, scope, receive, send) -> None:
        await self._answer(scope, send)


def unknown(gateway, code: str) -> ViaGateway:
    return ViaGateway(lambda scope, send: gateway.answer_unknown(scope, send, code))


def gone(gateway, code: str, fallback: str | None) -> ViaGateway:
    return ViaGateway(lambda scope, send: gateway.answer_gone(scope, send, code, fallback))
