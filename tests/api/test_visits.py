"""Visits on SQLite + fakeredis: redirects through the recorder, the stream and the consumer into the stats."""

from __future__ import annotations

from datetime import UTC, datetime

import fakeredis
import pytest

from service.visits import schema
from service.visits.consumer import VisitConsumer
from service.visits.stream import VisitStream
from tests.support import bearer, make_key, make_settings, migrate, running_app
from tests.support_geoip import build_country_db

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/18.1 Mobile/15E148 Safari/604.1")
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


async def settle(client) -> None:
    """Send what the recorder holds and fold what the stream holds, now (instead of waiting for the tasks)."""
    state = client.app.state
    if state.visit_recorder is not None:
        assert await state.visit_recorder.flush()
    assert await state.visit_consumer.drain(timeout_seconds=10)


async def visit(client, code: str, *, agent: str = CHROME, address: str = "203.0.113.9", **headers) -> int:
    response = await client.get(f"/{code}", headers={"user-agent": agent, "x-forwarded-for": address, **headers})
    return response.status_code


async def new_link(client, **body) -> str:
    response = await client.post("/api/v1/links", json={"url": "https://example.com/landing", **body})
    assert response.status_code == 201, response.text
    return response.json()["code"]


def stream_entries(redis_server, settings) -> list:
    sync = fakeredis.FakeRedis(server=redis_server)
    return sync.xrange(VisitStream(None, prefix=settings.redis_key_prefix, retention_seconds=60).key)


@pytest.fixture
def geo_settings(sqlite_url, tmp_path):
    db = build_country_db(tmp_path / "countries.mmdb")
    return make_settings(sqlite_url, trusted_proxies=["127.0.0.1"], geoip_db=str(db))


@pytest.fixture
async def geo_client(geo_settings, redis_server):
    await migrate(geo_settings.database_url)
    async with running_app(geo_settings, fakeredis.FakeAsyncRedis(server=redis_server)) as client:
        yield client


async def test_visits_show_in_the_link_stats_by_day_referrer_country_browser_os_and_device(geo_client):
    code = await new_link(geo_client)
    assert await visit(geo_client, code, referer="https://t.co/abc?x=1") == 302
    assert await visit(geo_client, code, referer="https://t.co/other") == 302
    assert await visit(geo_client, code, agent=IPHONE, address="198.51.100.20") == 302
    assert await visit(geo_client, code, agent=GOOGLEBOT, address="192.0.2.1") == 302
    await settle(geo_client)

    stats = (await geo_client.get(f"/api/v1/links/{code}/stats")).json()
    today = datetime.now(UTC).date().isoformat()
    assert stats["total"] == {"visits": 3, "bots": 1, "unique_visitors": 2}
    assert len(stats["days"]) == 30 and stats["days"][-1] == {
        "date": today, "visits": 3, "bots": 1, "unique_visitors": 2}
    assert stats["referrers"] == [{"name": "t.co", "visits": 2}, {"name": "direct", "visits": 1}]
    assert stats["countries"] == [{"name": "AU", "visits": 2}, {"name": "DE", "visits": 1}]
    assert stats["browsers"] == [{"name": "Chrome", "visits": 2}, {"name": "Mobile Safari", "visits": 1}]
    assert stats["os"] == [{"name": "Windows", "visits": 2}, {"name": "iOS", "visits": 1}]
    assert stats["devices"] == [{"name": "desktop", "visits": 2}, {"name": "mobile", "visits": 1}]

    with_bots = (await geo_client.get(f"/api/v1/links/{code}/stats?include_bots=true")).json()
    assert with_bots["total"] == {"visits": 4, "bots": 1, "unique_visitors": 3}
    assert {"name": "bot", "visits": 1} in with_bots["devices"]
    assert {"name": "BR", "visits": 1} in with_bots["countries"]

    link = (await geo_client.get(f"/api/v1/links/{code}")).json()
    assert link["visits"] == 3
    listed = (await geo_client.get("/api/v1/links")).json()["data"]
    assert [item["visits"] for item in listed if item["code"] == code] == [3]


