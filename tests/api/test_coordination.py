"""Coordination on SQLite + fakeredis: outbox events, the relay, pub/sub invalidation, webhooks, expiry, reconcile."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fakeredis
import jsonschema
import pytest
from sqlalchemy import func, select, update

from service import coordination
from service.coordination import webhooks
from service.coordination.lock import FencedLock, LockLost
from service.coordination.reconcile import KINDS, Reconciler
from service.coordination.relay import stream_key
from service.store.models import Link, LinkEvent, WebhookDelivery
from tests.support import bearer, make_key, make_settings, migrate, running_app


async def new_link(client, **body) -> str:
    response = await client.post("/api/v1/links", json={"url": "https://example.com/landing", **body})
    assert response.status_code == 201, response.text
    return response.json()["code"]


async def outbox(client) -> list[LinkEvent]:
    async with client.app.state.db.reading() as session:
        return list((await session.execute(select(LinkEvent).order_by(LinkEvent.id))).scalars())


async def until(condition, *, seconds: float = 5.0, every: float = 0.01):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = await condition()
        if value:
            return value
        await asyncio.sleep(every)
    raise AssertionError(f"not within {seconds} s")


async def no_fence(_session) -> None:
    return None


# --- the outbox ---------------------------------------------------------------------


async def test_each_change_writes_its_event_in_the_same_transaction(client):
    code = await new_link(client, alias="evt-one", tags=["Docs"])
    await client.patch(f"/api/v1/links/{code}", json={"title": "Hello", "disabled": True})
    await client.delete(f"/api/v1/links/{code}")
    generated = await new_link(client)
    rows = await outbox(client)
    assert [(row.type, row.code) for row in rows] == [
        ("link.created", "evt-one"), ("link.updated", "evt-one"), ("link.deleted", "evt-one"),
        ("link.created", generated)]
    assert rows[0].data["link"]["tags"] == ["docs"]
    assert rows[1].data["changed"] == ["disabled", "title"] and rows[1].data["link"]["disabled"] is True
    assert rows[2].data["link"]["deleted"] is True


async def test_a_link_whose_visits_run_out_says_gone_once(client):
    code = await new_link(client, max_visits=2)
    person = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                            "Chrome/131.0.0.0 Safari/537.36"}  # bots do not use up a limit
    assert [(await client.get(f"/{code}", headers=person)).status_code for _ in range(4)] == [302, 302, 410, 410]
    limits = client.app.state.visit_limits
    await limits.flush()
    await client.get(f"/{code}", headers=person)
    await limits.flush()
    gone = [(e.code, e.data["reason"]) for e in await outbox(client) if e.type == "link.gone"]
    assert gone == [(code, "exhausted")]


async def test_a_change_that_fails_writes_no_event(client):
    await new_link(client, alias="taken")
    before = len(await outbox(client))
    assert (await client.post("/api/v1/links", json={"url": "https://example.com/", "alias": "taken"})).status_code == 409
    assert (await client.patch("/api/v1/links/taken", json={"valid_since": "2030-01-02T00:00:00Z",
                                                             "valid_until": "2030-01-01T00:00:00Z"})).status_code == 422
    assert len(await outbox(client)) == before


async def test_the_relay_publishes_every_event_to_the_link_event_stream_once(client, redis_server):
    codes = [await new_link(client) for _ in range(5)]
    await client.patch(f"/api/v1/links/{codes[0]}", json={"url": "https://example.com/changed"})

    async def published():
        rows = await outbox(client)
        return rows if all(row.published_at for row in rows) else None

    rows = await until(published)
    sync = fakeredis.FakeRedis(server=redis_server)
    entries = sync.xrange(stream_key(client.app.state.settings.redis_key_prefix))
    documents = [json.loads(fields[b"event"]) for _, fields in entries]
    assert [d["id"] for d in documents] == [row.id for row in rows]
    assert documents[-1]["type"] == "link.updated" and documents[-1]["link"]["url"] == "https://example.com/changed"
    schema = json.loads((Path(coordination.__file__).parent / "link-event.schema.json").read_text())
    for document in documents:
        jsonschema.validate(document, schema, format_checker=jsonschema.FormatChecker())


async def test_an_import_says_created_for_each_link_and_a_purge_says_deleted(client):
    from service.lifecycle import transfer

    state = client.app.state
    rows = [(1, {"url": "https://example.com/i1", "alias": "imp-one"}), (2, {"url": "https://example.com/i2"}),
            (3, {"url": "https://example.com/i3", "valid_until": "2000-01-01T00:00:00Z"})]
    report = await transfer.import_links(state.links, iter(rows), owner_id=None)
    assert report.created == 3
    created = [e for e in await outbox(client) if e.type == "link.created"]
    assert len(created) == 3 and "imp-one" in {e.code for e in created}
    purged = await state.links.purge_gone(before=datetime(2001, 1, 1, tzinfo=UTC))
    deleted = [(e.code, e.data["reason"]) for e in await outbox(client) if e.type == "link.deleted"]
    assert len(purged) == 1 and deleted == [(purged[0], "purged")]


# --- pub/sub invalidation between replicas -----------------------------------------


@pytest.fixture
async def two_replicas(sqlite_url, redis_server):
    settings = make_settings(sqlite_url)
    await migrate(sqlite_url)
    async with running_app(settings, fakeredis.FakeAsyncRedis(server=redis_server)) as a:
        async with running_app(settings, fakeredis.FakeAsyncRedis(server=redis_server)) as b:
            await a.app.state.changes.wait_subscribed()
            await b.app.state.changes.wait_subscribed()
            yield a, b


async def test_an_edit_on_one_replica_reaches_the_others_cache_in_well_under_100_ms(two_replicas):
    a, b = two_replicas
    b.headers.update(a.headers)
    code = await new_link(a)
    delays = []
    for round_ in range(20):
        target = f"https://example.com/v{round_}"
        assert (await b.get(f"/{code}")).status_code == 302  # b has it in memory now
        started = time.perf_counter()
        assert (await a.patch(f"/api/v1/links/{code}", json={"url": target})).status_code == 200

        async def seen():
            return (await b.get(f"/{code}")).headers.get("location") == target

        await until(seen, seconds=1.5, every=0.001)
        delays.append(time.perf_counter() - started)
    # Within the local cache TTL of 1 s would hold without pub/sub; this is far below it.
    assert statistics.median(delays) < 0.1, delays
    print(f"cross-replica staleness: median {statistics.median(delays) * 1000:.1f} ms, "
          f"max {max(delays) * 1000:.1f} ms over {len(delays)} edits")


async def test_a_lost_change_message_still_shows_within_the_local_cache_ttl(two_replicas):
    a, b = two_replicas
    code = await new_link(a)
    assert (await b.get(f"/{code}")).headers["location"] == "https://example.com/landing"
    b.app.state.changes._forget = lambda _code: None  # b hears nothing from now on
    await a.patch(f"/api/v1/links/{code}", json={"url": "https://example.com/later"})
    await asyncio.sleep(0.3)
    assert (await b.get(f"/{code}")).headers["location"] == "https://example.com/landing"
    redirector = b.app.state.redirector
    real = redirector._clock
    redirector._clock = lambda: real() + b.app.state.settings.local_cache_ttl_seconds + 0.01
    assert (await b.get(f"/{code}")).headers["location"] == "https://example.com/later"


# --- webhooks -------------------------------------------------------------------------


class Receiver:
    """A plain HTTP endpoint on 127.0.0.1 answering the statuses it is given, in turn."""

    def __init__(self, statuses=(200,)) -> None:
        self.statuses = list(statuses)
        self.requests: list[tuple[dict, bytes]] = []

    async def handle(self, reader, writer) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await reader.readexactly(int(headers.get("content-length", 0)))
        self.requests.append((headers, body))
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hook"
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()


@pytest.fixture
async def hooks_client(sqlite_url, redis_server):
    settings = make_settings(sqlite_url, webhook_allow_private=True, webhook_max_attempts=3)
    await migrate(sqlite_url)
    async with running_app(settings, fakeredis.FakeAsyncRedis(server=redis_server)) as client:
        yield client


async def deliveries(client) -> list[WebhookDelivery]:
    async with client.app.state.db.reading() as session:
        return list((await session.execute(select(WebhookDelivery).order_by(WebhookDelivery.id))).scalars())


async def test_a_webhook_gets_each_event_signed_and_a_receiver_can_verify_it(hooks_client):
    async with Receiver() as receiver:
        created = await hooks_client.post("/api/v1/webhooks", json={"url": receiver.url,
                                                                     "events": ["link.created", "link.deleted"]})
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        assert secret.startswith("whsec_") and "secret" not in (await hooks_client.get("/api/v1/webhooks")).text
        code = await new_link(hooks_client)
        await hooks_client.patch(f"/api/v1/links/{code}", json={"title": "not subscribed"})
        await hooks_client.delete(f"/api/v1/links/{code}")
        await until(lambda: _count(receiver, 2), seconds=10)

        async def delivered():
            rows = await deliveries(hooks_client)
            return len(rows) == 2 and all(row.state == "delivered" for row in rows)

        await until(delivered, seconds=10)
    types = [json.loads(body)["type"] for _, body in receiver.requests]
    assert types == ["link.created", "link.deleted"]
    for headers, body in receiver.requests:
        assert webhooks.verify(secret, int(headers["linkgate-timestamp"]), body, headers["linkgate-signature"])
        assert not webhooks.verify("whsec_other", int(headers["linkgate-timestamp"]), body,
                                   headers["linkgate-signature"])
        assert json.loads(body)["id"] == int(headers["linkgate-event-id"])

    async def all_delivered():  # marked after the receiver's answer came back: a moment after it got the body
        return {d.state for d in await deliveries(hooks_client)} == {"delivered"}

    assert await until(all_delivered, seconds=5)


async def _count(receiver, n):
    return len(receiver.requests) >= n


@pytest.fixture
async def hooks_by_hand(sqlite_url, redis_server):
    """As hooks_client, with the coordinator's loop off: the test relays and delivers itself."""
    settings = make_settings(sqlite_url, webhook_allow_private=True, webhook_max_attempts=3,
                             coordination_in_process=False)
    await migrate(sqlite_url)
    async with running_app(settings, fakeredis.FakeAsyncRedis(server=redis_server)) as client:
        yield client


