"""Password-protected links: the form a visitor gets, its attempts, and the unlock.

A link with a password (``password`` on create or PATCH; only its argon2id
hash is stored, see password_hash.py) is marked in its cached entry, so the
redirect knows without reading SQL. Its visitors get:

- ``GET /{code}``: the password form (200, never counted as a visit). It
  says only that a password is needed: the target is in no page and no
  header until the password is right;
- ``POST /{code}`` with the form's ``password``: a wrong one gets the form
  again with a 401; the right one is counted as the visit (status 303 in the
  visit event) and leads on to the target: a ``303 See Other`` to it for a
  client that is not a browser, and for a browser (``Sec-Fetch-Mode:
  navigate`` or an ``Accept`` naming ``text/html``) a 200 page that moves on
  by itself (a meta refresh, plus a link). The page is there because the
  pages' ``form-action 'self'`` also covers where a form's answer redirects
  to: Chromium refuses a 303 from this service's form to another site;
- ``GET /{code}`` with an ``X-Link-Password: <password>`` header (API
  clients, scripts): the link's usual redirect when it is right, 401 problem
  JSON ``password-wrong`` when it is not; without the header, a client that
  asks for JSON gets 401 ``password-required``.

Every attempt, by form or header, counts against two limits of the API's
limiter (access/limiter.py: one Redis script call each, shared by every
replica): ``LINKGATE_PASSWORD_ATTEMPTS_PER_LINK`` across all its visitors and
``LINKGATE_PASSWORD_ATTEMPTS_PER_ADDRESS`` across all links. Over either, 429
with ``Retry-After``, and the password is not even checked. With Redis away
the limits fail open, as the API's do; argon2's cost still bounds guessing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from enum import Enum
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..access.keys import redact
from ..access.rates import Rate, parse_rate
from ..errors import PROBLEM_TYPE_PREFIX, StorageUnavailable
from ..store import sql
from ..visits.recorder import LINK_ID
from . import gateway_answer
from .marker import strip_marker
from .password_hash import verify_password
from .render import NO_STORE, Answer, Pages, accepts_json
from .routes import CODE
from .standing import State, look_up

log = logging.getLogger(__name__)

HEADER = b"x-link-password"
# RFC 9110 asks a 401 to name how to authenticate: this header, in the place of a scheme.
CHALLENGE = (b"www-authenticate", b'Link-Password realm="linkgate", header="X-Link-Password"')
# The visit event's status of a link unlocked through its form (the answer was a 303 or its page).
UNLOCKED = 303


class Outcome(Enum):
    RIGHT = "right"
    WRONG = "wrong"
    LIMITED = "limited"


@dataclass(frozen=True, slots=True)
class Attempt:
    outcome: Outcome
    headers: tuple[tuple[bytes, bytes], ...] = ()  # RateLimit headers, and Retry-After when limited


def is_browser_navigation(scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"sec-fetch-mode":
            return value == b"navigate"
    return any(name == b"accept" and b"text/html" in value for name, value in scope["headers"])


def header_password(scope) -> str | None:
    for name, value in scope["headers"]:
        if name == HEADER:
            return value.decode("utf-8", "replace")
    return None


def problem(status: int, kind: str, title: str, detail: str, path: str,
            headers: tuple[tuple[bytes, bytes], ...] = ()) -> Answer:
    body = json.dumps({"type": PROBLEM_TYPE_PREFIX + kind, "title": title, "status": status,
                       "detail": detail, "instance": redact(path)}).encode()
    return Answer(status=status, body=body, headers=(NO_STORE, *headers), content_type=b"application/problem+json")


class PasswordGate:
    """Checks passwords of protected links under the attempt limits (see the module docstring)."""

    def __init__(self, *, db: sql.Database, limiter, addresses, pages: Pages, public_base_url: str,
                 per_link: Rate | None, per_address: Rate | None) -> None:
        self._db = db
        self._limiter = limiter
        self._addresses = addresses
        self.pages = pages
        self._base = public_base_url.rstrip("/")
        self._per_link = per_link
        self._per_address = per_address

    @classmethod
    def from_settings(cls, settings, *, db, limiter, addresses, pages: Pages) -> PasswordGate:
        return cls(db=db, limiter=limiter, addresses=addresses, pages=pages,
                   public_base_url=settings.public_base_url,
                   per_link=parse_rate(settings.password_attempts_per_link),
                   per_address=parse_rate(settings.password_attempts_per_address))

    async def attempt(self, code: str, scope, password: str) -> Attempt:
        """Count one attempt against both limits, then (if under them) check the password."""
        headers: list[tuple[bytes, bytes]] = []
        for kind, ident, rate, name in (("pw-link", code, self._per_link, "link-password"),
                                        ("pw-addr", self._addresses.of(scope), self._per_address,
                                         "address-password")):
            decision = await self._limiter.hit(kind, ident, rate, name=name)
            if decision is None:
                continue
            if not decision.allowed:
                return Attempt(Outcome.LIMITED, (*decision.headers(),
                                                 (b"retry-after", str(decision.retry_after).encode())))
            headers.extend(decision.headers())
        # The primary, not the replica: a password just changed must not still open with the old one.
        async with self._db.reading() as session:
            connection = await session.connection()
            stored = await sql.find_password_hash(connection=connection, code=code)
        if stored is None:  # the password was removed since this entry was cached
            return Attempt(Outcome.RIGHT, tuple(headers))
        right = await verify_password(stored, password)
        return Attempt(Outcome.RIGHT if right else Outcome.WRONG, tuple(headers))

    def short_url(self, code: str) -> str:
        return f"{self._base}/{code}"

    def form(self, code: str, *, status: int = 200, wrong: bool = False,
             headers: tuple[tuple[bytes, bytes], ...] = ()) -> Answer:
        return self.pages.page(status, "password.html", headers=(NO_STORE, *headers),
                               short_url=self.short_url(code), wrong=wrong)

    def too_many(self, headers: tuple[tuple[bytes, bytes], ...]) -> Answer:
        return self.pages.error(429, "Too many attempts",
                                "Too many passwords were tried for this link or from this address. "
                                "Wait a minute, then try again.", headers=headers)

    async def check_header(self, code: str, scope) -> Answer | None:
        """For the redirect of a protected link: None lets it redirect; otherwise what to answer instead."""
        password = header_password(scope)
        if password is None:
            if accepts_json(scope):
                return problem(401, "password-required", "Password required",
                               "This link needs its password, in the X-Link-Password header.", scope["path"],
                               (CHALLENGE,))
            return self.form(code)
        try:
            attempt = await self.attempt(code, scope, password)
        except StorageUnavailable:
            return problem(503, "storage-unavailable", "Storage unavailable",
                           "The link store cannot be reached; try again shortly.", scope["path"])
        if attempt.outcome is Outcome.RIGHT:
            return None
        if attempt.outcome is Outcome.LIMITED:
            return problem(429, "rate-limited", "Too many requests",
                           "Too many password attempts for this link or from this address.", scope["path"],
                           attempt.headers)
        return problem(401, "password-wrong", "Wrong password", "The X-Link-Password header is not this "
                       "link's password.", scope["path"], (CHALLENGE, *attempt.headers))


# --- POST /{code}: the form ------------------------------------------------------

router = APIRouter(include_in_schema=False)

MAX_FORM_BYTES = 4096


def form_password(body: bytes) -> str:
    fields = parse_qs(body[:MAX_FORM_BYTES].decode("utf-8", "replace"), keep_blank_values=True)
    return (fields.get("password") or [""])[0]


@router.post("/" + CODE)
async def unlock(code: str, request: Request) -> Response:
    """A password link's form: the right password leads on to the target, a wrong one gets 401."""
    gateway = request.app.redirect_gateway
    gate: PasswordGate = request.app.state.password_gate
    scope = request.scope
    password = form_password(await request.body())
    try:
        found = await look_up(gateway, code)
    except StorageUnavailable:
        return _unavailable(gate, request)
    if found.state is State.UNKNOWN:
        return gateway_answer.unknown(gateway, code)
    if found.state is State.GONE:
        return gateway_answer.gone(gateway, code, found.fallback)
    query = scope["query_string"]
    if not found.protected:  # its password was removed meanwhile: the plain redirect
        location = f"/{code}" + (f"?{query.decode('latin-1')}" if query else "")
        return Answer(303, headers=((b"location", location.encode("latin-1")), NO_STORE),
                      content_type=None).response()
    try:
        attempt = await gate.attempt(code, scope, password)
    except StorageUnavailable:
        return _unavailable(gate, request)
    if attempt.outcome is Outcome.LIMITED:
        return gate.too_many(attempt.headers).response()
    if attempt.outcome is Outcome.WRONG:
        return gate.form(code, status=401, wrong=True, headers=(CHALLENGE, *attempt.headers)).response()
    destination = found.destination
    lifecycle = destination.lifecycle
    if lifecycle.max_visits is not None and not await gateway.visit_limits.admit(code, lifecycle.max_visits, scope):
        return gateway_answer.gone(gateway, code, lifecycle.fallback)
    location, _ = destination.location(strip_marker(query, scope) if query else query)
    scope[LINK_ID] = destination.link_id
    if gateway.recorder is not None:
        gateway.recorder.record(code, UNLOCKED, scope)
    if is_browser_navigation(scope):
        return gate.pages.page(200, "unlocked.html", location=location.decode("latin-1")).response()
    return Answer(303, headers=((b"location", location), NO_STORE), content_type=None).response()


def _unavailable(gate: PasswordGate, request: Request) -> Response:
    retry_after = str(request.app.state.settings.sql_retry_after_seconds).encode()
    return gate.pages.error(503, "Try again shortly", "The link store cannot be reached right now.",
                            headers=((b"retry-after", retry_after),)).response()
