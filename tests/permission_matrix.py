"""The permission matrix: every route x every role x whose link, and the status it answers.

Run by tests/api/test_permissions.py (SQLite + fakeredis) and by
tests/integration/test_permissions_postgres.py (PostgreSQL + Redis): the
same table, the same checks. The README's permission table is this table
(tests/api/test_permissions.py checks that they agree).
"""

from __future__ import annotations

import secrets

import httpx
import pytest

from tests.support import bearer, make_key

# Each route: method, path (with {code} or {key}), body. Names are the README's.
ROUTES = {
    "create link": ("POST", "/api/v1/links", {"url": "https://example.com/new"}),
    "list links": ("GET", "/api/v1/links", None),
    "read link": ("GET", "/api/v1/links/{code}", None),
    "change link": ("PATCH", "/api/v1/links/{code}", {"url": "https://example.com/changed"}),
    "delete link": ("DELETE", "/api/v1/links/{code}", None),
    "block link": ("PATCH", "/api/v1/links/{code}", {"blocked": True}),
    "create links in batch": ("POST", "/api/v1/links/batch", {"links": [{"url": "https://example.com/b"}]}),
    "list tags": ("GET", "/api/v1/tags", None),
    "create key": ("POST", "/api/v1/keys", {"role": "reader"}),
    "list keys": ("GET", "/api/v1/keys", None),
    "read key": ("GET", "/api/v1/keys/{key}", None),
    "revoke key": ("DELETE", "/api/v1/keys/{key}", None),
    "read link stats": ("GET", "/api/v1/links/{code}/stats", None),
    "read service stats": ("GET", "/api/v1/stats", None),
}

# role -> route -> status; for routes on one link, status by whose link it is:
# "own" (the key made it), "other" (another editor's), "legacy" (made before keys, no owner).
# "none" sends no key at all.
EXPECTED: dict[str, dict[str, int | dict[str, int]]] = {
    "admin": {
        "create link": 201, "list links": 200,
        "read link": {"own": 200, "other": 200, "legacy": 200},
        "change link": {"own": 200, "other": 200, "legacy": 200},
        "delete link": {"own": 204, "other": 204, "legacy": 204},
        "block link": {"own": 200, "other": 200, "legacy": 200},
        "create links in batch": 200, "list tags": 200,
        "create key": 201, "list keys": 200, "read key": 200, "revoke key": 204,
        "read link stats": {"own": 200, "other": 200, "legacy": 200}, "read service stats": 200,
    },
    "editor": {
        "create link": 201, "list links": 200,
        "read link": {"own": 200, "other": 404, "legacy": 404},
        "change link": {"own": 200, "other": 404, "legacy": 404},
        "delete link": {"own": 204, "other": 404, "legacy": 404},
        "block link": {"own": 403, "other": 403, "legacy": 403},
        "create links in batch": 200, "list tags": 200,
        "create key": 403, "list keys": 403, "read key": 403, "revoke key": 403,
        "read link stats": {"own": 200, "other": 404, "legacy": 404}, "read service stats": 403,
    },
    "reader": {
        "create link": 403, "list links": 200,
        "read link": {"other": 200, "legacy": 200},
        "change link": {"other": 403, "legacy": 403},
        "delete link": {"other": 403, "legacy": 403},
        "block link": {"other": 403, "legacy": 403},
        "create links in batch": 403, "list tags": 200,
        "create key": 403, "list keys": 403, "read key": 403, "revoke key": 403,
        "read link stats": {"other": 200, "legacy": 200}, "read service stats": 200,
    },
    "none": {
        "create link": 401, "list links": 401,
        "read link": {"other": 401, "legacy": 401},
        "change link": {"other": 401, "legacy": 401},
        "delete link": {"other": 401, "legacy": 401},
        "block link": {"other": 401, "legacy": 401},
        "create links in batch": 401, "list tags": 401,
        "create key": 401, "list keys": 401, "read key": 401, "revoke key": 401,
        "read link stats": {"other": 401, "legacy": 401}, "read service stats": 401,
    },
}

