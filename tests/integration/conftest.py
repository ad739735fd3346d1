"""Real PostgreSQL and Redis, each test tier's own database and key prefix.

Runs when LINKGATE_TEST_DATABASE_URL (an admin connection, e.g.
postgresql+asyncpg://postgres@127.0.0.1:5432/postgres) and LINKGATE_TEST_REDIS_URL
are set; when they are set and the services do not answer, the tests fail.

Tests that take the ``redis_target`` fixture run twice: on the single Redis
and on the Redis Cluster named by LINKGATE_TEST_REDIS_CLUSTER_URL (one of
its nodes; `.ci/scale-out-stores` starts one). Without that variable the
cluster runs are skipped; with it, a cluster that does not answer fails them.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support import make_settings, migrate

ADMIN_URL = os.environ.get("LINKGATE_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("LINKGATE_TEST_REDIS_URL")
CLUSTER_URL = os.environ.get("LINKGATE_TEST_REDIS_CLUSTER_URL")

if not (ADMIN_URL and REDIS_URL):
    pytest.skip(
        "integration tier: set LINKGATE_TEST_DATABASE_URL and LINKGATE_TEST_REDIS_URL (.ci/run does)",
        allow_module_level=True,
    )


async def _admin(statement: str) -> None:
    engine = create_async_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database, migrated, dropped after the session."""
    name = f"linkgate_test_{uuid.uuid4().hex[:12]}"
    # CREATE DATABASE takes no bind parameters; the name is generated above, never input.
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    asyncio.run(migrate(url))
    yield url
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass(frozen=True)
class RedisTarget:
    """One Redis the tests run on: the single one, or the cluster."""

    name: str
    url: str
    cluster: bool

    @property
    def settings(self) -> dict:
        """The settings that point the app at it."""
        return {"redis_url": self.url, "redis_cluster": self.cluster}

    def client(self, **options):
        if self.cluster:
            return RedisCluster.from_url(self.url, **options)
        return redis.Redis.from_url(self.url, **options)


SINGLE = RedisTarget("single", REDIS_URL, cluster=False)
CLUSTER = RedisTarget("cluster", CLUSTER_URL, cluster=True) if CLUSTER_URL else None
_in_use: list[RedisTarget] = [SINGLE]  # the cluster joins once a test has checked it answers


async def _cluster_answers(url: str) -> str | None:
    """None when the cluster at `url` serves every slot, else what is wrong."""
    client = RedisCluster.from_url(url, socket_connect_timeout=2)
    try:
        info = await client.cluster_info(target_nodes=RedisCluster.RANDOM)
        return None if info.get("cluster_state") == "ok" else f"cluster_state is {info.get('cluster_state')}"
    except Exception as exc:
        return repr(exc)
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def _cluster_checked() -> RedisTarget:
    if CLUSTER is None:
        pytest.skip("Redis Cluster tier: set LINKGATE_TEST_REDIS_CLUSTER_URL (.ci/run does)")
    problem = asyncio.run(_cluster_answers(CLUSTER.url))
    if problem is not None:
        pytest.fail(f"LINKGATE_TEST_REDIS_CLUSTER_URL={CLUSTER.url} is set but the cluster does not answer: {problem}")
    _in_use.append(CLUSTER)
    return CLUSTER


@pytest.fixture(params=["single", "cluster"])
def redis_target(request) -> RedisTarget:
    """Each test that takes it runs on the single Redis, then on the Redis Cluster."""
    if request.param == "cluster":
        return request.getfixturevalue("_cluster_checked")
    return SINGLE


@pytest.fixture
def cluster_target(_cluster_checked) -> RedisTarget:
    """The Redis Cluster only (tests of what only a cluster has)."""
    return _cluster_checked


async def _delete_keys(target: RedisTarget, prefix: str) -> None:
    client = target.client()
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards (on the cluster too)."""
    prefix = f"lgtest-{uuid.uuid4().hex[:10]}:"
    yield prefix
    for target in _in_use:
        await _delete_keys(target, prefix)


@pytest.fixture
def pg_settings(pg_url, redis_prefix):
    return make_settings(pg_url, redis_url=REDIS_URL, redis_key_prefix=redis_prefix)


@pytest.fixture
def target_settings(pg_url, redis_prefix, redis_target):
    """pg_settings on each Redis target in turn (the single Redis, the cluster)."""
    return make_settings(pg_url, redis_key_prefix=redis_prefix, **redis_target.settings)