async def test_the_service_stats_add_up_every_link_and_count_orphans_by_status(client):
    first, second = await new_link(client), await new_link(client, url="https://example.com/two")
    for code in (first, first, second):
        await visit(client, code)
    assert await visit(client, "NoSuchCode1") == 404
    assert await visit(client, "NoSuchCode2", agent=GOOGLEBOT) == 404
    await settle(client)
    stats = (await client.get("/api/v1/stats")).json()
    assert stats["total"] == {"visits": 3, "bots": 0, "unique_visitors": 1}
    assert stats["orphans"] == [{"status": 404, "visits": 1, "bots": 1}]
    assert (await client.get("/api/v1/stats?include_bots=true")).json()["orphans"] == [
        {"status": 404, "visits": 2, "bots": 1}]


async def test_a_visitor_counts_once_a_day_and_again_the_next(client, folded):
    code = await new_link(client)
    recorder = client.app.state.visit_recorder
    for moment in ("2025-03-01T10:00:00", "2025-03-01T23:59:59", "2025-03-02T00:00:01"):
        recorder.clock = lambda at=moment: datetime.fromisoformat(at).replace(tzinfo=UTC).timestamp()
        await visit(client, code)
        await recorder.flush()
    await settle(client)
    stats = (await client.get(f"/api/v1/links/{code}/stats?from=2025-03-01&to=2025-03-02")).json()
    assert [(d["date"], d["visits"], d["unique_visitors"]) for d in stats["days"]] == [
        ("2025-03-01", 2, 1), ("2025-03-02", 1, 1)]
    assert stats["total"]["unique_visitors"] == 2  # the sum of each day's
    hashes = {row[1] for _, fields in folded for row in schema.decode(fields).clients}
    assert len(hashes) == 2  # the salt of 2 March is not the salt of 1 March


@pytest.fixture
def folded(monkeypatch) -> list:
    """Every stream entry a consumer is handed to fold, in order: what the recorder sent."""
    seen: list = []
    original = VisitConsumer._prepare  # every fold reads its entries through it, pipelined or not

    async def prepare(self, entries):
        seen.extend(entries)
        return await original(self, entries)

    monkeypatch.setattr(VisitConsumer, "_prepare", prepare)
    return seen


@pytest.mark.parametrize("header", [{"dnt": "1"}, {"sec-gpc": "1"}], ids=["dnt", "sec-gpc"])
async def test_dnt_and_gpc_visits_count_without_a_visitor_or_a_referrer(client, header):
    code = await new_link(client)
    await visit(client, code, referer="https://t.co/x", **header)
    await settle(client)
    stats = (await client.get(f"/api/v1/links/{code}/stats")).json()
    assert stats["total"] == {"visits": 1, "bots": 0, "unique_visitors": 0}
    assert stats["referrers"] == [{"name": "direct", "visits": 1}]


async def test_excluded_networks_are_counted_without_a_visitor_or_a_referrer(sqlite_url, redis_server):
    settings = make_settings(sqlite_url, trusted_proxies=["127.0.0.1"], tracking_exclude=["198.51.100.0/24"])
    await migrate(sqlite_url)
    async with running_app(settings, fakeredis.FakeAsyncRedis(server=redis_server)) as client:
        code = await new_link(client)
        await visit(client, code, address="198.51.100.7", referer="https://monitor.example/")
        await visit(client, code, address="203.0.113.7", referer="https://t.co/")
        await settle(client)
        stats = (await client.get(f"/api/v1/links/{code}/stats")).json()
        assert stats["total"] == {"visits": 2, "bots": 0, "unique_visitors": 1}
        assert {item["name"] for item in stats["referrers"]} == {"direct", "t.co"}


