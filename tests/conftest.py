"""Shared fixtures: settings built per test, an app on SQLite + fakeredis, an httpx client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import fakeredis
import httpx
import pytest

from service.config import Settings
from tests.support import make_settings, migrate, running_app


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/linkgate.db"


@pytest.fixture
def redis_server() -> fakeredis.FakeServer:
    """One fake Redis server; set .connected = False to make Redis go away."""
    return fakeredis.FakeServer()


@pytest.fixture
def settings(sqlite_url) -> Settings:
    return make_settings(sqlite_url)


@pytest.fixture
async def client(settings, redis_server) -> AsyncIterator[httpx.AsyncClient]:
    await migrate(settings.database_url)
    async with running_app(settings, fakeredis.FakeAsyncRedis(server=redis_server)) as client:
        yield client