async def test_a_failing_endpoint_is_retried_with_backoff_then_marked_failed(hooks_by_hand):
    hooks_client = hooks_by_hand
    state = hooks_client.app.state
    async with Receiver(statuses=(500, 503, 200)) as flaky, Receiver(statuses=(500,)) as broken:
        for url in (flaky.url, broken.url):
            assert (await hooks_client.post("/api/v1/webhooks", json={"url": url, "events": ["link.created"]})
                    ).status_code == 201
        await new_link(hooks_client)
        assert await state.coordinator.relay.relay_once(fenced=no_fence) == 1
        deliverer = state.coordinator.deliverer
        assert await deliverer.deliver_due(fenced=no_fence) == 2
        assert await deliverer.deliver_due(fenced=no_fence) == 0  # not due again yet
        real = deliverer.clock
        for minutes in (1, 2, 3, 4):  # each retry is due later; move the clock, do not sleep
            deliverer.clock = lambda m=minutes: real() + timedelta(minutes=m)
            await deliverer.deliver_due(fenced=no_fence)
    flaky_try, broken_try = sorted(await deliveries(hooks_client), key=lambda d: d.webhook_id)
    assert (flaky_try.state, flaky_try.attempts, flaky_try.last_status) == ("delivered", 3, 200)
    assert (broken_try.state, broken_try.attempts, broken_try.last_error) == ("failed", 3, "answered 500")
    hooks = (await hooks_client.get("/api/v1/webhooks")).json()["data"]
    shown = (await hooks_client.get(f"/api/v1/webhooks/{hooks[1]['id']}/deliveries")).json()["data"]
    assert [(d["state"], d["attempts"]) for d in shown] == [("failed", 3)]
    assert webhooks.backoff_seconds(1) == 1 and webhooks.backoff_seconds(3) == 4 and webhooks.backoff_seconds(40) == 600


