"""The ASGI middleware in front of ``/api``: no request reaches a route without a valid key.

For every request under ``/api`` it:

1. finds the key (``Authorization: Bearer <key>`` or ``X-Api-Key: <key>``)
   and checks it (``KeyService.authenticate``);
2. counts the request against the key's limit, or, when there is no valid
   key, against the client address's (so failed authentications are
   limited too: that is what stops key guessing): one Redis round trip;
3. answers 429 over the limit, 401 without a valid key, both problem JSON;
4. otherwise puts the key on the request (``scope["state"]["principal"]``)
   for the routes' permission checks, and adds ``RateLimit-Policy`` and
   ``RateLimit`` to the response.

Health, readiness, metrics, the docs and redirects never come here.
"""

from __future__ import annotations

from ..api import problems
from ..errors import StorageUnavailable, Unauthenticated
from .keys import Principal

PRINCIPAL = "principal"


def credential(headers) -> str | None:
    """The key a request carries, if any: Bearer first, then X-Api-Key."""
    api_key = None
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value.strip():
            api_key = value.decode("latin-1").strip()
    return api_key


def _is_api(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


class AccessGate:
    """Authentication and rate limits of the REST API (see the module docstring)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not _is_api(scope["path"]):
            return await self.app(scope, receive, send)
        state = scope["app"].state
        keys, limiter, settings = state.keys, state.api_limiter, state.settings
        principal: Principal | None = None
        failure: str | None = None
        token = credential(scope["headers"])
        if token is None:
            failure = "Send an API key as 'Authorization: Bearer <key>' or 'X-Api-Key: <key>'."
        else:
            try:
                principal = await keys.authenticate(token)
            except Unauthenticated as exc:
                failure = exc.reason
            except StorageUnavailable:
                # A key not checked lately needs SQL; a write would need it anyway.
                return await self._send(scope, receive, send, problems.problem(
                    503, "storage-unavailable", "Storage unavailable",
                    "The key store cannot be reached; try again shortly.", instance=scope["path"],
                    headers={"Retry-After": str(settings.sql_retry_after_seconds)},
                ))
        if principal is not None:
            decision = await limiter.hit("key", principal.key_id, state.rate_per_key, name="key")
        else:
            address = state.client_addresses.of(scope)
            decision = await limiter.hit("addr", address, state.rate_per_address, name="address")
        limit_headers = decision.headers() if decision is not None else []
        if decision is not None and not decision.allowed:
            headers = {k.decode(): v.decode() for k, v in limit_headers}
            headers["Retry-After"] = str(decision.retry_after)
            return await self._send(scope, receive, send, problems.problem(
                429, "rate-limited", "Too many requests",
                f"Over the limit of {decision.rate.limit} requests per {decision.rate.window_seconds} s "
                f"for this {decision.name}; try again in {decision.retry_after} s.",
                instance=scope["path"], headers=headers,
            ))
        if failure is not None:
            headers = {k.decode(): v.decode() for k, v in limit_headers}
            headers["WWW-Authenticate"] = 'Bearer realm="linkgate"'
            return await self._send(scope, receive, send, problems.problem(
                401, "unauthorized", "Unauthorized", failure, instance=scope["path"], headers=headers,
            ))
        scope.setdefault("state", {})[PRINCIPAL] = principal

        async def send_with_limits(message) -> None:
            if message["type"] == "http.response.start" and limit_headers:
                message["headers"] = [*message.get("headers", []), *limit_headers]
            await send(message)

        keys.note_used(principal)
        await self.app(scope, receive, send_with_limits)

    @staticmethod
    async def _send(scope, receive, send, response) -> None:
        await response(scope, receive, send)
