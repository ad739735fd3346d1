"""REST API of webhooks: /api/v1/webhooks, for admins (every link's events) and owners (their links')."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from ..access.policy import Scope
from ..coordination import webhooks
from ..coordination.events import TYPES
from ..errors import WebhookNotFound
from ..store.models import Webhook, WebhookDelivery
from ..targets import TargetRules
from . import problems
from .auth import ManageWebhooks

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])

_ALWAYS = problems.responses(
    _401="No valid API key.",
    _403="The key's role may not manage webhooks.",
    _422="Invalid input; `errors` names each field.",
    _429="Over the rate limit; see Retry-After.",
    _503="SQL unreachable; nothing was changed.",
)
_NO_HOOK = problems.responses(_404="No such webhook (or not this key's).")
_BODY = problems.responses(
    _400="The body cannot be read at all, e.g. it is not UTF-8.",
    _413="The body is larger than 64 KiB.",
)
WebhookId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The webhook's id.")]
EventType = Literal["link.created", "link.updated", "link.deleted", "link.gone"]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(..., min_length=1, max_length=2048, description="An https endpoint on a public address.",
                     examples=["https://hooks.example.com/linkgate"])
    events: list[EventType] = Field(..., min_length=1, max_length=len(TYPES), description="The events it is sent.")


class WebhookOut(BaseModel):
    id: int
    url: str
    events: list[str]
    created_at: datetime
    scope: Literal["all", "own"] = Field(..., description="Every link's events (admin), or its owner's links'.")


class WebhookCreated(WebhookOut):
    secret: str = Field(..., description="The signing secret (Linkgate-Signature); shown this once only.")


class WebhookList(BaseModel):
    data: list[WebhookOut]


class DeliveryOut(BaseModel):
    id: int
    event_id: int
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryList(BaseModel):
    data: list[DeliveryOut]


def _out(hook: Webhook) -> WebhookOut:
    return WebhookOut(id=hook.id, url=hook.url, events=list(hook.events), created_at=hook.created_at,
                      scope="all" if hook.all_links else "own")


def _visible(query, grant):
    return query if grant.scope is Scope.ANY else query.where(Webhook.owner_id == grant.principal.id)


async def _find(session, webhook_id: int, grant) -> Webhook:
    hook = (await session.execute(_visible(select(Webhook).where(Webhook.id == webhook_id), grant))).scalar_one_or_none()
    if hook is None:
        raise WebhookNotFound(webhook_id)
    return hook


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookCreated,
             responses={**_BODY, **_ALWAYS})
async def create_webhook(body: WebhookCreate, request: Request, response: Response,
                         grant: ManageWebhooks) -> WebhookCreated:
    """Register an endpoint; the answer carries its signing secret, the only time it is shown."""
    state = request.app.state
    settings = state.settings
    url = webhooks.check_endpoint(body.url, TargetRules.from_settings(settings),
                                  allow_private=settings.webhook_allow_private)
    hook = Webhook(url=url, events=webhooks.check_events(list(body.events)), secret=webhooks.new_secret(),
                   owner_id=grant.principal.id, all_links=grant.scope is Scope.ANY,
                   created_at=state.links.clock())
    async with state.db.transaction() as session:
        session.add(hook)
        await session.flush()
    response.headers["Location"] = f"/api/v1/webhooks/{hook.id}"
    response.headers["Cache-Control"] = "no-store"
    return WebhookCreated(**_out(hook).model_dump(), secret=hook.secret)


@router.get("", response_model=WebhookList, responses=_ALWAYS)
async def list_webhooks(request: Request, grant: ManageWebhooks) -> WebhookList:
    """The webhooks this key may manage (an admin: all), never their secrets."""
    async with request.app.state.db.reading() as session:
        hooks = (await session.execute(_visible(select(Webhook).order_by(Webhook.id), grant))).scalars()
        return WebhookList(data=[_out(hook) for hook in hooks])


@router.get("/{webhook_id}", response_model=WebhookOut, responses={**_NO_HOOK, **_ALWAYS})
async def get_webhook(webhook_id: WebhookId, request: Request, grant: ManageWebhooks) -> WebhookOut:
    """Show one webhook."""
    async with request.app.state.db.reading() as session:
        return _out(await _find(session, webhook_id, grant))


@router.get("/{webhook_id}/deliveries", response_model=DeliveryList, responses={**_NO_HOOK, **_ALWAYS})
async def list_deliveries(webhook_id: WebhookId, request: Request, grant: ManageWebhooks) -> DeliveryList:
    """Its newest 100 deliveries: pending (with the next try), delivered, or failed (with why)."""
    async with request.app.state.db.reading() as session:
        await _find(session, webhook_id, grant)
        rows = (await session.execute(
            select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
            .order_by(WebhookDelivery.id.desc()).limit(100)
        )).scalars()
        return DeliveryList(data=[DeliveryOut.model_validate(row, from_attributes=True) for row in rows])


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, responses={**_NO_HOOK, **_ALWAYS})
async def delete_webhook(webhook_id: WebhookId, request: Request, grant: ManageWebhooks) -> Response:
    """Remove a webhook and its pending deliveries."""
    async with request.app.state.db.transaction() as session:
        await _find(session, webhook_id, grant)
        await webhooks.delete_webhook(session=session, webhook_id=webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
