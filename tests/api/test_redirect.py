"""The redirect path: statuses, headers, 404s, and the cache in front of SQL."""

from __future__ import annotations

import asyncio

import fakeredis
import pytest
from sqlalchemy import event, update

from service.store.models import Link

from tests.support import make_settings, migrate, running_app


async def make_link(client, **body) -> str:
    body.setdefault("url", "https://example.com/target")
    response = await client.post("/api/v1/links", json=body)
    assert response.status_code == 201, response.text
    return response.json()["code"]


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_redirect_answers_the_links_status_and_location(client, status, method):
    code = await make_link(client, redirect_status=status)
    response = await client.request(method, f"/{code}")
    assert response.status_code == status
    assert response.headers["location"] == "https://example.com/target"
    assert response.content == b""


@pytest.mark.parametrize("status", [302, 307])
async def test_temporary_redirects_are_not_stored_by_browsers(client, status):
    code = await make_link(client, redirect_status=status)
    assert (await client.get(f"/{code}")).headers["cache-control"] == "private, no-store"


@pytest.mark.parametrize("status", [301, 308])
async def test_permanent_redirects_carry_the_configured_max_age(client, settings, status):
    code = await make_link(client, redirect_status=status)
    cache_control = (await client.get(f"/{code}")).headers["cache-control"]
    assert cache_control == f"public, max-age={settings.permanent_redirect_max_age}"


async def test_default_status_comes_from_settings(sqlite_url):
    await migrate(sqlite_url)
    settings = make_settings(sqlite_url, default_redirect_status=301, permanent_redirect_max_age=60)
    async with running_app(settings, fakeredis.FakeAsyncRedis()) as client:
        code = await make_link(client)
        response = await client.get(f"/{code}")
    assert response.status_code == 301
    assert response.headers["cache-control"] == "public, max-age=60"


