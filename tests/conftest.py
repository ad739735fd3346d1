"""Shared fixtures: settings built per test, an app on SQLite + fakeredis, an httpx client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import fakeredis
import httpx
import pytest

from service.app import create_app
from service.config import Settings
from service.store.migrate import upgrade_engine
from service.store.sql import make_engine


async def migrate(url: str) -> None:
    engine = make_engine(url)
    try:
        await upgrade_engine(engine)
    finally:
        await engine.dispose()


def make_settings(database_url: str, **overrides) -> Settings:
    values = {
        "database_url": database_url,
        "hashids_salt": "test-salt",
        "public_base_url": "https://sho.rt",
        "access_log": False,
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def running_app(settings: Settings, redis_client) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running and an httpx client bound to it in-process."""
    app = create_app(settings, redis_client=redis_client)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


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