async def test_a_webhook_name_that_resolves_to_loopback_is_refused_when_the_request_is_made(client):
    # Registered under a public-looking name; at send time the name resolves to 127.0.0.1.
    async with Receiver() as receiver:
        port = int(receiver.url.rsplit(":", 1)[1].split("/")[0])
        created = await client.post("/api/v1/webhooks", json={"url": f"https://hooks.example.com:{port}/hook",
                                                                "events": ["link.created"]})
        assert created.status_code == 201, created.text

        async def to_loopback(host, port):
            return ["127.0.0.1"]

        client.app.state.coordinator.deliverer.client = webhooks.checked_client(
            allow_private=False, timeout_seconds=2, resolver=to_loopback)
        await new_link(client)

        async def tried():
            rows = await deliveries(client)
            return rows if rows and rows[0].attempts else None

        [delivery] = await until(tried, seconds=10)
    assert receiver.requests == []
    assert "internal address" in delivery.last_error and delivery.state == "pending"


@pytest.mark.parametrize("url", [
    "http://hooks.example.com/plain-http", "https://127.0.0.1/hook", "https://10.1.2.3/hook",
    "https://localhost/hook", "https://[::1]/hook", "ftp://hooks.example.com/",
], ids=["http", "loopback", "private", "localhost", "v6-loopback", "ftp"])
async def test_webhook_endpoints_follow_the_link_target_rules(client, url):
    response = await client.post("/api/v1/webhooks", json={"url": url, "events": ["link.created"]})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_an_editor_manages_only_its_own_webhooks_and_hears_only_of_its_own_links(client):
    app = client.app
    editor = bearer(await make_key(app, "hook-editor", "editor"))
    reader = bearer(await make_key(app, "hook-reader", "reader"))
    body = {"url": "https://hooks.example.com/a", "events": ["link.created"]}
    assert (await client.post("/api/v1/webhooks", headers=reader, json=body)).status_code == 403
    mine = (await client.post("/api/v1/webhooks", headers=editor, json=body)).json()
    admins = (await client.post("/api/v1/webhooks", json=body)).json()
    assert (mine["scope"], admins["scope"]) == ("own", "all")
    assert [h["id"] for h in (await client.get("/api/v1/webhooks", headers=editor)).json()["data"]] == [mine["id"]]
    assert (await client.get(f"/api/v1/webhooks/{admins['id']}", headers=editor)).status_code == 404
    assert (await client.delete(f"/api/v1/webhooks/{admins['id']}", headers=editor)).status_code == 404
    await client.post("/api/v1/links", json={"url": "https://example.com/admins"})  # the admin's link
    await client.post("/api/v1/links", headers=editor, json={"url": "https://example.com/editors"})
    await until(lambda: _all_published(client))
    by_hook: dict[int, int] = {}
    for delivery in await deliveries(client):
        by_hook[delivery.webhook_id] = by_hook.get(delivery.webhook_id, 0) + 1
    assert by_hook == {mine["id"]: 1, admins["id"]: 2}
    assert (await client.delete(f"/api/v1/webhooks/{mine['id']}", headers=editor)).status_code == 204


