"""Lifecycle on real PostgreSQL and Redis: the visitor table, and max_visits exact across replicas."""

from __future__ import annotations

import asyncio

import pytest

from tests import lifecycle_table
from tests.integration.conftest import REDIS_URL
from tests.support import make_settings, running_app

pytestmark = pytest.mark.integration
BROWSER = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0"}


@pytest.mark.parametrize(("state", "fallback", "gone_url"), lifecycle_table.CASES)
async def test_what_a_visitor_gets_on_postgres_and_redis(pg_url, redis_prefix, state, fallback, gone_url):
    settings = make_settings(pg_url, redis_url=REDIS_URL, redis_key_prefix=redis_prefix,
                             gone_redirect_url="https://example.com/gone" if gone_url else None)
    async with running_app(settings, None) as client:
        await lifecycle_table.check_case(client, state, fallback, gone_url)


async def test_200_visitors_over_two_replicas_get_exactly_25_redirects_of_a_link_limited_to_25(
        pg_url, redis_prefix, redis_target):
    settings = make_settings(pg_url, redis_key_prefix=redis_prefix, **redis_target.settings)
    async with running_app(settings, None) as a, running_app(settings, None) as b:
        code = (await a.post("/api/v1/links", json={"url": "https://example.com/seat", "max_visits": 25})).json()["code"]
        answers = await asyncio.gather(*((a if n % 2 else b).get(f"/{code}", headers=BROWSER) for n in range(200)))
        statuses = [answer.status_code for answer in answers]
        assert statuses.count(302) == 25 and statuses.count(410) == 175, statuses
        await a.app.state.visit_limits.flush()
        await b.app.state.visit_limits.flush()
        shown = (await a.get(f"/api/v1/links/{code}")).json()
        assert (shown["visits_counted"], shown["status"]) == (25, "exhausted")


async def test_a_limit_survives_a_redis_flush_on_real_redis(pg_url, redis_prefix, redis_target):
    settings = make_settings(pg_url, redis_key_prefix=redis_prefix, **redis_target.settings)
    async with running_app(settings, None) as client:
        code = (await client.post("/api/v1/links", json={"url": "https://example.com/f", "max_visits": 3})).json()["code"]
        assert [(await client.get(f"/{code}", headers=BROWSER)).status_code for _ in range(2)] == [302, 302]
        await client.app.state.visit_limits.flush()
        raw = redis_target.client()
        try:
            keys = [key async for key in raw.scan_iter(match=f"{redis_prefix}*")]
            await raw.delete(*keys)  # this test's keys only: the same as a flush, for it
        finally:
            await raw.aclose()
        client.app.state.redirector.forget_all()
        assert [(await client.get(f"/{code}", headers=BROWSER)).status_code for _ in range(2)] == [302, 410]


async def test_an_import_of_many_rows_on_postgres_keeps_exported_codes(pg_url, redis_prefix, tmp_path):
    from service.lifecycle import transfer

    settings = make_settings(pg_url, redis_url=REDIS_URL, redis_key_prefix=redis_prefix)
    async with running_app(settings, None) as client:
        links = client.app.state.links
        rows = ((n + 1, {"url": f"https://example.com/import/{n}", "tags": ["bulk"]}) for n in range(3000))
        report = await transfer.import_links(links, rows, owner_id=None)
        assert (report.created, report.skipped, report.refused) == (3000, 0, [])
        page = (await client.get("/api/v1/links", params={"tag": "bulk", "limit": 5})).json()["data"]
        assert len(page) == 5
        assert (await client.get(f"/{page[0]['code']}")).headers["location"].startswith("https://example.com/import/")
