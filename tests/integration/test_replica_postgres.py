"""Redirects on a real PostgreSQL streaming replica (LINKGATE_DATABASE_READ_URL), with its replay paused."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import event

from service.store.cache import MISSING, CachedLink
from tests.integration.conftest import REDIS_URL, Replicated
from tests.support import make_settings, running_app

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def replay_paused(replicated: Replicated) -> AsyncIterator[None]:
    """The replica applies nothing the primary writes meanwhile: it lags for as long as this lasts."""
    await replicated.replica_execute("SELECT pg_wal_replay_pause()")
    try:
        yield
    finally:
        await replicated.replica_execute("SELECT pg_wal_replay_resume()")


def statements_on(engine) -> list[str]:
    """The SELECTs of links sent through `engine` from now on (the list fills as they go)."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "FROM links" in statement:
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    return seen


@pytest.fixture
def replica_settings(replicated, redis_prefix):
    return make_settings(replicated.primary_url, database_read_url=replicated.replica_url, redis_url=REDIS_URL,
                         redis_key_prefix=redis_prefix)


async def test_a_link_made_while_the_replica_replays_nothing_redirects_at_once_and_is_never_cached_unknown(
        replicated, replica_settings):
    async with running_app(replica_settings, None) as client:
        state = client.app.state
        await replicated.caught_up()
        async with replay_paused(replicated):
            code = (await client.post("/api/v1/links", json={"url": "https://example.com/fresh"})).json()["code"]
            rows = await replicated.replica_execute(f"SELECT count(*) FROM links WHERE code = '{code}'")
            assert rows == [(0,)], "the replica must not have the link yet (its replay is paused)"
            await state.cache.drop(code)  # as after a Redis flush: SQL must answer
            state.redirector.forget_all()
            on_primary = statements_on(state.db.engine)
            on_replica = statements_on(state.db.read_engine)
            redirect = await client.get(f"/{code}")
            assert (redirect.status_code, redirect.headers["location"]) == (302, "https://example.com/fresh")
            assert (len(on_replica), len(on_primary)) == (1, 1), "asked of the replica, then of the primary"
            await state.redirector.aclose()  # the Redis fill behind the answer is in
            cached = await state.cache.get(code)
            assert isinstance(cached, CachedLink) and cached.url == "https://example.com/fresh"
            # A code no one has: unknown on the primary too, and only then cached as unknown.
            assert (await client.get("/NoSuchCode42")).status_code == 404
            await state.redirector.aclose()
            assert await state.cache.get("NoSuchCode42") is MISSING
        lag = await replicated.caught_up()
        print(f"replica caught up {lag * 1000:.0f} ms after its replay resumed")


async def test_links_the_replica_has_are_read_from_it_alone(replicated, replica_settings):
    async with running_app(replica_settings, None) as client:
        state = client.app.state
        codes = await state.links.bulk_create([f"https://example.com/replica/{i}" for i in range(50)])
        lag = await replicated.caught_up()
        await state.cache.drop(*codes)
        state.redirector.forget_all()
        on_primary = statements_on(state.db.engine)
        on_replica = statements_on(state.db.read_engine)
        for number, code in enumerate(codes):
            assert (await client.get(f"/{code}")).headers["location"] == f"https://example.com/replica/{number}"
        assert on_primary == [] and on_replica, (len(on_primary), len(on_replica))
        print(f"replica lag after 50 inserts: {lag * 1000:.1f} ms")


async def test_lists_and_stats_read_the_primary_while_the_replica_lags(replicated, replica_settings):
    async with running_app(replica_settings, None) as client:
        await replicated.caught_up()
        async with replay_paused(replicated):
            code = (await client.post("/api/v1/links", json={"url": "https://example.com/listed"})).json()["code"]
            assert (await client.get(f"/api/v1/links/{code}")).status_code == 200
            listed = (await client.get("/api/v1/links", params={"limit": 100})).json()["data"]
            assert code in {link["code"] for link in listed}
            assert (await client.get(f"/api/v1/links/{code}/stats")).status_code == 200
