"""The service on real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid

import pytest
import redis.asyncio as redis

from tests.support import make_settings, running_app

pytestmark = pytest.mark.integration


async def make_link(client, **body) -> dict:
    body.setdefault("url", "https://example.com/target")
    response = await client.post("/api/v1/links", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def test_links_round_trip_through_postgres_and_redis(target_settings):
    async with running_app(target_settings, None) as client:
        link = await make_link(client, url="https://example.com/pg?a=1", redirect_status=307)
        code = link["code"]
        assert (await client.get(f"/api/v1/links/{code}")).json() == link
        redirect = await client.get(f"/{code}?utm_source=x")
        assert redirect.status_code == 307
        assert redirect.headers["location"] == "https://example.com/pg?a=1&utm_source=x"
        cache = client.app.state.cache
        assert 0 < await cache.redis.ttl(cache.key(code)) <= target_settings.cache_ttl_seconds
        patched = await client.patch(f"/api/v1/links/{code}", json={"url": "https://example.com/new"})
        assert patched.status_code == 200
        assert not await cache.redis.exists(cache.key(code))
        assert (await client.get(f"/{code}")).headers["location"] == "https://example.com/new"
        assert (await client.delete(f"/api/v1/links/{code}")).status_code == 204
        assert (await client.get(f"/{code}")).status_code == 410


async def test_readiness_checks_postgres_migrations_and_redis(pg_settings):
    async with running_app(pg_settings, None) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"sql": "ok", "migrations": "ok", "redis": "ok"}


async def test_racing_creates_of_one_alias_on_postgres_give_exactly_one_201(pg_settings):
    alias = f"race-{uuid.uuid4().hex[:8]}"
    async with running_app(pg_settings, None) as client:
        responses = await asyncio.gather(
            *(client.post("/api/v1/links", json={"url": f"https://example.com/{i}", "alias": alias})
              for i in range(40))
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 39


async def test_keyset_pages_on_postgres_cover_every_link_once(pg_settings):
    # Under a tag of its own: the session's database holds every other test's links too.
    tag = f"pages-{uuid.uuid4().hex[:8]}"
    async with running_app(pg_settings, None) as client:
        made = {(await make_link(client, url=f"https://example.com/p{i}", tags=[tag]))["code"] for i in range(12)}
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 5, "tag": tag} | ({"cursor": cursor} if cursor else {})
            page = (await client.get("/api/v1/links", params=params)).json()
            seen += [link["code"] for link in page["data"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
    assert made == set(seen)
    assert len(seen) == len(set(seen))


async def test_an_edit_on_one_replica_reaches_another_within_the_local_ttl(target_settings):
    settings = target_settings.model_copy(update={"local_cache_ttl_seconds": 0.3})
    async with running_app(settings, None) as replica_a, running_app(settings, None) as replica_b:
        code = (await make_link(replica_a))["code"]
        assert (await replica_b.get(f"/{code}")).headers["location"] == "https://example.com/target"
        await replica_a.patch(f"/api/v1/links/{code}", json={"url": "https://example.com/moved"})
        # Immediately on the replica that served the edit ...
        assert (await replica_a.get(f"/{code}")).headers["location"] == "https://example.com/moved"
        # ... and on the other one once its memory entry expires.
        deadline = time.monotonic() + settings.local_cache_ttl_seconds + 1.0
        while time.monotonic() < deadline:
            location = (await replica_b.get(f"/{code}")).headers["location"]
            if location == "https://example.com/moved":
                break
            await asyncio.sleep(0.05)
        assert location == "https://example.com/moved"
        await replica_a.delete(f"/api/v1/links/{code}")
        await asyncio.sleep(settings.local_cache_ttl_seconds + 0.05)
        assert (await replica_b.get(f"/{code}")).status_code == 410


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def own_redis():
    """A redis-server of this test's own, so the test can stop it."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (Debian package redis-server)"
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0", process
    process.kill()
    process.wait()


async def test_real_redis_dying_mid_test_leaves_redirects_and_creates_working(pg_url, own_redis):
    url, process = own_redis
    settings = make_settings(pg_url, redis_url=url)
    async with running_app(settings, None) as client:
        code = (await make_link(client))["code"]
        assert (await client.get(f"/{code}")).status_code == 302
        process.kill()
        process.wait()
        client.app.state.redirector.forget_all()
        started = time.monotonic()
        assert (await client.get(f"/{code}")).status_code == 302
        created = await make_link(client, url="https://example.com/while-redis-is-dead")
        client.app.state.redirector.forget_all()
        assert (await client.get(f"/{created['code']}")).status_code == 302
        assert time.monotonic() - started < 5, "a dead Redis must not stall visitors"
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["failing"] == ["redis"]


