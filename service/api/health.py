"""Probes and metrics: /healthz, /readyz, /metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select

from .. import metrics
from ..store.migrate import schema_state
from . import problems

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        503: {"description": "A check failed; the body names it."},
        **problems.responses(_422="A parameter is invalid."),
    },
)
async def readyz(
    request: Request,
    tolerate: Annotated[
        str | None,
        Query(description="Comma-separated checks (sql, redis) reported but not failed on: "
                          "the Kubernetes probe tolerates both, since every pod shares them."),
    ] = None,
) -> JSONResponse:
    """Readiness: SQL reachable, migrations at head, Redis reachable when configured."""
    state = request.app.state
    tolerated = {name.strip() for name in (tolerate or "").split(",") if name.strip()}
    checks: dict[str, str] = {}
    try:
        async with state.db.engine.connect() as connection:
            await connection.execute(select(1))
        checks["sql"] = "ok"
        schema = await schema_state(state.db.engine)
        # A newer release may already have migrated during a rollout; this
        # code still runs on that schema. Behind is what makes a pod unfit.
        checks["migrations"] = "ok" if schema in ("ok", "ahead") else "not at head"
    except Exception as exc:  # any failure means not ready; the name of it is the point
        checks["sql"] = f"unreachable: {type(exc).__name__}"
    if state.settings.redis_url:
        checks["redis"] = "ok" if await state.cache.ping() else "unreachable"
    failing = [name for name, value in checks.items() if value != "ok"]
    blocking = [name for name in failing if name not in tolerated]
    body: dict[str, object] = {"status": "not ready" if blocking else ("degraded" if failing else "ready"),
                               "checks": checks}
    if failing:
        body["failing"] = failing
    return JSONResponse(body, status_code=503 if blocking else 200)


@router.get("/metrics", response_class=Response)
async def prometheus_metrics() -> Response:
    """Prometheus metrics in the text exposition format."""
    payload, content_type = metrics.render()
    return Response(payload, media_type=content_type)