async def test_no_raw_address_and_no_referrer_query_reaches_the_stream(sqlite_url, redis_server):
    settings = make_settings(sqlite_url, trusted_proxies=["127.0.0.1"], tracking_referrer_path=True)
    await migrate(sqlite_url)
    async with running_app(settings, fakeredis.FakeAsyncRedis(server=redis_server)) as client:
        code = await new_link(client)
        await visit(client, code, address="203.0.113.77", referer="https://mail.example/inbox?user=me@x.org")
        await visit(client, code, address="2001:db8:1:2:3:4:5:6")
        await client.app.state.visit_recorder.flush()
        entries = stream_entries(redis_server, settings)
        raw = b"".join(fields[b"visits"] for _, fields in entries)
        assert b"203.0.113.77" not in raw and b"2001:db8:1:2" not in raw and b"me@x.org" not in raw
        visits = [v for _, fields in entries for v in schema.expand(schema.decode(fields))]
        assert [(v.address, v.referrer_host, v.referrer_path) for v in visits] == [
            ("203.0.113.0", "mail.example", "/inbox"), ("2001:db8:1::", None, None)]
        assert visits[0].user_agent == CHROME and visits[0].code == code and visits[0].status == 302


async def test_the_user_agent_is_cut_to_512_characters(client, folded):
    code = await new_link(client)
    await visit(client, code, agent="Mozilla/5.0 " + "x" * 2000)
    await client.app.state.visit_recorder.flush()
    await settle(client)
    (visit_,) = schema.expand(schema.decode(folded[-1][1]))
    assert len(visit_.user_agent) == 512


async def test_with_tracking_off_no_event_is_made(sqlite_url, redis_server):
    settings = make_settings(sqlite_url, tracking=False)
    await migrate(sqlite_url)
    async with running_app(settings, fakeredis.FakeAsyncRedis(server=redis_server)) as client:
        code = await new_link(client)
        assert await visit(client, code) == 302
        assert client.app.redirect_gateway.recorder is None
        await settle(client)
        assert (await client.get(f"/api/v1/links/{code}/stats")).json()["total"]["visits"] == 0
        assert stream_entries(redis_server, settings) == []


async def test_with_redis_away_visits_wait_in_a_bounded_backlog_and_the_oldest_are_dropped(
    sqlite_url, redis_server
):
    settings = make_settings(sqlite_url, visits_buffer_size=100)
    await migrate(sqlite_url)
    async with running_app(settings, fakeredis.FakeAsyncRedis(server=redis_server)) as client:
        code = await new_link(client)
        recorder = client.app.state.visit_recorder
        redis_server.connected = False
        for _ in range(130):
            assert await visit(client, code) == 302  # redirects do not wait for Redis
        assert not await recorder.flush()
        assert recorder.backlog == 100
        from service import metrics

        metrics.TALLY.flush()
        assert metrics.VISITS_DROPPED._value.get() >= 30
        redis_server.connected = True
        assert await recorder.flush()
        assert recorder.backlog == 0
        await settle(client)
        assert (await client.get(f"/api/v1/links/{code}/stats")).json()["total"]["visits"] == 100


async def test_flushes_that_overlap_send_each_visit_once(client):
    # The flusher task, close() and a caller's flush can run at once; each
    # waits on the salt of the day from Redis while the others go on.
    import asyncio

    code = await new_link(client)
    recorder = client.app.state.visit_recorder
    for _ in range(40):
        await visit(client, code)
    assert all(await asyncio.gather(*(recorder.flush() for _ in range(4))))
    assert recorder.backlog == 0
    await settle(client)
    assert (await client.get(f"/api/v1/links/{code}/stats")).json()["total"]["visits"] == 40


async def test_an_entry_delivered_twice_is_counted_once(client, folded):
    code = await new_link(client)
    for _ in range(3):
        await visit(client, code)
    await settle(client)
    consumer = client.app.state.visit_consumer
    entries = list(folded)
    # One entry, or two when the recorder's 250 ms timer fired between the visits.
    assert 1 <= len(entries) <= 3
    # Redelivered: as claimed entries (one by one) and as a contiguous batch.
    again = await consumer.fold(entries, contiguous=False)
    once_more = await consumer.fold(entries, contiguous=True)
    assert (again.events, again.duplicates, once_more.events) == (0, len(entries), 0)
    assert (await client.get(f"/api/v1/links/{code}/stats")).json()["total"]["visits"] == 3


