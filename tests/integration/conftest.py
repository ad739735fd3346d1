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


# --- a streaming replica -------------------------------------------------------------

PRIMARY_URL = os.environ.get("LINKGATE_TEST_PRIMARY_URL")
REPLICA_URL = os.environ.get("LINKGATE_TEST_REPLICA_URL")


@dataclass(frozen=True)
class Replicated:
    """A database of the session's own on a primary, and the same database on its streaming replica."""

    primary_url: str
    replica_url: str

    async def replica_execute(self, statement: str):
        engine = create_async_engine(self.replica_url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                return (await connection.execute(text(statement))).all()
        finally:
            await engine.dispose()

    async def caught_up(self, timeout: float = 20.0) -> float:
        """Wait until the replica has replayed all the primary wrote; returns the seconds it took."""
        engine = create_async_engine(self.primary_url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                lsn = (await connection.execute(text("SELECT pg_current_wal_flush_lsn()::text"))).scalar_one()
        finally:
            await engine.dispose()
        replica = create_async_engine(self.replica_url, isolation_level="AUTOCOMMIT")
        try:
            async with replica.connect() as connection:
                started = loop_time()
                while True:
                    behind = (await connection.execute(
                        text("SELECT pg_wal_lsn_diff(CAST(:lsn AS text)::pg_lsn, pg_last_wal_replay_lsn()) > 0"), {"lsn": lsn}
                    )).scalar_one()
                    if not behind:
                        return loop_time() - started
                    assert loop_time() - started < timeout, f"the replica did not replay up to {lsn} in {timeout} s"
                    await asyncio.sleep(0.002)
        finally:
            await replica.dispose()


def loop_time() -> float:
    return asyncio.get_running_loop().time()


async def _database_on(url: str) -> bool:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1 FROM alembic_version"))
        return True
    except Exception:
        return False
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def replicated() -> Iterator[Replicated]:
    """A migrated database on the test primary, and its replica's view of it (dropped after the session).

    Needs LINKGATE_TEST_PRIMARY_URL and LINKGATE_TEST_REPLICA_URL (admin
    connections to a primary and its streaming replica; `.ci/scale-out-stores
    start` makes both). Unset: skipped; set and not answering: failed.
    """
    if not (PRIMARY_URL and REPLICA_URL):
        pytest.skip("replica tier: set LINKGATE_TEST_PRIMARY_URL and LINKGATE_TEST_REPLICA_URL (.ci/run does)")
    name = f"linkgate_replica_{uuid.uuid4().hex[:12]}"

    async def admin(statement: str) -> None:
        engine = create_async_engine(PRIMARY_URL, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                await connection.execute(text(statement))
        finally:
            await engine.dispose()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(f"LINKGATE_TEST_PRIMARY_URL={PRIMARY_URL} is set but does not answer: {exc!r}")
    primary = make_url(PRIMARY_URL).set(database=name).render_as_string(hide_password=False)
    replica = make_url(REPLICA_URL).set(database=name).render_as_string(hide_password=False)
    asyncio.run(migrate(primary))

    async def until_replicated() -> None:
        for _ in range(200):
            if await _database_on(replica):
                return
            await asyncio.sleep(0.05)
        pytest.fail(f"LINKGATE_TEST_REPLICA_URL={REPLICA_URL}: the replica never showed database {name}")

    asyncio.run(until_replicated())
    yield Replicated(primary, replica)

    async def drop() -> None:
        await Replicated(primary, replica).replica_execute("SELECT pg_wal_replay_resume()")
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    asyncio.run(drop())
