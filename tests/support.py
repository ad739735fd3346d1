"""Helpers shared by the test tiers: settings, migrations, a running app."""

from __future__ import annotations

import contextlib
import secrets
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


async def make_key(app, name: str, role: str, **fields) -> str:
    """A new API key of `role` on a running app: the whole key, as a client sends it."""
    _, token = await app.state.keys.create(name=name, role=role, **fields)
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def running_app(settings: Settings, redis_client, *, role: str | None = "admin") -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running and an httpx client bound to it in-process.

    The client sends an API key of `role` (admin unless asked otherwise;
    None: no key) with every request; `client.key` is that key.
    """
    app = create_app(settings, redis_client=redis_client, configure_logs=False, tune_gc=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            client.app = app  # type: ignore[attr-defined]
            client.key = None  # type: ignore[attr-defined]
            if role is not None:
                name = f"test-{role}-{secrets.token_hex(4)}"  # databases outlive one app in the integration tier
                client.key = await make_key(app, name, role)  # type: ignore[attr-defined]
                client.headers.update(bearer(client.key))
            yield client
