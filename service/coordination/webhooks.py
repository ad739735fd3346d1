"""Webhooks: HTTPS endpoints told of link events, signed, retried with backoff, never sent inside.

A delivery is one link event (the same JSON document as on the link-event
stream) POSTed to one webhook, at least once:

- headers ``Linkgate-Event-Id`` (the event id: a receiver de-duplicates
  on it), ``Linkgate-Event-Type``, ``Linkgate-Delivery-Id``,
  ``Linkgate-Timestamp`` (Unix seconds) and ``Linkgate-Signature:
  v1=<hex HMAC-SHA256 of "<timestamp>.<raw body>" with the webhook's secret>``,
  as Stripe and Dub sign theirs; a receiver checks the signature and that
  the timestamp is recent (README, "Receiving webhooks");
- a 2xx answer delivers it; anything else (or no answer within
  LINKGATE_WEBHOOK_TIMEOUT_SECONDS) is tried again after 1 s, 2 s, 4 s ...
  (at most 10 min apart), LINKGATE_WEBHOOK_MAX_ATTEMPTS tries in all, then
  it is ``failed``, as ``GET /api/v1/webhooks/{id}/deliveries`` shows.

Endpoints pass the rules of link targets when registered (https, no IP
literal or name of an internal address), and again when each request is
made: the name is resolved then, every address it resolves to must be
public, and the connection goes to the address that was checked, so a name
that later resolves to 127.0.0.1 (DNS rebinding) reaches nothing inside.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import httpcore
import httpx
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .. import metrics
from ..errors import InvalidInput
from ..store.models import LinkEvent, Webhook, WebhookDelivery
from ..targets import TargetRules, is_internal, normalise_target
from . import events as link_events

log = logging.getLogger(__name__)

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
MAX_BACKOFF_SECONDS = 600.0
SIGNATURE_HEADER = "Linkgate-Signature"


def new_secret() -> str:
    return f"whsec_{secrets.token_hex(24)}"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for a body sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


def verify(secret: str, timestamp: int, body: bytes, header: str, *, now: float | None = None,
           tolerance_seconds: int = 300) -> bool:
    """What a receiver does (README): the signature matches and the timestamp is recent."""
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


def backoff_seconds(attempts: int) -> float:
    return min(MAX_BACKOFF_SECONDS, 2.0 ** (attempts - 1))


def check_endpoint(url: str, rules: TargetRules, *, allow_private: bool) -> str:
    """The endpoint, normalised, if a webhook may point at it (InvalidInput naming `url` if not)."""
    schemes = frozenset({"https", "http"} if allow_private else {"https"})
    endpoint_rules = dataclasses.replace(rules, allowed_schemes=schemes, allow_private=allow_private)
    try:
        return normalise_target(url, endpoint_rules)
    except InvalidInput as exc:
        raise InvalidInput("url", exc.reason) from None


def check_events(types: list[str]) -> list[str]:
    unknown = sorted(set(types) - set(link_events.TYPES))
    if unknown or not types:
        raise InvalidInput("events", f"must name some of {', '.join(link_events.TYPES)}"
                           + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    return sorted(set(types))


# --- the request-time check (SSRF) ------------------------------------------------

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


class RefusedAddress(httpcore.ConnectError):
    """The endpoint's name resolved to an address a webhook may not reach."""


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses checked just now: the name is resolved here, not by the socket."""

    def __init__(self, *, allow_private: bool, resolver: Resolver) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow_private = allow_private
        self._resolver = resolver

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            addresses = [ipaddress.ip_address(a.split("%")[0]) for a in await self._resolver(host, port)]
        if not addresses:
            raise RefusedAddress(f"{host} resolves to no address")
        if not self._allow_private:
            internal = [str(a) for a in addresses if is_internal(a)]
            if internal:
                raise RefusedAddress(f"{host} resolves to an internal address ({', '.join(internal)}); refused")
        return await self._inner.connect_tcp(str(addresses[0]), port, timeout=timeout,
                                             local_address=local_address, socket_options=socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def checked_client(*, allow_private: bool, timeout_seconds: float, resolver: Resolver = resolve) -> httpx.AsyncClient:
    """An httpx client whose every connection passes the check above (TLS still verifies the name)."""
    transport = httpx.AsyncHTTPTransport(retries=0)
    # httpx takes no network backend; its pool does. Same settings, checked connections.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(), max_connections=20, max_keepalive_connections=10,
        keepalive_expiry=5.0, network_backend=_CheckedBackend(allow_private=allow_private, resolver=resolver),
    )
    return httpx.AsyncClient(transport=transport, timeout=timeout_seconds, follow_redirects=False,
                             headers={"user-agent": "linkgate-webhooks"})


# --- queueing (by the relay, in its transaction) ----------------------------------


async def queue_deliveries(*, session: AsyncSession, events: list[LinkEvent], now: datetime) -> int:
    """One pending delivery per event and webhook that hears of it (its type; its owner's links, or all)."""
    if not events:
        return 0
    hooks = (await session.execute(select(Webhook.id, Webhook.events, Webhook.owner_id, Webhook.all_links))).all()
    rows = []
    for event in events:
        for hook_id, types, owner_id, all_links in hooks:
            if event.type in types and (all_links or (owner_id is not None and owner_id == event.owner_id)):
                rows.append({"webhook_id": hook_id, "event_id": event.id, "state": PENDING, "attempts": 0,
                             "next_attempt_at": now, "created_at": now})
    if rows:
        await session.execute(insert(WebhookDelivery), rows)
    return len(rows)


def envelope(event: LinkEvent) -> dict:
    """The document of one link event, as the stream and webhooks carry it (schema v1)."""
    return {"id": event.id, "type": event.type, "version": link_events.SCHEMA_VERSION,
            "occurred_at": event.occurred_at.isoformat().replace("+00:00", "Z"), **event.data}


def body_of(event: LinkEvent) -> bytes:
    return json.dumps(envelope(event), separators=(",", ":"), sort_keys=True).encode()


# --- delivering ---------------------------------------------------------------------


class Deliverer:
    """Sends due deliveries, a few at a time; each outcome is written with the caller's fence check."""

    def __init__(self, *, db, client: httpx.AsyncClient, max_attempts: int, concurrency: int = 8,
                 clock: Callable[[], datetime]) -> None:
        self.db = db
        self.client = client
        self.max_attempts = max_attempts
        self.concurrency = concurrency
        self.clock = clock

    async def deliver_due(self, *, fenced: Callable[[AsyncSession], Awaitable[None]], limit: int = 100) -> int:
        """Try every delivery that is due (up to `limit`); returns how many were tried."""
        now = self.clock()
        async with self.db.reading() as session:
            due = (await session.execute(
                select(WebhookDelivery, Webhook, LinkEvent)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .join(LinkEvent, LinkEvent.id == WebhookDelivery.event_id)
                .where(WebhookDelivery.state == PENDING, WebhookDelivery.next_attempt_at <= now)
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(limit)
            )).all()
        if not due:
            return 0
        gate = asyncio.Semaphore(self.concurrency)

        async def attempt(delivery, hook, event):
            async with gate:
                return delivery.id, delivery.attempts, await self._send(delivery, hook, event)

        outcomes = await asyncio.gather(*(attempt(*row) for row in due))
        now = self.clock()
        async with self.db.transaction() as session:
            await fenced(session)
            for delivery_id, attempts, (status, error) in outcomes:
                tries = attempts + 1
                if error is None:
                    values = {"state": DELIVERED, "delivered_at": now, "next_attempt_at": None}
                    metrics.WEBHOOK_DELIVERIES.labels(outcome="delivered").inc()
                elif tries >= self.max_attempts:
                    values = {"state": FAILED, "next_attempt_at": None}
                    metrics.WEBHOOK_DELIVERIES.labels(outcome="failed").inc()
                else:
                    values = {"next_attempt_at": now + timedelta(seconds=backoff_seconds(tries))}
                    metrics.WEBHOOK_DELIVERIES.labels(outcome="retried").inc()
                await session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(
                    attempts=tries, last_status=status, last_error=error, **values))
        return len(due)

    async def _send(self, delivery: WebhookDelivery, hook: Webhook, event: LinkEvent) -> tuple[int | None, str | None]:
        body = body_of(event)
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "linkgate-event-id": str(event.id),
            "linkgate-event-type": event.type,
            "linkgate-delivery-id": str(delivery.id),
            "linkgate-timestamp": str(timestamp),
            SIGNATURE_HEADER.lower(): sign(hook.secret, timestamp, body),
        }
        try:
            response = await self.client.post(hook.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            # (A RefusedAddress arrives as httpx.ConnectError, its message kept.)
            return None, f"{type(exc).__name__}: {str(exc)[:300]}"
        if 200 <= response.status_code < 300:
            return response.status_code, None
        return response.status_code, f"answered {response.status_code}"


async def delete_webhook(*, session: AsyncSession, webhook_id: int) -> None:
    await session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id))
    await session.execute(delete(Webhook).where(Webhook.id == webhook_id))