async def _all_published(client):
    rows = await outbox(client)
    return bool(rows) and all(row.published_at for row in rows)


# --- expiry timers ---------------------------------------------------------------------


async def expire_many(client, settings, *, count: int, spread: float, bound: float, lead: float = 3.0) -> str:
    """`count` links expiring over `spread` seconds from `lead` seconds on, made in SQL alone; each must
    say gone once, in time."""
    state = client.app.state
    start = datetime.now(UTC) + timedelta(seconds=lead)
    rows = [{"url": f"https://example.com/{i}", "redirect_status": 302, "query_policy": None,
             "valid_until": start + timedelta(seconds=spread * i / count)} for i in range(count)]
    from service.store import sql

    async with state.db.transaction() as session:
        ids_codes = await sql.insert_generated_links(session=session, rows=rows, now=datetime.now(UTC),
                                                     encode=state.links.codec.encode)
    ids = {row_id for row_id, _ in ids_codes}
    # Links made in SQL alone (as by an import while Redis was away): reconcile sets their timers.
    reconciler = Reconciler(db=state.db, redis=state.cache.redis, service=state.links,
                            prefix=settings.redis_key_prefix, batch=5000, ttl_seconds=60, clock=state.links.clock)
    report = await reconciler.run(FencedLock(state.cache.redis, "reconcile", prefix=settings.redis_key_prefix))
    assert report["repaired"]["expiry_timers"] >= count
    assert datetime.now(UTC) < start, "making the links took longer than the lead: the first were due already"

    async def told() -> list:
        async with state.db.reading() as session:
            rows = (await session.execute(
                select(LinkEvent.link_id, LinkEvent.occurred_at, Link.valid_until)
                .join(Link, Link.id == LinkEvent.link_id).where(LinkEvent.type == "link.gone")
            )).all()
        mine = [row for row in rows if row[0] in ids]
        return mine if len(mine) >= count else None

    gone = await until(told, seconds=spread + 60, every=0.5)
    assert len(gone) == count and {link_id for link_id, _, _ in gone} == ids, "each link told gone once"
    lateness = sorted((occurred - due).total_seconds() for _, occurred, due in gone)
    assert lateness[0] >= 0, "no link is told gone before its time"
    assert lateness[-1] < bound, f"latest {lateness[-1]:.2f} s after its time"
    return (f"{count} link.gone events over {spread:.0f} s: p50 {lateness[count // 2]:.2f} s, "
            f"p99 {lateness[int(count * 0.99)]:.2f} s, max {lateness[-1]:.2f} s late")


