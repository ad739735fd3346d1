"""Redis or SQL going away: what still works, what answers 503, what is never lost."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from service.store.sql import Database


async def make_link(client, **body) -> str:
    body.setdefault("url", "https://example.com/target")
    response = await client.post("/api/v1/links", json=body)
    assert response.status_code == 201, response.text
    return response.json()["code"]


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_redis_going_away_mid_test_leaves_redirects_and_creates_working(client, redis_server):
    code = await make_link(client)
    assert (await client.get(f"/{code}")).status_code == 302
    errors_before = sample("linkgate_redis_errors_total", operation="get")

    redis_server.connected = False
    client.app.state.redirector.forget_all()
    assert (await client.get(f"/{code}")).headers["location"] == "https://example.com/target"
    new_code = await make_link(client, url="https://example.com/made-while-redis-was-down")
    client.app.state.redirector.forget_all()
    assert (await client.get(f"/{new_code}")).status_code == 302
    assert (await client.get("/unknown9")).status_code == 404
    assert sample("linkgate_redis_errors_total", operation="get") > errors_before


async def test_an_edit_made_while_redis_is_away_is_not_served_stale_once_it_returns(client, redis_server):
    state = client.app.state
    code = await make_link(client)
    await client.get(f"/{code}")  # now cached in Redis
    redis_server.connected = False
    response = await client.patch(f"/api/v1/links/{code}", json={"url": "https://example.com/edited"})
    assert response.status_code == 200
    redis_server.connected = True
    state.cache._down_until = 0.0  # the cooldown would otherwise skip Redis for a second
    state.redirector.forget_all()
    # The stale Redis entry is still there until the pending invalidation is drained.
    assert await state.cache.redis.exists(state.cache.key(code))
    assert await state.links.drain_pending_invalidations() == 1
    assert (await client.get(f"/{code}")).headers["location"] == "https://example.com/edited"
    assert await state.links.drain_pending_invalidations() == 0


@pytest.fixture
async def sql_down(client):
    """Point the app's SQL at a port where nothing listens; restore it afterwards."""
    state = client.app.state
    real = state.db
    dead = Database.open("postgresql+asyncpg://linkgate@127.0.0.1:1/nowhere")

    def cut() -> None:
        state.db = state.links.db = state.redirector._db = dead

    yield cut
    state.db = state.links.db = state.redirector._db = real
    await dead.close()


async def test_sql_going_away_keeps_cached_redirects_and_answers_writes_503(client, sql_down):
    code = await make_link(client)
    await client.get(f"/{code}")
    sql_down()
    client.app.state.redirector.forget_all()  # Redis still has it

    assert (await client.get(f"/{code}")).status_code == 302
    create = await client.post("/api/v1/links", json={"url": "https://example.com/x"})
    assert create.status_code == 503
    assert create.headers["retry-after"] == str(client.app.state.settings.sql_retry_after_seconds)
    assert create.headers["content-type"] == "application/problem+json"
    assert (await client.patch(f"/api/v1/links/{code}", json={"redirect_status": 301})).status_code == 503
    assert (await client.delete(f"/api/v1/links/{code}")).status_code == 503
    uncached = await client.get("/nevercached", headers={"accept": "application/json"})
    assert uncached.status_code == 503
    assert "retry-after" in uncached.headers


async def test_sql_outage_writes_leave_the_stored_link_intact(client, sql_down):
    code = await make_link(client, url="https://example.com/keep")
    state = client.app.state
    real = state.db
    sql_down()
    await client.patch(f"/api/v1/links/{code}", json={"url": "https://example.com/lost"})
    await client.delete(f"/api/v1/links/{code}")
    state.db = state.links.db = state.redirector._db = real
    stored = (await client.get(f"/api/v1/links/{code}")).json()
    assert stored["url"] == "https://example.com/keep"


async def test_an_alias_created_while_redis_is_away_does_not_stay_a_cached_miss(client, redis_server):
    state = client.app.state
    assert (await client.get("/soon-here")).status_code == 404  # Redis now caches the miss
    redis_server.connected = False
    await make_link(client, alias="soon-here")
    redis_server.connected = True
    state.cache._down_until = 0.0
    state.redirector.forget_all()
    assert await state.links.drain_pending_invalidations() == 1
    assert (await client.get("/soon-here")).status_code == 302
