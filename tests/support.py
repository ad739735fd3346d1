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
    _RUNNING[0] += 1
    try:
        async with _serving(app, role) as client:
            yield client
    finally:
        _RUNNING[0] -= 1
    if not _RUNNING[0]:  # (an app inside another's test: the outer one's tasks are still its own)
        await _no_task_left_behind()


_RUNNING = [0]


@contextlib.asynccontextmanager
async def _serving(app, role):
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


# Tasks an app (or its clients and drivers) starts, by where their coroutine lives:
# never the test's own, nor the runner's or a portal's (anyio, pytest-asyncio).
_APP_CODE = ("/service/", "/sqlalchemy/", "/aiosqlite/", "/fakeredis/", "/redis/")


def _of_app(task) -> bool:
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and any(part in code.co_filename for part in _APP_CODE)


async def _no_task_left_behind(seconds: float = 5.0) -> None:
    """After an app's shutdown, cancel what is left (a cancel can be lost), bounded, and name it.

    pytest-asyncio's runner waits without a bound for every task of the loop;
    one that swallowed its cancel would hang the session instead of failing.
    """
    import asyncio
    import sys

    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        left = {t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done() and _of_app(t)}
        if not left or loop.time() > deadline:
            break
        for task in left:
            task.cancel()
        await asyncio.wait(left, timeout=0.1)
    for task in left:
        # Named loudly, then let go of: the runner would otherwise wait on it for ever
        # (seen with an aiosqlite close and with fakeredis commands that swallowed a cancel).
        print(f"task left after the app's shutdown: {task!r}", file=sys.stderr)
        task.print_stack(file=sys.stderr)
        asyncio.tasks._unregister_task(task)