# What a listing shows each role, of the three kinds of link.
LISTED = {"admin": {"own", "other", "legacy"}, "editor": {"own"}, "reader": {"other", "legacy"}}


def cases() -> list:
    out = []
    for role, routes in EXPECTED.items():
        for route, expected in routes.items():
            for whose, status in (expected.items() if isinstance(expected, dict) else [("-", expected)]):
                out.append(pytest.param(role, route, whose, status, id=f"{role}-{route.replace(' ', '-')}-{whose}"))
    return out


CASES = cases()


def size() -> int:
    return len(CASES)


async def check_case(client: httpx.AsyncClient, role: str, route: str, whose: str, expected: int) -> None:
    """Make the keys and links the case needs, send the request, and check the answer and its effect."""
    app = client.app  # type: ignore[attr-defined]
    tag = secrets.token_hex(4)
    tokens = {name: await make_key(app, f"{name}-{tag}", name) for name in ("admin", "editor", "reader")}
    other = await make_key(app, f"other-editor-{tag}", "editor")
    victim = await make_key(app, f"victim-{tag}", "reader")
    headers = bearer(tokens[role]) if role != "none" else {}

    async def made_by(token: str) -> str:
        response = await client.post("/api/v1/links", json={"url": f"https://example.com/{tag}"},
                                     headers=bearer(token))
        assert response.status_code == 201, response.text
        return response.json()["code"]

    links = {
        "other": await made_by(other),
        "legacy": (await app.state.links.bulk_create([f"https://example.com/legacy/{tag}"]))[0],
    }
    if role in ("admin", "editor"):
        links["own"] = await made_by(tokens[role])
    code = links.get(whose)
    admin = bearer(tokens["admin"]) if role != "admin" else bearer(tokens["admin"])
    before = (await client.get(f"/api/v1/links/{code}", headers=admin)).json() if code else None

    method, path, body = ROUTES[route]
    victim_id = victim.split("_")[1]
    path = path.format(code=code, key=victim_id)
    if route == "create key":
        body = {**body, "name": f"made-{tag}"}
    response = await client.request(method, path, json=body, headers=headers)
    assert response.status_code == expected, (role, route, whose, response.text)
    if expected >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        if expected == 401:
            assert response.headers["www-authenticate"].startswith("Bearer")

    # The effect, checked as an admin: only what was answered as done happened.
    after = await client.get(f"/api/v1/links/{code}", headers=admin) if code else None
    if route == "change link":
        if expected == 200:
            assert after.json()["url"] == "https://example.com/changed"
            assert after.json()["updated_by"] == f"{role}-{tag}"
        else:
            assert after.json() == before
    elif route == "block link":
        assert after.json()["blocked"] is (expected == 200)
        assert after.json()["status"] == ("blocked" if expected == 200 else "active")
    elif route == "delete link":
        assert after.status_code == (404 if expected == 204 else 200)
    elif route == "revoke key":
        still = await client.get("/api/v1/links", headers=bearer(victim))
        assert still.status_code == (401 if expected == 204 else 200)
    elif route == "create links in batch" and expected == 200:
        assert [item["status"] for item in response.json()["results"]] == [201]
        assert response.json()["results"][0]["link"]["created_by"] == f"{role}-{tag}"
    elif route == "create link" and expected == 201:
        assert response.json()["created_by"] == f"{role}-{tag}"
    elif route in ("read link stats", "read service stats") and expected == 200:
        assert set(response.json()) >= {"total", "days", "referrers", "countries", "browsers", "os", "devices"}
        assert ("orphans" in response.json()) == (route == "read service stats")
    elif route == "list links" and expected == 200:
        seen = {link["code"] for link in response.json()["data"]}
        shown = {kind for kind, made in links.items() if made in seen}
        assert shown == LISTED[role] & set(links), (role, shown)
