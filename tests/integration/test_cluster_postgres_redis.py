"""Redis Cluster: links cached on every master and served from it, reconcile over every master, pub/sub."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio.cluster import RedisCluster

from service import metrics
from tests.api.test_coordination import drift_then_reconcile_twice
from tests.support import make_settings, running_app

pytestmark = pytest.mark.integration


def _count(counter, **labels) -> float:
    metrics.TALLY.flush()
    return counter.labels(**labels)._value.get()


async def _keys_per_master(cache, codes: list[str]) -> dict[str, int]:
    """How many of the codes' cached-link keys each master holds."""
    client: RedisCluster = cache.redis
    wanted = {cache.key(code) for code in codes}
    counts = {}
    for node in client.get_primaries():
        keys = [key async for key in client.scan_iter(match=f"{cache.prefix}{{*}}", target_nodes=node)]
        counts[node.name] = len(wanted.intersection(keys))
    return counts


async def test_300_links_are_cached_across_every_master_and_served_from_the_cluster(pg_url, redis_prefix,
                                                                                   cluster_target):
    settings = make_settings(pg_url, redis_key_prefix=redis_prefix, **cluster_target.settings)
    async with running_app(settings, None) as client:
        state = client.app.state
        codes = await state.links.bulk_create([f"https://example.com/c/{i}" for i in range(300)])
        await state.cache.drop(*codes)
        state.redirector.forget_all()
        errors_before = sum(_count(metrics.REDIS_ERRORS, operation=op) for op in ("get", "set"))
        # Cold: each code from SQL, written back to the cluster behind the answer.
        cold = await asyncio.gather(*(client.get(f"/{code}") for code in codes))
        assert [r.headers["location"] for r in cold] == [f"https://example.com/c/{i}" for i in range(300)]
        await state.redirector.aclose()  # the fills under way are in
        per_master = await _keys_per_master(state.cache, codes)
        assert len(per_master) == 3 and sum(per_master.values()) == 300, per_master
        assert min(per_master.values()) >= 60, f"the codes' slots should spread over every master: {per_master}"
        # Warm: every lookup a Redis hit (coalesced, split per slot), none an error.
        state.redirector.forget_all()
        hits_before = _count(metrics.CACHE_LOOKUPS, layer="redis", result="hit")
        looked_before = hits_before + sum(_count(metrics.CACHE_LOOKUPS, layer="redis", result=r)
                                          for r in ("miss", "error"))
        warm = await asyncio.gather(*(client.get(f"/{code}") for code in codes))
        assert {r.status_code for r in warm} == {302}
        hits = _count(metrics.CACHE_LOOKUPS, layer="redis", result="hit") - hits_before
        looked = hits_before + hits + sum(_count(metrics.CACHE_LOOKUPS, layer="redis", result=r)
                                          for r in ("miss", "error")) - looked_before
        errors = sum(_count(metrics.REDIS_ERRORS, operation=op) for op in ("get", "set")) - errors_before
        print(f"cluster cache: {per_master} keys per master; warm hit ratio {hits / looked:.3f} "
              f"({hits:.0f} of {looked:.0f}); {errors:.0f} Redis errors")
        assert (hits, looked, errors) == (300, 300, 0)


async def test_reconcile_repairs_drift_on_each_redis_target(pg_url, redis_prefix, redis_target):
    # No coordinator in the process: its expiry timers would pop what the first run set, between the runs.
    settings = make_settings(pg_url, redis_key_prefix=redis_prefix, coordination_in_process=False,
                             **redis_target.settings)
    async with running_app(settings, None) as client:
        first, second = await drift_then_reconcile_twice(client)
    print(f"reconcile on {redis_target.name}: {first['repaired']}, then {second['scanned']}")


async def test_reconcile_scans_the_keys_on_every_master(pg_url, redis_prefix, cluster_target):
    settings = make_settings(pg_url, redis_key_prefix=redis_prefix, coordination_in_process=False,
                             **cluster_target.settings)
    async with running_app(settings, None) as client:
        state = client.app.state
        codes = await state.links.bulk_create([f"https://example.com/r/{i}" for i in range(90)])
        assert await state.cache.put_many({code: None for code in codes})  # 90 false misses, on every master
        per_master = await _keys_per_master(state.cache, codes)
        assert min(per_master.values()) > 0, per_master
        from service.coordination.lock import FencedLock
        from service.coordination.reconcile import Reconciler

        reconciler = Reconciler(db=state.db, redis=state.cache.redis, service=state.links, prefix=redis_prefix,
                                batch=10, ttl_seconds=60, clock=state.links.clock)
        report = await reconciler.run(FencedLock(state.cache.redis, "reconcile", prefix=redis_prefix))
        assert report["repaired"]["false_misses"] == 90, report
        state.redirector.forget_all()
        assert (await client.get(f"/{codes[0]}")).headers["location"] == "https://example.com/r/0"


async def test_an_edit_reaches_the_other_replicas_memory_through_pub_sub(pg_url, redis_prefix, redis_target):
    # A local TTL of a minute: only the change message can explain the other replica's fresh answer.
    settings = make_settings(pg_url, redis_key_prefix=redis_prefix, local_cache_ttl_seconds=60.0,
                             **redis_target.settings)
    async with running_app(settings, None) as a, running_app(settings, None) as b:
        await a.app.state.changes.wait_subscribed()
        await b.app.state.changes.wait_subscribed()
        code = (await a.post("/api/v1/links", json={"url": "https://example.com/before"})).json()["code"]
        assert (await b.get(f"/{code}")).headers["location"] == "https://example.com/before"
        started = time.monotonic()
        assert (await a.patch(f"/api/v1/links/{code}", json={"url": "https://example.com/after"})).status_code == 200
        while (await b.get(f"/{code}")).headers["location"] != "https://example.com/after":
            assert time.monotonic() - started < 2, "the change message never reached the other replica"
            await asyncio.sleep(0.01)
        assert b.app.state.changes.heard >= 1