async def test_5000_links_expiring_at_spread_times_each_say_gone_once_within_seconds(sqlite_url, redis_server):
    # (100,000 on PostgreSQL and Redis: tests/integration/test_coordination_postgres_redis.py.)
    settings = make_settings(sqlite_url, expiry_interval_seconds=0.5)
    await migrate(sqlite_url)
    async with running_app(settings, fakeredis.FakeAsyncRedis(server=redis_server)) as client:
        print("expiry timers:", await expire_many(client, settings, count=5000, spread=4.0, bound=3.0))


async def test_an_expiry_moved_later_is_not_told_early_and_a_popped_link_is_told_once(client):
    state = client.app.state
    soon = (datetime.now(UTC) + timedelta(seconds=60)).isoformat()
    code = await new_link(client, valid_until=soon)
    later = datetime.now(UTC) + timedelta(days=2)
    async with state.db.transaction() as session:  # moved in SQL while Redis was not told
        await session.execute(update(Link).where(Link.code == code).values(valid_until=later))
    timers = state.coordinator.timers
    real = timers.clock
    timers.clock = lambda: real() + timedelta(minutes=5)
    await timers.pop_due(fenced=no_fence)
    assert not [e for e in await outbox(client) if e.type == "link.gone"]
    timers.clock = lambda: real() + timedelta(days=3)
    for _ in range(3):
        await timers.pop_due(fenced=no_fence)
        await timers.redis.zadd(timers.key, {str((await state.links.get(code, grant=_admin(client))).id): 1})
    gone = [e for e in await outbox(client) if e.type == "link.gone"]
    assert [(e.code, e.data["reason"]) for e in gone] == [(code, "expired")]


def _admin(client):
    from service.access.grant import Grant
    from service.access.keys import Principal
    from service.access.policy import Scope

    return Grant(principal=Principal(id=0, key_id="x", name="x", role="admin"), scope=Scope.ANY)


# --- the lock (in-process; the real-Redis drills are in the integration tier) ----------


async def test_a_lock_lost_while_held_cancels_its_work_and_says_so(redis_server):
    redis = fakeredis.FakeAsyncRedis(server=redis_server)
    lock = FencedLock(redis, "drill", ttl_seconds=0.3)
    finished = False
    with pytest.raises(LockLost):
        async with lock.hold() as held:
            assert held.fence == 1
            await redis.delete(lock.key)  # as if it expired while this holder was paused
            await asyncio.sleep(2)
            finished = True
    assert not finished
    second = await lock.acquire()
    assert second is not None and second.fence == 2


