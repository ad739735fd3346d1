"""Probes and metrics: /healthz, /readyz, /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select

from .. import metrics
from ..store.migrate import is_at_head

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "A check failed; the body names it."}})
async def readyz(request: Request) -> JSONResponse:
    """Readiness: SQL reachable, migrations at head, Redis reachable when configured."""
    state = request.app.state
    checks: dict[str, str] = {}
    try:
        async with state.db.engine.connect() as connection:
            await connection.execute(select(1))
        checks["sql"] = "ok"
        checks["migrations"] = "ok" if await is_at_head(state.db.engine) else "not at head"
    except Exception as exc:  # any failure means not ready; the name of it is the point
        checks["sql"] = f"unreachable: {type(exc).__name__}"
    if state.settings.redis_url:
        checks["redis"] = "ok" if await state.cache.ping() else "unreachable"
    ready = all(value == "ok" for value in checks.values())
    failing = [name for name, value in checks.items() if value != "ok"]
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    if not ready:
        body["failing"] = failing
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response)
async def prometheus_metrics() -> Response:
    """Prometheus metrics in the text exposition format."""
    payload, content_type = metrics.render()
    return Response(payload, media_type=content_type)
