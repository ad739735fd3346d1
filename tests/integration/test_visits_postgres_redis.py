"""Visits on real PostgreSQL and Redis: the stream into the aggregates, consumers that die, a server that stops."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from service.app import open_redis
from service.visits import aggregates
from service.visits.consumer import VisitConsumer
from tests.api.test_serve import _start, free_port
from tests.api.test_visits import closed_months_roll_up_and_read_the_same
from tests.support import make_settings, running_app

pytestmark = pytest.mark.integration

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


@pytest.fixture
def settings(pg_url, redis_prefix, redis_target):
    # As in production: the servers record, consumers of their own fold.
    return make_settings(pg_url, redis_key_prefix=redis_prefix, **redis_target.settings,
                         visits_consumer_in_process=False, visits_claim_idle_seconds=1.0)


def consumer(settings, app, name: str, **overrides) -> VisitConsumer:
    return VisitConsumer.from_settings(settings, redis=open_redis(settings), db=app.state.db, name=name,
                                       **overrides)


async def visits_of(client, code: str) -> int:
    return (await client.get(f"/api/v1/links/{code}/stats?include_bots=true")).json()["total"]["visits"]


async def burst(client, code: str, count: int) -> None:
    for number in range(count):
        headers = {"user-agent": FIREFOX, "referer": f"https://r{number % 3}.example/"}
        response = await client.get(f"/{code}", headers=headers)
        assert response.status_code == 302


async def test_visits_go_through_the_redis_stream_into_the_postgres_aggregates(settings):
    async with running_app(settings, None) as client:
        code = (await client.post("/api/v1/links", json={"url": "https://example.com/pg"})).json()["code"]
        await burst(client, code, 30)
        assert await client.get("/NoSuchCodeHere") is not None
        assert await client.app.state.visit_recorder.flush()
        folder = consumer(settings, client.app, "one")
        assert await folder.drain(timeout_seconds=20)
        stats = (await client.get(f"/api/v1/links/{code}/stats")).json()
        assert stats["total"] == {"visits": 30, "bots": 0, "unique_visitors": 1}
        assert {r["name"]: r["visits"] for r in stats["referrers"]} == {
            "r0.example": 10, "r1.example": 10, "r2.example": 10}
        assert (await client.get(f"/api/v1/links/{code}")).json()["visits"] == 30
        service = (await client.get("/api/v1/stats?include_bots=true")).json()
        assert service["total"]["visits"] >= 30 and service["orphans"][0]["status"] == 404
        await folder._redis.aclose()


async def test_closed_months_roll_up_and_read_the_same_on_postgres(settings, redis_target):
    async with running_app(settings, None) as client:
        folder = consumer(settings, client.app, "rolls")

        async def settle() -> None:
            assert await folder.drain(timeout_seconds=20)

        # Months of their own: the session's database is shared with the other tests (and runs).
        year = 2023 if redis_target.cluster else 2022
        await closed_months_roll_up_and_read_the_same(client, folder, settle, year=year)
        await folder._redis.aclose()


async def test_consumers_sharing_the_group_fold_every_event_once(settings):
    async with running_app(settings, None) as client:
        code = (await client.post("/api/v1/links", json={"url": "https://example.com/shared"})).json()["code"]
        recorder = client.app.state.visit_recorder
        for _ in range(12):  # twelve stream entries
            await burst(client, code, 10)
            assert await recorder.flush()
        pair = [consumer(settings, client.app, name, batch=3, block_seconds=0.2) for name in ("a", "b")]
        tasks = [asyncio.create_task(c.run()) for c in pair]
        deadline = time.monotonic() + 30
        while sum(c.folded for c in pair) < 120 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for c in pair:
            c.stop()
        await asyncio.wait(tasks, timeout=5)
        assert all(c.folded for c in pair), [c.folded for c in pair]  # both took a share
        assert await visits_of(client, code) == 120
        for c in pair:
            await c._redis.aclose()


async def test_a_consumer_killed_mid_batch_leaves_its_entries_to_another_that_counts_them_once(settings, monkeypatch):
    async with running_app(settings, None) as client:
        code = (await client.post("/api/v1/links", json={"url": "https://example.com/killed"})).json()["code"]
        recorder = client.app.state.visit_recorder
        for _ in range(4):
            await burst(client, code, 5)
            assert await recorder.flush()
        victim = consumer(settings, client.app, "victim", batch=10_000)  # it takes all four entries
        inside = asyncio.Event()
        add = aggregates.add

        async def hang(**kwargs):
            inside.set()
            await asyncio.Event().wait()  # killed here: upserts sent, nothing committed

        monkeypatch.setattr(aggregates, "add", hang)
        killed = asyncio.create_task(victim.step())
        await asyncio.wait_for(inside.wait(), 10)
        killed.cancel()
        await asyncio.gather(killed, return_exceptions=True)
        monkeypatch.setattr(aggregates, "add", add)
        assert await visits_of(client, code) == 0  # the transaction died with it

        survivor = consumer(settings, client.app, "survivor")
        await asyncio.sleep(1.1)  # LINKGATE_VISITS_CLAIM_IDLE_SECONDS
        assert await survivor.claim() == 20
        assert await visits_of(client, code) == 20

        # And one that committed but died before XACK: its entries are claimed, found folded, not counted again.
        await burst(client, code, 5)
        assert await recorder.flush()
        late = consumer(settings, client.app, "late")

        async def die(*args):
            raise ConnectionError("killed before XACK")

        monkeypatch.setattr(late._redis, "xack", die)
        assert await late.step() == 5
        await asyncio.sleep(1.1)
        assert await survivor.claim() == 0
        assert await visits_of(client, code) == 25
        pending = await survivor._redis.xpending(survivor.stream_key, "linkgate-aggregates")
        assert pending["pending"] == 0
        for c in (victim, survivor, late):
            await c._redis.aclose()


def test_sigterm_of_a_server_right_after_a_burst_loses_no_visit(pg_url, redis_prefix, redis_target, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINKGATE_")}
    env.update({
        "LINKGATE_DATABASE_URL": pg_url, "LINKGATE_REDIS_URL": redis_target.url,
        "LINKGATE_REDIS_CLUSTER": str(redis_target.cluster).lower(), "LINKGATE_REDIS_KEY_PREFIX": redis_prefix,
        "LINKGATE_HASHIDS_SALT": "serve-test", "LINKGATE_LOG_LEVEL": "warning",
        "LINKGATE_VISITS_CONSUMER_IN_PROCESS": "false",
    })
    key = subprocess.run([sys.executable, "-m", "service", "create-key", "--name", f"ops-{redis_prefix[7:-1]}",
                          "--role", "admin"], env=env, capture_output=True, text=True, check=True).stdout.strip()
    auth = {"Authorization": f"Bearer {key}"}
    port = free_port()
    server = _start(env, port)
    try:
        base = f"http://127.0.0.1:{port}"
        code = httpx.post(f"{base}/api/v1/links", json={"url": "https://example.com/"}, headers=auth).json()["code"]
        with httpx.Client(base_url=base, headers={"user-agent": FIREFOX}) as visitor:
            assert [visitor.get(f"/{code}").status_code for _ in range(500)] == [302] * 500
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    folded = subprocess.run([sys.executable, "-m", "service", "consume-visits", "--until-empty", "60"],
                            env=env, capture_output=True, text=True, timeout=90)
    assert folded.returncode == 0, folded.stdout + folded.stderr

    async def count() -> int:
        settings = make_settings(pg_url, redis_key_prefix=redis_prefix, **redis_target.settings)
        async with running_app(settings, None) as client:
            return (await client.get(f"/api/v1/links/{code}")).json()["visits"]

    assert asyncio.run(count()) == 500


async def test_the_migrated_postgres_schema_is_the_models(pg_url):
    from tests.api.test_schema_matches_models import schema_differences

    assert await schema_differences(pg_url) == []