async def test_entries_a_dead_consumer_was_handed_are_claimed_and_folded_once(sqlite_url, redis_server):
    settings = make_settings(sqlite_url, visits_consumer_in_process=False)
    await migrate(sqlite_url)
    async with running_app(settings, fakeredis.FakeAsyncRedis(server=redis_server)) as client:
        code = await new_link(client)
        for _ in range(5):
            await visit(client, code)
        assert await client.app.state.visit_recorder.flush()

        def consumer(name: str) -> VisitConsumer:
            return VisitConsumer.from_settings(settings, redis=fakeredis.FakeAsyncRedis(server=redis_server),
                                               db=client.app.state.db, name=name)

        dead, survivor = consumer("dead"), consumer("survivor")
        await dead._stream.ensure_group()
        handed = await dead._read(">", block=False)
        assert handed  # ... and it dies before folding them
        assert await survivor.claim(min_idle_ms=0) == 5
        # The dead one comes back and folds what it had been handed: nothing is counted twice.
        late = await dead.fold(handed, contiguous=True)
        assert (late.events, late.duplicates) == (0, len(handed))
        assert (await client.get(f"/api/v1/links/{code}/stats")).json()["total"]["visits"] == 5
        assert (await survivor._redis.xpending(survivor.stream_key, "linkgate-aggregates"))["pending"] == 0


async def test_a_retried_append_is_not_appended_twice(client):
    stream = VisitStream(client.app.state.visit_consumer._redis, prefix="retry:", retention_seconds=60)
    document = schema.encode([[None, None, "", None, None]], [[0, None, "x", 404, "GET", 0, False]])
    for _ in range(3):
        await stream.append([("proc.1", document)], now_ms=1_000_000, version=schema.VERSION)
    assert await stream.redis.xlen(stream.key) == 1


async def test_a_redirect_from_a_cache_entry_without_the_link_id_still_counts_for_its_link(client):
    code = await new_link(client)
    state = client.app.state
    link = await state.links.get(code, grant=_any_grant())
    from service.store.cache import CachedLink

    # As a release before ids were cached wrote it.
    await state.cache.put(code, CachedLink(url=link.url, redirect_status=302, query_policy=None))
    state.redirector.forget(code)
    assert await visit(client, code) == 302
    await settle(client)
    assert (await client.get(f"/api/v1/links/{code}")).json()["visits"] == 1


def _any_grant():
    from service.access.grant import Grant
    from service.access.keys import Principal
    from service.access.policy import Scope

    return Grant(principal=Principal(id=0, key_id="0" * 12, name="test", role="admin"), scope=Scope.ANY)


@pytest.mark.parametrize(("query", "field"), [
    pytest.param("from=2024-01-01&to=2025-02-04", "to", id="401-days"),
    pytest.param("from=2025-02-04&to=2025-02-01", "from", id="from-after-to"),
    pytest.param("from=2025-02-30", "from", id="no-such-day"),
    pytest.param("from=20250201", "from", id="not-yyyy-mm-dd"),
])
async def test_a_range_that_is_not_one_answers_422_naming_the_field(client, query, field):
    code = await new_link(client)
    for path in (f"/api/v1/links/{code}/stats", "/api/v1/stats"):
        response = await client.get(f"{path}?{query}")
        assert response.status_code == 422, response.text
        assert response.json()["type"] == "urn:linkgate:problem:invalid-input"
        assert response.json()["errors"][0]["field"] == field


async def test_a_range_of_400_days_answers_every_day(client):
    code = await new_link(client)
    response = await client.get(f"/api/v1/links/{code}/stats?from=2024-01-01&to=2025-02-03")
    assert response.status_code == 200
    days = response.json()["days"]
    assert len(days) == 400 and days[0]["date"] == "2024-01-01" and days[-1]["date"] == "2025-02-03"


async def test_who_may_read_a_links_stats(client):
    app = client.app
    owner = await make_key(app, "owner", "editor")
    other = await make_key(app, "other", "editor")
    reader = await make_key(app, "reader", "reader")
    made = await client.post("/api/v1/links", json={"url": "https://example.com/mine"}, headers=bearer(owner))
    path = f"/api/v1/links/{made.json()['code']}/stats"
    assert (await client.get(path, headers=bearer(owner))).status_code == 200
    assert (await client.get(path, headers=bearer(reader))).status_code == 200
    assert (await client.get(path)).status_code == 200  # admin
    hidden = await client.get(path, headers=bearer(other))
    assert hidden.status_code == 404 and hidden.json()["type"] == "urn:linkgate:problem:link-not-found"
    forbidden = await client.get("/api/v1/stats", headers=bearer(owner))
    assert forbidden.status_code == 403 and "whole service" in forbidden.json()["detail"]
    assert (await client.get("/api/v1/stats", headers=bearer(reader))).status_code == 200