async def test_links_survive_a_redis_flush(target_settings):
    async with running_app(target_settings, None) as client:
        code = (await make_link(client))["code"]
        await client.get(f"/{code}")
        cache = client.app.state.cache
        keys = [key async for key in cache.redis.scan_iter(match=f"{target_settings.redis_key_prefix}*")]
        await cache.redis.delete(*keys)
        client.app.state.redirector.forget_all()
        assert (await client.get(f"/{code}")).headers["location"] == "https://example.com/target"


async def test_bulk_create_on_postgres_copies_rows_whose_codes_redirect(target_settings):
    async with running_app(target_settings, None) as client:
        service = client.app.state.links
        codes = await service.bulk_create([f"https://example.com/copy/{i}" for i in range(300)])
        ids = [service.codec.decode(code) for code in codes]
        assert ids == sorted(ids) and len(set(ids)) == 300
        client.app.state.redirector.forget_all()
        await client.app.state.cache.drop(codes[-1])  # this one must come from SQL
        assert (await client.get(f"/{codes[-1]}")).headers["location"] == "https://example.com/copy/299"
        assert (await client.get(f"/{codes[0]}")).headers["location"] == "https://example.com/copy/0"
        after = (await make_link(client))["code"]
        assert service.codec.decode(after) > ids[-1]


async def test_a_burst_of_cold_codes_is_loaded_from_postgres_in_batches(target_settings):
    from sqlalchemy import event

    async with running_app(target_settings, None) as client:
        state = client.app.state
        codes = await state.links.bulk_create([f"https://example.com/burst/{i}" for i in range(200)])
        await state.cache.drop(*codes)
        state.redirector.forget_all()
        selects: list[str] = []

        def record(conn, cursor, statement, parameters, context, executemany):
            if statement.lstrip().upper().startswith("SELECT") and "links" in statement:
                selects.append(statement)

        event.listen(state.db.read_engine.sync_engine, "before_cursor_execute", record)
        responses = await asyncio.gather(*(client.get(f"/{code}") for code in codes))
        event.remove(state.db.read_engine.sync_engine, "before_cursor_execute", record)
    assert [r.headers["location"] for r in responses] == [f"https://example.com/burst/{i}" for i in range(200)]
    assert len(selects) < 20, f"{len(selects)} queries for 200 codes"


async def test_connections_killed_while_idle_are_replaced_not_served_as_errors(pg_settings, pg_url, monkeypatch):
    """A database restart leaves dead connections in the pool; the idle ping replaces them."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from service.store import sql

    async with running_app(pg_settings, None) as client:
        code = (await make_link(client))["code"]
        await client.get(f"/api/v1/links/{code}")  # the pool now holds a used connection
        admin = sql.make_engine(pg_url)
        async with admin.connect() as connection:
            await connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = :name AND pid <> pg_backend_pid()"),
                {"name": make_url(pg_url).database},
            )
        await admin.dispose()
        monkeypatch.setattr(sql, "PING_IF_IDLE_SECONDS", 0.0)
        response = await client.get(f"/api/v1/links/{code}")
        assert response.status_code == 200, response.text
        client.app.state.redirector.forget_all()
        await client.app.state.cache.drop(code)
        assert (await client.get(f"/{code}")).status_code == 302


async def test_a_redis_that_stops_answering_costs_visitors_one_timeout_not_a_hang(pg_url, own_redis):
    import os
    import signal

    url, process = own_redis
    settings = make_settings(pg_url, redis_url=url)
    async with running_app(settings, None) as client:
        code = (await make_link(client))["code"]
        os.kill(process.pid, signal.SIGSTOP)  # accepts nothing, answers nothing
        try:
            client.app.state.redirector.forget_all()
            started = time.monotonic()
            responses = await asyncio.gather(*(client.get(f"/{code}") for _ in range(20)))
            assert [r.status_code for r in responses] == [302] * 20
            assert time.monotonic() - started < 3, "visitors waited on a silent Redis"
            created = await make_link(client, url="https://example.com/while-redis-is-silent")
            assert created["code"]
        finally:
            os.kill(process.pid, signal.SIGCONT)
