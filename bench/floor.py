"""Floors: what the framework and one Redis round trip cost on this machine, before any of linkgate's work.

The ceiling (bench/ceiling.py) is the least an ASGI app can do per request.
The create workload does much more than a redirect by nature: FastAPI parses
and validates a JSON body and serialises a JSON answer. These apps measure
that part alone, under the same uvicorn settings, so the create figure has a
baseline measured in the same run, and so does the price of a Redis round
trip, which the limiter pays on every API request and a redirect pays on a
miss of the in-process cache:

- ``bench.floor:create``: FastAPI answering ``POST /api/v1/links`` with
  linkgate's own request and answer models (``LinkCreate`` in, ``LinkOut``
  out, 201) and an ``Authorization`` header read, storing nothing;
- ``bench.floor:create_redis``: the same, plus one Redis round trip a
  request;
- ``bench.floor:redirect_redis``: the ceiling's 302, plus one Redis round
  trip a request (uncoalesced: linkgate batches concurrent lookups into one
  ``MGET``, so this bounds its cost from above).

The round trip is an ``INCR`` of a counter of the bench's own (as cheap for
the client as the ``GET`` of a redirect, and countable): the check after a
run asks that it counted every answer wrk saw. Each app reads
``BENCH_FLOOR_REDIS_URL`` and ``BENCH_FLOOR_REDIS_KEY``.
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime
from typing import Annotated

import redis.asyncio as redis
from fastapi import FastAPI, Header

from service.api.models import LinkCreate, LinkOut

from .ceiling import _BODY, _START
from .ceiling import app as _ceiling

_KEY = os.environ.get("BENCH_FLOOR_REDIS_KEY", "bench-floor")
_redis = redis.Redis.from_url(os.environ.get("BENCH_FLOOR_REDIS_URL", "redis://127.0.0.1:6379/0"))
_ids = itertools.count(1)


def _answer(body: LinkCreate) -> LinkOut:
    now = datetime.now(UTC)
    code = f"f{next(_ids)}"
    return LinkOut(
        code=code, short_url=f"http://127.0.0.1/{code}", url=body.url, redirect_status=body.redirect_status or 302,
        query=body.query, created_at=now, updated_at=now, created_by="bench", updated_by="bench", status="active",
        title=body.title, tags=body.tags or [],
    )


def _app(*, round_trip: bool) -> FastAPI:
    app = FastAPI()

    @app.get("/ready")
    async def ready() -> dict:
        return {"status": "ready"}

    @app.post("/api/v1/links", status_code=201, response_model=LinkOut)
    async def create(body: LinkCreate, authorization: Annotated[str | None, Header()] = None) -> LinkOut:
        if round_trip:
            await _redis.incr(_KEY)
        return _answer(body)

    return app


create = _app(round_trip=False)
create_redis = _app(round_trip=True)


async def redirect_redis(scope, receive, send) -> None:
    if scope["type"] != "http":
        return await _ceiling(scope, receive, send)
    await _redis.incr(_KEY)
    await send(_START)
    await send(_BODY)
