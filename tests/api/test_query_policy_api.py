"""A link's query policy over the API, and the redirects it shapes."""

from __future__ import annotations

import fakeredis
import pytest

from tests.support import make_settings, migrate, running_app


async def make_link(client, **body) -> dict:
    body.setdefault("url", "https://example.com/t?id=7#top")
    response = await client.post("/api/v1/links", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def location(client, path: str) -> str:
    response = await client.get(path)
    assert response.status_code in (301, 302, 307, 308), response.text
    return response.headers["location"]


async def test_policy_is_stored_returned_and_applied(client):
    policy = {"mode": "forward", "allow": ["utm_*", "id"], "deny": ["utm_id"], "on_conflict": "target",
              "add": {"src": "short"}}
    link = await make_link(client, query=policy)
    assert link["query"] == policy
    assert (await client.get(f"/api/v1/links/{link['code']}")).json()["query"] == policy
    assert await location(client, f"/{link['code']}?utm_source=a&utm_id=9&id=666&x=1") == (
        "https://example.com/t?id=7&src=short&utm_source=a#top"
    )


async def test_policy_survives_the_redis_round_trip(client):
    link = await make_link(client, query={"mode": "drop", "add": {"k": "v"}})
    await client.get(f"/{link['code']}")
    client.app.state.redirector.forget_all()  # next answer comes from Redis
    assert await location(client, f"/{link['code']}?a=1") == "https://example.com/t?id=7&k=v#top"


async def test_links_without_a_policy_use_the_operator_default(client):
    link = await make_link(client)
    assert link["query"] is None
    assert await location(client, f"/{link['code']}?a=1&id=2") == "https://example.com/t?id=7&a=1#top"


async def test_patch_changes_the_policy_and_null_returns_to_the_default(client):
    code = (await make_link(client))["code"]
    await client.patch(f"/api/v1/links/{code}", json={"query": {"mode": "drop"}})
    assert await location(client, f"/{code}?a=1") == "https://example.com/t?id=7#top"
    reset = await client.patch(f"/api/v1/links/{code}", json={"query": None})
    assert reset.json()["query"] is None
    assert await location(client, f"/{code}?a=1") == "https://example.com/t?id=7&a=1#top"


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        pytest.param({"mode": "sideways"}, "query.mode", id="bad-mode"),
        pytest.param({"on_conflict": "merge"}, "query.on_conflict", id="bad-conflict-rule"),
        pytest.param({"allow": ["a" * 200]}, "query.allow", id="pattern-too-long"),
        pytest.param({"deny": [f"p{i}" for i in range(100)]}, "query.deny", id="too-many-patterns"),
        pytest.param({"allow": [""]}, "query.allow", id="empty-pattern"),
        pytest.param({"add": {"": "x"}}, "query.add", id="empty-add-name"),
        pytest.param({"add": {"a": "line\r\nbreak"}}, "query.add", id="control-char-in-add"),
        pytest.param({"colour": "red"}, "query.colour", id="unknown-field"),
    ],
)
async def test_a_policy_that_cannot_work_is_refused_at_create_and_patch(client, policy, field):
    created = await client.post("/api/v1/links", json={"url": "https://example.com/", "query": policy})
    assert created.status_code == 422, created.text
    assert any(e["field"].startswith(field) for e in created.json()["errors"]), created.json()
    code = (await make_link(client))["code"]
    patched = await client.patch(f"/api/v1/links/{code}", json={"query": policy})
    assert patched.status_code == 422


async def test_operator_deny_list_applies_on_top_of_every_link(sqlite_url):
    await migrate(sqlite_url)
    settings = make_settings(sqlite_url, query_deny=["fbclid", "session*"])
    async with running_app(settings, fakeredis.FakeAsyncRedis()) as client:
        plain = (await make_link(client, url="https://example.com/"))["code"]
        allowing = (await make_link(client, url="https://example.com/", query={"allow": ["*"]}))["code"]
        for code in (plain, allowing):
            assert await location(client, f"/{code}?fbclid=1&SessionId=2&keep=3") == "https://example.com/?keep=3"


async def test_operator_default_mode_drop_applies_to_links_without_a_policy(sqlite_url):
    await migrate(sqlite_url)
    settings = make_settings(sqlite_url, query_default_mode="drop")
    async with running_app(settings, fakeredis.FakeAsyncRedis()) as client:
        code = (await make_link(client, url="https://example.com/"))["code"]
        assert await location(client, f"/{code}?a=1") == "https://example.com/"


async def test_visitor_cannot_inject_header_breaking_bytes_into_location(client):
    code = (await make_link(client, url="https://example.com/"))["code"]
    response = await client.get(f"/{code}?a=%0d%0aSet-Cookie:x&b=<script>")
    assert response.status_code == 302
    loc = response.headers["location"]
    assert "\r" not in loc and "\n" not in loc and "<" not in loc
    assert loc.startswith("https://example.com/?")