async def test_unknown_code_answers_an_html_page_to_browsers(client):
    response = await client.get("/nosuch1", headers={"accept": "text/html,application/xhtml+xml,*/*"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert b"Link not found" in response.content


async def test_unknown_code_answers_problem_json_to_api_clients(client):
    response = await client.get("/nosuch1", headers={"accept": "application/json"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:linkgate:problem:link-not-found"


@pytest.mark.parametrize("path", ["/healthz", "/docs", "/openapi.json", "/metrics"])
async def test_reserved_paths_are_served_by_the_service_not_treated_as_codes(client, path):
    assert (await client.get(path)).status_code == 200


async def test_request_id_is_echoed_or_generated(client):
    code = await make_link(client)
    echoed = await client.get(f"/{code}", headers={"x-request-id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    first = (await client.get(f"/{code}")).headers["x-request-id"]
    second = (await client.get(f"/{code}")).headers["x-request-id"]
    assert first and second and first != second


def count_link_selects(engine) -> list[str]:
    """The redirect's SQL lookups of links (store.sql.find_targets) from now on; the background
    tasks' own reads (webhook deliveries, expiry timers) are not counted."""
    statements: list[str] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().startswith("SELECT links.code, links.url,"):
            statements.append(statement)

    return statements


async def test_unknown_codes_reach_sql_once_per_miss_ttl(client):
    state = client.app.state
    selects = count_link_selects(state.db.engine)
    for _ in range(5):
        state.redirector.forget_all()  # only Redis stands between the visitor and SQL now
        assert (await client.get("/unknown1")).status_code == 404
        await state.redirector.aclose()  # the miss is written to Redis behind the answer: let it land
    assert len(selects) == 1
    assert await state.cache.redis.ttl(state.cache.key("unknown1")) <= state.settings.cache_miss_ttl_seconds


async def test_redirects_are_served_from_redis_once_cached(client):
    state = client.app.state
    code = await make_link(client)
    selects = count_link_selects(state.db.engine)
    for _ in range(3):
        state.redirector.forget_all()
        assert (await client.get(f"/{code}")).status_code == 302
    assert selects == []


async def test_create_replaces_a_cached_miss_for_its_alias(client):
    assert (await client.get("/later-alias")).status_code == 404
    await make_link(client, alias="later-alias")
    assert (await client.get("/later-alias")).status_code == 302
    client.app.state.redirector.forget_all()
    assert (await client.get("/later-alias")).status_code == 302


async def test_patch_and_delete_drop_the_redis_entry(client):
    state = client.app.state
    code = await make_link(client)
    await client.get(f"/{code}")
    key = state.cache.key(code)
    assert await state.cache.redis.exists(key)
    await client.patch(f"/api/v1/links/{code}", json={"url": "https://example.com/new"})
    assert not await state.cache.redis.exists(key)
    await client.get(f"/{code}")
    await client.delete(f"/api/v1/links/{code}")
    assert (await client.get(f"/{code}")).status_code == 410


async def test_another_replicas_edit_shows_within_the_local_cache_ttl(client):
    """A write made elsewhere (straight to SQL and Redis, told to no replica) is seen once the local entry expires."""
    state = client.app.state
    code = await make_link(client)
    # The create's change messages (pub/sub: the writer's, then the relay's) are heard
    # first, so they do not drop the entry below.
    for _ in range(300):
        if state.changes.heard >= 2:
            break
        await asyncio.sleep(0.01)
    assert state.changes.heard == 2
    assert (await client.get(f"/{code}")).headers["location"] == "https://example.com/target"
    async with state.db.transaction() as session:
        await session.execute(update(Link).where(Link.code == code).values(url="https://elsewhere.example/"))
    await state.cache.drop(code)
    # Still the old answer from this process's memory ...
    assert (await client.get(f"/{code}")).headers["location"] == "https://example.com/target"
    # ... until its entry expires (the clock is moved, not slept).
    real_clock = state.redirector._clock
    state.redirector._clock = lambda: real_clock() + state.settings.local_cache_ttl_seconds + 0.01
    assert (await client.get(f"/{code}")).headers["location"] == "https://elsewhere.example/"


async def test_an_unexpected_error_on_the_redirect_path_answers_a_500_problem(client, monkeypatch):
    code = await make_link(client)

    async def broken(_code):
        raise RuntimeError("boom")

    monkeypatch.setattr(client.app.redirect_gateway.redirector, "find", broken)
    response = await client.get(f"/{code}", headers={"accept": "application/json"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:linkgate:problem:internal"


async def test_a_stale_entry_written_back_by_a_racing_load_is_dropped_again(client):
    """A redirect that read the old row just before a PATCH may refill Redis with it afterwards."""
    state = client.app.state
    state.links.redrop_after_seconds = 0.05
    code = await make_link(client, url="https://example.com/old")
    await client.patch(f"/api/v1/links/{code}", json={"url": "https://example.com/new"})
    from service.store.cache import CachedLink

    # The racing load's late write-back of the old row:
    await state.cache.put(code, CachedLink(url="https://example.com/old", redirect_status=302, query_policy=None))
    await asyncio.sleep(0.2)
    state.redirector.forget_all()
    assert (await client.get(f"/{code}")).headers["location"] == "https://example.com/new"


async def test_a_redis_miss_that_lands_after_another_requests_sql_load_does_not_load_again(client):
    state = client.app.state
    code = await make_link(client)
    await state.cache.drop(code)
    state.redirector.forget_all()
    selects = count_link_selects(state.db.engine)
    first_done = asyncio.Event()
    real_get = state.cache.get
    calls = 0

    async def get(code_):
        nonlocal calls
        calls += 1
        if calls == 2:  # the second visitor's Redis answer (a miss) arrives late
            answer = await real_get(code_)
            await first_done.wait()
            return answer
        return await real_get(code_)

    state.cache.get = get
    try:
        async def first():
            response = await client.get(f"/{code}")
            first_done.set()
            return response

        responses = await asyncio.gather(first(), client.get(f"/{code}"))
    finally:
        state.cache.get = real_get
    assert [r.status_code for r in responses] == [302, 302]
    assert len(selects) == 1


async def test_the_local_cache_stays_within_its_size_and_drops_the_oldest_first(sqlite_url, redis_server):
    settings = make_settings(sqlite_url, local_cache_size=16)
    await migrate(settings.database_url)
    async with running_app(settings, fakeredis.FakeAsyncRedis(server=redis_server)) as client:
        redirector = client.app.state.redirector
        codes = [await make_link(client, url=f"https://example.com/{n}") for n in range(40)]
        sizes = []
        for code in codes:
            assert (await client.get(f"/{code}")).status_code == 302
            sizes.append(len(redirector._local))
        assert max(sizes) == 16
        # The newest links are the ones still held; the first ones went first.
        assert codes[-1] in redirector._local
        assert codes[0] not in redirector._local
        # Whatever was dropped is still answered, from Redis.
        selects = count_link_selects(client.app.state.db.engine)
        assert (await client.get(f"/{codes[0]}")).headers["location"] == "https://example.com/0"
        assert selects == []
