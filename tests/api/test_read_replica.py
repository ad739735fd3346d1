"""A read replica that lags (here: a second SQLite file that never gets the writes): misses go to the primary."""

from __future__ import annotations

import fakeredis

from service.store.cache import MISSING, CachedLink
from tests.support import make_settings, migrate, running_app


async def test_a_link_the_replica_lacks_redirects_from_the_primary_and_is_cached_as_a_link(tmp_path):
    primary, replica = f"sqlite+aiosqlite:///{tmp_path / 'primary.db'}", f"sqlite+aiosqlite:///{tmp_path / 'replica.db'}"
    await migrate(primary)
    await migrate(replica)  # the schema, and none of the rows written from here on
    settings = make_settings(primary, database_read_url=replica)
    async with running_app(settings, fakeredis.FakeAsyncRedis()) as client:
        state = client.app.state
        code = (await client.post("/api/v1/links", json={"url": "https://example.com/young"})).json()["code"]
        await state.cache.drop(code)
        state.redirector.forget_all()
        response = await client.get(f"/{code}")
        assert (response.status_code, response.headers["location"]) == (302, "https://example.com/young")
        await state.redirector.aclose()
        assert isinstance(await state.cache.get(code), CachedLink)
        assert (await client.get("/NotOnEither")).status_code == 404
        await state.redirector.aclose()
        assert await state.cache.get("NotOnEither") is MISSING
