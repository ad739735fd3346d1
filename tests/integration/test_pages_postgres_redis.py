"""Visitor pages on real PostgreSQL and Redis: password links over two replicas, QR codes, previews."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.conftest import REDIS_URL
from tests.support import make_settings, running_app

pytestmark = pytest.mark.integration
BROWSER = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0",
           "accept": "text/html"}


async def test_a_password_link_made_in_a_group_commit_is_protected_on_every_replica(pg_url, redis_prefix):
    settings = make_settings(pg_url, redis_url=REDIS_URL, redis_key_prefix=redis_prefix)
    async with running_app(settings, None) as a, running_app(settings, None) as b:
        # Generated codes go out together (COPY on PostgreSQL), the hash column with them.
        made = await asyncio.gather(*(a.post("/api/v1/links", json={"url": f"https://example.com/p{n}",
                                                                   "password": f"pw-{n}"}) for n in range(5)))
        codes = [response.json()["code"] for response in made]
        for n, code in enumerate(codes):
            form = await b.get(f"/{code}", headers=BROWSER)
            assert form.status_code == 200 and "example.com" not in form.text
            opened = await b.post(f"/{code}", data={"password": f"pw-{n}"})
            assert opened.status_code == 303 and opened.headers["location"] == f"https://example.com/p{n}"
        # Another replica's PATCH reaches this one's cache: the password is gone, the redirect plain.
        await a.patch(f"/api/v1/links/{codes[0]}", json={"password": None})
        await asyncio.sleep(0.1)
        b.app.state.redirector.forget_all()
        assert (await b.get(f"/{codes[0]}")).status_code == 302


async def test_qr_and_preview_on_postgres(pg_url, redis_prefix):
    settings = make_settings(pg_url, redis_url=REDIS_URL, redis_key_prefix=redis_prefix)
    async with running_app(settings, None) as client:
        code = (await client.post("/api/v1/links", json={"url": "https://example.com/pg", "title": "On PG"})).json()["code"]
        qr = await client.get(f"/{code}/qr", params={"format": "png"})
        assert qr.status_code == 200 and qr.content.startswith(b"\x89PNG")
        preview = await client.get(f"/{code}+")
        assert preview.status_code == 200 and "On PG" in preview.text and "https://example.com/pg" in preview.text
        scanned = await client.get(f"/{code}?qr=1")
        assert scanned.headers["location"] == "https://example.com/pg"
