"""What a visitor gets, by the link's state: the README's table, run by the API and integration tiers.

Each case makes a link in one state, visits it as a browser and as a JSON
client, and checks the answer; `fallback` says whether the link has a
fallback_url, `gone_url` whether the operator set LINKGATE_GONE_REDIRECT_URL.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest

from tests.support import bearer, make_key

STATES = ("active", "scheduled", "expired", "exhausted", "disabled", "blocked", "deleted", "unknown")
GONE = {"expired", "exhausted", "disabled", "blocked", "deleted"}


def expected(state: str, *, fallback: bool, gone_url: bool) -> tuple[int, str | None]:
    """(status, Location) a browser gets."""
    if state == "active":
        return 302, "https://example.com/target"
    if state in ("scheduled", "unknown"):
        return 404, None
    if fallback:
        return 302, "https://example.com/fallback"
    if gone_url:
        return 302, "https://example.com/gone"
    return 410, None


CASES = [
    pytest.param(state, fallback, gone_url, id=f"{state}{'-fallback' if fallback else ''}{'-gone-url' if gone_url else ''}")
    for state in STATES
    for fallback in ((False, True) if state in GONE else (False,))
    for gone_url in ((False, True) if state in GONE else (False,))
]


async def make_in_state(client, state: str, *, fallback: bool) -> str:
    """A link in `state` (made through the API, as its owner would), and its code."""
    # A name of its own: the integration tier's database outlives each client, and id() values are reused.
    admin = bearer(await make_key(client.app, f"lifecycle-{state}-{fallback}-{secrets.token_hex(6)}", "admin"))
    now = datetime.now(UTC)
    body: dict = {"url": "https://example.com/target"}
    if fallback:
        body["fallback_url"] = "https://example.com/fallback"
    if state == "scheduled":
        body["valid_since"] = (now + timedelta(days=1)).isoformat()
    if state == "exhausted":
        body["max_visits"] = 1
    if state == "disabled":
        body["disabled"] = True
    if state == "unknown":
        return "neverwas"
    made = await client.post("/api/v1/links", json=body, headers=admin)
    assert made.status_code == 201, made.text
    code = made.json()["code"]
    if state == "expired":
        # Made live, then its window closed: a valid_until in the past is refused on create.
        changed = await client.patch(f"/api/v1/links/{code}", headers=admin,
                                     json={"valid_until": (now - timedelta(seconds=1)).isoformat()})
        assert changed.status_code == 200 and changed.json()["status"] == "expired", changed.text
    if state == "exhausted":
        first = await client.get(f"/{code}", headers={"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"})
        assert first.status_code == 302
    if state == "blocked":
        assert (await client.patch(f"/api/v1/links/{code}", json={"blocked": True}, headers=admin)).status_code == 200
    if state == "deleted":
        assert (await client.delete(f"/api/v1/links/{code}", headers=admin)).status_code == 204
    return code


async def check_case(client, state: str, fallback: bool, gone_url: bool) -> None:
    code = await make_in_state(client, state, fallback=fallback)
    browser = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0", "accept": "text/html"}
    answer = await client.get(f"/{code}", headers=browser)
    status, location = expected(state, fallback=fallback, gone_url=gone_url)
    assert (answer.status_code, answer.headers.get("location")) == (status, location), answer.text
    if state in GONE:
        assert answer.headers["cache-control"] == "no-store"
    if status == 410:
        assert answer.headers["content-type"].startswith("text/html")
        assert "gone" in answer.text.lower()
        as_json = await client.get(f"/{code}", headers={**browser, "accept": "application/json"})
        assert as_json.status_code == 410
        assert as_json.headers["content-type"] == "application/problem+json"
        assert as_json.json()["type"] == "urn:linkgate:problem:link-gone"
