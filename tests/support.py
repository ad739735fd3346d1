"""Helpers shared by the test tiers: settings, migrations, a running app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx

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
    app = create_app(settings, redis_client=redis_client, configure_logs=False, tune_gc=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client
