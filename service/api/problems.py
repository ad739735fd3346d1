"""RFC 9457 problem responses: every API error, with a stable `type` per kind."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ..access.keys import redact
from ..errors import (
    PROBLEM_TYPE_PREFIX, AliasTaken, Forbidden, InvalidInput, KeyNameTaken, KeyNotFound, LinkNotFound,
    StorageUnavailable, Unauthenticated, WebhookNotFound,
)

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"


class FieldProblem(BaseModel):
    field: str = Field(description="The invalid field, as a dotted path into the body or the parameter's name.")
    reason: str


class Problem(BaseModel):
    """RFC 9457 problem details: the body of every error the API answers."""

    type: str = Field(
        description="Stable per kind of error: urn:linkgate:problem:<kind>.",
        examples=[PROBLEM_TYPE_PREFIX + "invalid-input"],
    )
    title: str = Field(description="Short summary of the kind of error.")
    status: int = Field(description="The HTTP status, repeated.")
    detail: str = Field(description="What went wrong with this request.")
    instance: str | None = Field(None, description="The path that was asked for.")
    errors: list[FieldProblem] | None = Field(None, description="invalid-input only: each field and why.")


def responses(**described: str) -> dict[int | str, dict]:
    """OpenAPI `responses` for error statuses, each a Problem: ``responses(_404="No such link.")``."""
    return {int(status.lstrip("_")): {"model": Problem, "description": text} for status, text in described.items()}


def document_media_type(openapi: dict) -> dict:
    """Document Problem bodies under application/problem+json, the type they are sent with.

    FastAPI files every response model under its route's own media type
    (application/json); an error's body is a Problem and says so.
    """
    ref = "#/components/schemas/Problem"
    for path in openapi.get("paths", {}).values():
        for operation in path.values():
            for answer in operation.get("responses", {}).values():
                content = answer.get("content", {})
                if content.get("application/json", {}).get("schema", {}).get("$ref") == ref:
                    content[MEDIA_TYPE] = content.pop("application/json")
    return openapi


def problem(
    status: int,
    kind: str,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: object,
) -> JSONResponse:
    # A key pasted into a path or a field by mistake is never echoed back (problem_body redacts).
    body = problem_body(status, kind, title, detail, instance=instance, **extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _as_response(body: dict) -> JSONResponse:
    return JSONResponse(body, status_code=body["status"], media_type=MEDIA_TYPE)


def _field_name(loc: tuple) -> str:
    # The first element says where the value came from (body, query, path, header).
    parts = [str(p) for p in (loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "body"


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path.

    Starlette's 405 names only the methods of the first route whose path
    matched; a path served by several routes (GET and POST /api/v1/links)
    needs all of them in `Allow` (RFC 9110).
    """
    routes = request.app.router.routes
    allowed = [
        method for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
    ]
    if "GET" in allowed and "HEAD" not in allowed:
        allowed.insert(allowed.index("GET") + 1, "HEAD")  # served as GET without the body (service.app)
    return ", ".join(allowed)


def problem_body(status: int, kind: str, title: str, detail: str, *, instance: str | None = None,
                 **extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "type": PROBLEM_TYPE_PREFIX + kind, "title": title, "status": status, "detail": redact(detail),
    }
    if instance:
        body["instance"] = redact(instance)
    body.update(extra)
    return body


def _validation_problem(errors: list[dict], instance: str | None) -> dict[str, object]:
    fields = [{"field": _field_name(tuple(err.get("loc", ()))), "reason": err.get("msg", "invalid")}
              for err in errors]
    detail = "; ".join(f"{e['field']}: {e['reason']}" for e in fields)
    return problem_body(422, "invalid-input", "Invalid input", detail, instance=instance, errors=fields)


def describe(exc: Exception, *, instance: str | None = None) -> dict[str, object] | None:
    """The problem body a refused input gets (for answers that hold several, like a batch);
    None for an error that is not about the input (the request as a whole fails)."""
    if isinstance(exc, InvalidInput):
        return problem_body(422, "invalid-input", "Invalid input", f"{exc.field} {exc.reason}",
                            instance=instance, errors=[{"field": exc.field, "reason": exc.reason}])
    if isinstance(exc, ValidationError):
        return _validation_problem(exc.errors(), instance)
    if isinstance(exc, AliasTaken):
        return problem_body(409, "alias-taken", "Alias taken",
                            f"The alias '{exc.alias}' is in use or was used before; choose another.", instance=instance)
    return None


def install(app: FastAPI) -> None:
    """Map every error linkgate raises, and FastAPI's own, to problem JSON."""

    @app.exception_handler(InvalidInput)
    async def _invalid(request: Request, exc: InvalidInput) -> JSONResponse:
        return _as_response(describe(exc, instance=request.url.path))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _as_response(_validation_problem(list(exc.errors()), request.url.path))

    @app.exception_handler(LinkNotFound)
    async def _not_found(request: Request, exc: LinkNotFound) -> JSONResponse:
        return problem(404, "link-not-found", "Link not found", f"No link has the code '{exc.code}'.",
                       instance=request.url.path)

    @app.exception_handler(AliasTaken)
    async def _taken(request: Request, exc: AliasTaken) -> JSONResponse:
        return _as_response(describe(exc, instance=request.url.path))

    @app.exception_handler(Unauthenticated)
    async def _unauthenticated(request: Request, exc: Unauthenticated) -> JSONResponse:
        return problem(401, "unauthorized", "Unauthorized", exc.reason, instance=request.url.path,
                       headers={"WWW-Authenticate": 'Bearer realm="linkgate"'})

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> JSONResponse:
        return problem(403, "forbidden", "Forbidden",
                       f"The role '{exc.role}' may not {exc.act} {exc.obj}.", instance=request.url.path)

    @app.exception_handler(KeyNotFound)
    async def _key_not_found(request: Request, exc: KeyNotFound) -> JSONResponse:
        return problem(404, "key-not-found", "Key not found", f"No API key has the id '{exc.key_id}'.",
                       instance=request.url.path)

    @app.exception_handler(WebhookNotFound)
    async def _webhook_not_found(request: Request, exc: WebhookNotFound) -> JSONResponse:
        return problem(404, "webhook-not-found", "Webhook not found", f"No webhook has the id {exc.webhook_id}.",
                       instance=request.url.path)

    @app.exception_handler(KeyNameTaken)
    async def _key_name_taken(request: Request, exc: KeyNameTaken) -> JSONResponse:
        return problem(409, "key-name-taken", "Key name taken",
                       f"A key named '{exc.name}' exists or existed; choose another name.",
                       instance=request.url.path)

    @app.exception_handler(StorageUnavailable)
    async def _unavailable(request: Request, exc: StorageUnavailable) -> JSONResponse:
        retry = str(request.app.state.settings.sql_retry_after_seconds)
        return problem(503, "storage-unavailable", "Storage unavailable",
                       "The link store cannot be reached; nothing was changed. Try again shortly.",
                       instance=request.url.path, headers={"Retry-After": retry})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kinds = {404: "not-found", 405: "method-not-allowed", 400: "bad-request", 413: "too-large"}
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": _allowed_methods(request)}
        return problem(exc.status_code, kinds.get(exc.status_code, f"http-{exc.status_code}"),
                       str(exc.detail), str(exc.detail), instance=request.url.path,
                       headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem(500, "internal", "Internal error", "Something went wrong on our side.",
                       instance=request.url.path)
