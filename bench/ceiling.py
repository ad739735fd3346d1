"""The ceiling: the least an ASGI app can do per request under the same server.

It always answers 302 with a fixed Location and the same headers a real
redirect carries, so the only difference from linkgate's hot path is the work
linkgate does to find the target. Run under identical uvicorn settings:
``uvicorn bench.ceiling:app --loop uvloop --http httptools --no-access-log``.
"""

from __future__ import annotations

LOCATION = b"https://www.example.com/articles/2026/11/some-slug-0000001?ref=newsletter&id=0000001"

_START = {
    "type": "http.response.start",
    "status": 302,
    "headers": [
        (b"location", LOCATION),
        (b"cache-control", b"private, no-store"),
        (b"content-length", b"0"),
        # the same size as linkgate's generated X-Request-ID, so both send as many bytes
        (b"x-request-id", b"1f2e3-69a1b2c3-1a2b3"),
    ],
}
_BODY = {"type": "http.response.body", "body": b""}


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send(_START)
    await send(_BODY)
