"""The consumer's pipelined fold: the next batch is counted while the one before it commits.

SQLite + fakeredis. Each stream entry here is one read batch (batch=1,
entry_size=1), so a stream of a few entries is a few batches.
"""

from __future__ import annotations

import asyncio
import time

import fakeredis
import pytest

from service.errors import StorageUnavailable
from service.visits import aggregates, schema
from service.visits.consumer import VisitConsumer
from tests.support import make_settings, migrate, running_app

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")
ENTRIES = 4
VISITS_PER_ENTRY = 3


@pytest.fixture
async def app_client(sqlite_url, redis_server):
    settings = make_settings(sqlite_url, visits_consumer_in_process=False)
    await migrate(sqlite_url)
    async with running_app(settings, fakeredis.FakeAsyncRedis(server=redis_server)) as client:
        client.settings = settings
        yield client


async def fill(client, consumer: VisitConsumer, code: str) -> None:
    """ENTRIES stream entries of VISITS_PER_ENTRY visits of `code` each, by a browser (the link id left for
    the consumer to find, as from an old cache entry)."""
    now_ms = int(time.time() * 1000)
    clients = [["203.0.113.0", "00000000000000aa", CHROME, None, None]]
    await consumer._stream.ensure_group()
    for number in range(ENTRIES):
        visits = [[now_ms, None, code, 302, "GET", 0, False] for _ in range(VISITS_PER_ENTRY)]
        await consumer._stream.append([(f"test.{number}", schema.encode(clients, visits))],
                                      now_ms=now_ms, version=schema.VERSION)


def consumer_of(client, redis_server, name: str) -> VisitConsumer:
    return VisitConsumer.from_settings(client.settings, redis=fakeredis.FakeAsyncRedis(server=redis_server),
                                       db=client.app.state.db, name=name, batch=1, entry_size=1)


async def new_code(client) -> str:
    response = await client.post("/api/v1/links", json={"url": "https://example.com/pipeline"})
    assert response.status_code == 201, response.text
    return response.json()["code"]


async def visits_of(client, code: str) -> int:
    return (await client.get(f"/api/v1/links/{code}")).json()["visits"]


async def test_the_next_batch_is_counted_while_the_one_before_commits_and_commits_stay_in_order(
        app_client, redis_server, monkeypatch):
    code = await new_code(app_client)
    consumer = consumer_of(app_client, redis_server, "pipelined")
    await fill(app_client, consumer, code)
    timeline: list[str] = []
    prepare, commit, add = consumer._prepare, consumer._commit, aggregates.add

    async def prepared(entries):
        timeline.append("prepare")
        return await prepare(entries)

    async def committed(batch, **kwargs):
        timeline.append("commit starts")
        try:
            return await commit(batch, **kwargs)
        finally:
            timeline.append("commit ends")

    async def slow_add(**kwargs):
        await asyncio.sleep(0.05)  # SQL at work: the consumer counts the next batch meanwhile
        await add(**kwargs)

    monkeypatch.setattr(consumer, "_prepare", prepared)
    monkeypatch.setattr(consumer, "_commit", committed)
    monkeypatch.setattr(aggregates, "add", slow_add)
    assert await consumer.drain(timeout_seconds=10)

    kinds = timeline
    assert kinds.count("prepare") == ENTRIES and kinds.count("commit ends") == ENTRIES
    # Batch k+1 was prepared after batch k's commit had started and before it ended.
    starts = [i for i, kind in enumerate(kinds) if kind == "commit starts"]
    ends = [i for i, kind in enumerate(kinds) if kind == "commit ends"]
    prepares = [i for i, kind in enumerate(kinds) if kind == "prepare"]
    for k in range(ENTRIES - 1):
        assert starts[k] < prepares[k + 1] < ends[k], kinds
        assert ends[k] < starts[k + 1], kinds  # one commit at a time
    assert await visits_of(app_client, code) == ENTRIES * VISITS_PER_ENTRY
    pending = await consumer._redis.xpending(consumer.stream_key, consumer.group)
    assert pending["pending"] == 0


async def test_a_failed_commit_leaves_its_batch_and_the_one_read_behind_it_to_be_claimed_and_counted_once(
        app_client, redis_server, monkeypatch):
    code = await new_code(app_client)
    victim = consumer_of(app_client, redis_server, "victim")
    await fill(app_client, victim, code)
    add = aggregates.add

    async def failing_add(**kwargs):
        await asyncio.sleep(0.02)  # long enough for the next batch to be read and counted
        raise ConnectionError("SQL went away mid-fold")

    monkeypatch.setattr(aggregates, "add", failing_add)
    with pytest.raises(StorageUnavailable):  # what the transaction makes of it
        await victim.step()
    assert await visits_of(app_client, code) == 0
    # The failed batch and the one read behind it are pending for the victim.
    pending = await victim._redis.xpending(victim.stream_key, victim.group)
    assert pending["pending"] == 2

    monkeypatch.setattr(aggregates, "add", add)
    survivor = consumer_of(app_client, redis_server, "survivor")
    assert await survivor.claim(min_idle_ms=0) == 2 * VISITS_PER_ENTRY
    assert await survivor.drain(timeout_seconds=10)
    assert await visits_of(app_client, code) == ENTRIES * VISITS_PER_ENTRY
    assert (await survivor._redis.xpending(survivor.stream_key, survivor.group))["pending"] == 0


async def test_stop_ends_the_pipeline_after_the_batch_under_way(app_client, redis_server, monkeypatch):
    code = await new_code(app_client)
    consumer = consumer_of(app_client, redis_server, "stopping")
    await fill(app_client, consumer, code)
    add = aggregates.add

    async def add_then_stop(**kwargs):
        consumer.stop()
        await add(**kwargs)

    monkeypatch.setattr(aggregates, "add", add_then_stop)
    folded = await consumer.step()
    # The first batch commits; the second was read and counted before stop() and commits too; no third.
    assert folded in (VISITS_PER_ENTRY, 2 * VISITS_PER_ENTRY)
    assert await visits_of(app_client, code) == folded
    monkeypatch.setattr(aggregates, "add", add)
    assert await consumer_of(app_client, redis_server, "next").drain(timeout_seconds=10)
    assert await visits_of(app_client, code) == ENTRIES * VISITS_PER_ENTRY


async def test_drain_waits_for_the_fold_the_consumer_has_under_way(client, monkeypatch):
    # The in-process consumer has read an entry and is counting it when drain() is called
    # (settle() in tests, shutdown in the server): drain returns only once that entry is in.
    code = await new_code(client)
    consumer = client.app.state.visit_consumer
    counting, go_on = asyncio.Event(), asyncio.Event()
    prepare = VisitConsumer._prepare

    async def held(self, entries):
        if not counting.is_set():  # the consumer task's own fold, not drain's
            counting.set()
            await go_on.wait()
        return await prepare(self, entries)

    monkeypatch.setattr(VisitConsumer, "_prepare", held)
    assert (await client.get(f"/{code}", headers={"user-agent": CHROME})).status_code == 302
    assert await client.app.state.visit_recorder.flush()
    await asyncio.wait_for(counting.wait(), 10)
    drained = asyncio.ensure_future(consumer.drain(timeout_seconds=10))
    await asyncio.sleep(0.2)
    assert not drained.done()  # it waits for the fold under way instead of finding nothing left
    go_on.set()
    assert await drained
    assert await visits_of(client, code) == 1