async def test_the_stats_of_a_deleted_link_are_gone_with_it(client):
    code = await new_link(client)
    await visit(client, code)
    assert (await client.delete(f"/api/v1/links/{code}")).status_code == 204
    assert (await client.get(f"/api/v1/links/{code}/stats")).status_code == 404




# --- monthly roll-ups ------------------------------------------------------------------


def at(moment: str) -> float:
    return datetime.fromisoformat(moment).replace(tzinfo=UTC).timestamp()


async def month_rows(app, code: str) -> dict:
    """The link's monthly breakdown rows: (month, dimension, value) -> visits."""
    from sqlalchemy import select

    from service.store.models import Link, VisitMonthBreakdown as M

    async with app.state.visit_stats.db.reading() as session:
        rows = await session.execute(
            select(M.month, M.dimension, M.value, M.visits).join(Link, Link.id == M.link_id).where(Link.code == code))
        return {(month.isoformat(), dimension, value): visits for month, dimension, value, visits in rows}


async def closed_months_roll_up_and_read_the_same(client, consumer, settle, *, year: int) -> None:
    """Visits in February and March of `year`: no monthly rows while the months are open; a prune
    after they closed rolls them up (once), the stats read the same, and a late visit still counts."""
    code = await new_link(client)
    recorder = client.app.state.visit_recorder
    for moment, agent, referrer in ((f"{year}-02-10T10:00:00", CHROME, "https://t.co/a"),
                                    (f"{year}-02-28T23:59:59", IPHONE, None),
                                    (f"{year}-03-01T00:00:01", CHROME, "https://news.example/x")):
        recorder.clock = lambda moment=moment: at(moment)
        assert await visit(client, code, agent=agent, **({"referer": referrer} if referrer else {})) == 302
        assert await recorder.flush()
    await settle()
    span = f"/api/v1/links/{code}/stats?from={year}-02-01&to={year}-03-31"
    before = (await client.get(span)).json()
    assert before["total"]["visits"] == 3
    assert {r["name"]: r["visits"] for r in before["referrers"]} == {"t.co": 1, "direct": 1, "news.example": 1}
    assert await month_rows(client.app, code) == {}  # the folds wrote daily rows only

    consumer.clock = lambda: at(f"{year}-04-10T12:00:00")  # March closed more than the retention ago
    await consumer.prune()
    rows = await month_rows(client.app, code)
    assert rows[(f"{year}-02-01", "browser", "Chrome")] == 1
    assert rows[(f"{year}-02-01", "browser", "Mobile Safari")] == 1
    assert rows[(f"{year}-03-01", "referrer", "news.example")] == 1
    assert (await client.get(span)).json() == before
    assert await consumer.roll_up(closed_before=datetime(year, 4, 7, tzinfo=UTC).date()) == []  # once

    # A visit of February that arrives after the roll-up (held by a server while Redis was away).
    recorder.clock = lambda: at(f"{year}-02-20T08:00:00")
    assert await visit(client, code, referer="https://t.co/late") == 302
    assert await recorder.flush()
    await settle()
    after = (await client.get(span)).json()
    assert after["total"]["visits"] == 4
    assert {r["name"]: r["visits"] for r in after["referrers"]} == {"t.co": 2, "direct": 1, "news.example": 1}
    assert (await month_rows(client.app, code))[(f"{year}-02-01", "referrer", "t.co")] == 2
    part = (await client.get(f"/api/v1/links/{code}/stats?from={year}-02-15&to={year}-03-31")).json()
    assert {r["name"]: r["visits"] for r in part["referrers"]} == {"t.co": 1, "direct": 1, "news.example": 1}


async def test_closed_months_roll_up_and_read_the_same(client):
    await closed_months_roll_up_and_read_the_same(client, client.app.state.visit_consumer,
                                                  lambda: settle(client), year=2025)
