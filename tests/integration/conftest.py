"""Real PostgreSQL and Redis, each test tier's own database and key prefix.

Runs when LINKGATE_TEST_DATABASE_URL (an admin connection, e.g.
postgresql+asyncpg://postgres@127.0.0.1:5432/postgres) and LINKGATE_TEST_REDIS_URL
are set; when they are set and the services do not answer, the tests fail.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as redis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support import make_settings, migrate

ADMIN_URL = os.environ.get("LINKGATE_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("LINKGATE_TEST_REDIS_URL")

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


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"lgtest-{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def pg_settings(pg_url, redis_prefix):
    return make_settings(pg_url, redis_url=REDIS_URL, redis_key_prefix=redis_prefix)