async def test_a_fence_floor_keeps_tokens_growing_after_redis_lost_the_counter(redis_server):
    redis = fakeredis.FakeAsyncRedis(server=redis_server)
    lock = FencedLock(redis, "floor", ttl_seconds=5)
    first = await lock.acquire()
    await redis.flushall()
    again = await lock.acquire(floor=first.fence + 40)
    assert again.fence == first.fence + 41


# --- reconcile --------------------------------------------------------------------------


async def test_reconcile_repairs_each_kind_of_drift_and_a_second_run_changes_nothing(client):
    first, _ = await drift_then_reconcile_twice(client)
    assert first["repaired"]["expiry_timers"] == 1


async def drift_then_reconcile_twice(client) -> tuple[dict, dict]:
    """One drift of each kind, then two reconcile runs: the first repairs each, the second finds nothing.

    Returns both reports. (Expiry timers: at least the one made here; on a
    database other tests share, every link of theirs with a valid_until too.)
    """
    state = client.app.state
    cache, prefix = state.cache, state.settings.redis_key_prefix
    # Cache drops another test left remembered in a shared database (its Redis went away) are not this one's.
    await state.links.drain_pending_invalidations()
    stale, deleted, limited = await new_link(client), await new_link(client), await new_link(client, max_visits=5)
    timed = await new_link(client, valid_until=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    for code in (stale, deleted, limited):
        await client.get(f"/{code}")
    async with state.db.transaction() as session:  # changes SQL alone saw (Redis was not told)
        await session.execute(update(Link).where(Link.code == stale).values(url="https://example.com/sql-wins"))
        await session.execute(update(Link).where(Link.code == deleted).values(deleted_at=datetime.now(UTC)))
        await session.execute(update(Link).where(Link.code == limited).values(visit_count=4))
    redis = cache.redis
    await redis.set(cache.key("nosuchcode"), b"302https://example.com/ghost\nhttps://example.com/ghost")
    await redis.set(cache.key(timed), b"")  # a "no such code" for a code that exists
    await redis.set(f"{prefix}{{{limited}}}:visits", 1)
    await redis.delete(f"{prefix}{{expiries}}")

    def reconciler():
        return Reconciler(db=state.db, redis=redis, service=state.links, prefix=prefix, batch=2,
                          ttl_seconds=60, clock=state.links.clock)

    lock = FencedLock(redis, "reconcile", prefix=prefix)
    first = await reconciler().run(lock)
    assert first["repaired"]["expiry_timers"] >= 1
    assert first["repaired"] == {"stale_links": 1, "deleted_links": 1, "unknown_codes": 1, "false_misses": 1,
                                 "pending_invalidations": 0, "visit_counters": 1,
                                 "expiry_timers": first["repaired"]["expiry_timers"]}
    assert (await client.get(f"/{stale}")).headers["location"] == "https://example.com/sql-wins"
    assert (await client.get(f"/{deleted}")).status_code == 410
    assert int(await redis.get(f"{prefix}{{{limited}}}:visits")) == 4
    second = await reconciler().run(lock)
    assert second["repaired"] == {kind: 0 for kind in KINDS}
    assert second["fence"] > first["fence"] and second["scanned"]["links"] >= 3
    assert set(second) == {"scanned", "repaired", "took_ms", "fence"}
    return first, second


async def test_reconcile_exits_quietly_when_another_replica_holds_its_lock(client):
    state = client.app.state
    lock = FencedLock(state.cache.redis, "reconcile", prefix=state.settings.redis_key_prefix)
    assert await lock.acquire() is not None
    reconciler = Reconciler(db=state.db, redis=state.cache.redis, service=state.links,
                            prefix=state.settings.redis_key_prefix, batch=10, ttl_seconds=60, clock=state.links.clock)
    assert await reconciler.run(lock) is None


def test_the_reconcile_command_prints_its_report_as_the_last_line(tmp_path, monkeypatch, capsys):
    from service.__main__ import main

    url = f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    asyncio.run(migrate(url))
    monkeypatch.setenv("LINKGATE_DATABASE_URL", url)
    monkeypatch.setenv("LINKGATE_HASHIDS_SALT", "test-salt")
    assert main(["reconcile"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(report) == {"scanned", "repaired", "took_ms", "fence"} and report["fence"] >= 1
