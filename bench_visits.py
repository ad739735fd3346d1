"""Visit analytics benchmark: recorder cost, fold rate, redirect-to-stats lag, a year of stats of 10M visits.

    .venv/bin/python bench_visits.py            # PostgreSQL and Redis on 127.0.0.1 (as .ci/run starts them)
    .venv/bin/python bench_visits.py --quick    # smaller counts, for a look

What it measures (docs/visits.md quotes a run):

1. the recorder's cost on the redirect path: ``record()`` per call (timeit),
   and what its flusher then spends per visit, on the same event loop (one
   client, like wrk; every visit a new client; a realistic mix);
2. the consumer's fold rate on one core: the stream is filled with visits of
   a realistic mix (the User-Agents of tests/data/user-agents.tsv, ~10% bots,
   1% never seen before; 10,000 links, Zipf-distributed; 200,000 visitors;
   a dozen referrers), then one consumer, this process pinned to CPU 0,
   folds it all into PostgreSQL (which runs on whatever core is free); then
   the same for a few campaigns (100 links, 10,000 visitors), since what a
   fold costs is mostly the aggregate rows it touches;
3. the lag from redirect to stats: visits recorded at a steady rate by a real
   recorder (its flusher on its 250 ms timer), folded by a real
   ``python -m service consume-visits`` process; each visit's lag is the time
   from its record() to the first moment the folded count includes it
   (the count is polled every 20 ms);
4. ``GET /api/v1/links/{code}/stats`` over the last 365 days of a link with
   10,000,000 visits, the aggregate rows seeded directly (that is the point of
   aggregates): 365 day rows and ~270 breakdown values a day.

It makes a PostgreSQL database and a Redis key prefix of its own and drops
both at the end. Nothing here is part of the service.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import subprocess
import sys
import time
import timeit
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import redis.asyncio as redis  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from service.access.addresses import ClientAddresses  # noqa: E402
from service.app import create_app  # noqa: E402
from service.config import Settings  # noqa: E402
from service.store import sql  # noqa: E402
from service.store.migrate import upgrade_engine  # noqa: E402
from service.visits.aggregates import month_end  # noqa: E402
from service.visits.anonymise import DailySalts  # noqa: E402
from service.visits.consumer import VisitConsumer, closed_before  # noqa: E402
from service.visits.recorder import LINK_ID, VisitRecorder  # noqa: E402
from service.visits.stream import VisitStream  # noqa: E402

FIXTURE = ROOT / "tests" / "data" / "user-agents.tsv"
REFERRERS = [b"", b"", b"", b"https://t.co/x", b"https://www.google.com/", b"https://www.facebook.com/",
             b"https://l.instagram.com/", b"https://www.linkedin.com/feed/", b"https://news.ycombinator.com/item",
             b"https://mail.google.com/mail/u/0/", b"android-app://com.slack/", b"https://www.reddit.com/r/x/",
             b"https://duckduckgo.com/", b"https://out.reddit.com/t3_x"]


def user_agents() -> tuple[list[bytes], list[bytes]]:
    humans, bots = [], []
    for line in FIXTURE.read_text().splitlines():
        if not line.startswith("#"):
            kind, bot, _, _, _, agent = line.split("\t", 5)
            (bots if bot == "1" else humans).append(agent.encode())
    return humans, bots


class Mix:
    """Visits as a redirect would hand them to the recorder: (code, status, scope)."""

    def __init__(self, links: list[tuple[int, str]], *, seed: int = 7, visitors: int = 200_000) -> None:
        self.random = random.Random(seed)
        self.links = links
        self.humans, self.bots = user_agents()
        # Zipf-like: link k is visited in proportion to 1/k.
        self.weights = [1 / (k + 1) for k in range(len(links))]
        self.visitors = visitors
        self.novel = 0

    def scopes(self, count: int) -> list[tuple[str, int, dict]]:
        rnd = self.random
        picked = rnd.choices(self.links, weights=self.weights, k=count)
        out = []
        for link_id, code in picked:
            visitor = rnd.randrange(self.visitors)
            if rnd.random() < 0.10:
                agent = self.bots[visitor % len(self.bots)]
            else:
                agent = self.humans[visitor % len(self.humans)]
            if rnd.random() < 0.01:  # a version string never seen before
                self.novel += 1
                agent = agent + f" Novel/{self.novel}".encode()
            headers = [(b"host", b"sho.rt"), (b"user-agent", agent), (b"accept", b"text/html,*/*;q=0.8"),
                       (b"accept-language", b"en-US,en;q=0.9"), (b"accept-encoding", b"gzip, deflate, br")]
            referrer = REFERRERS[visitor % len(REFERRERS)]
            if referrer:
                headers.append((b"referer", referrer))
            address = f"{(visitor >> 16) % 200 + 20}.{(visitor >> 8) & 255}.{visitor & 255}.{visitor % 7 + 1}"
            scope = {"type": "http", "method": "GET", "path": f"/{code}", "headers": headers,
                     "client": (address, 40000 + visitor % 20000), LINK_ID: link_id}
            out.append((code, 302, scope))
        return out


def recorder_for(redis_client, prefix: str, **overrides) -> VisitRecorder:
    values = dict(stream=VisitStream(redis_client, prefix=prefix, retention_seconds=86400),
                  salts=DailySalts(redis_client, prefix=prefix), addresses=ClientAddresses(()),
                  buffer_size=10_000_000, flush_seconds=0.25, flush_size=1000)
    values.update(overrides)
    return VisitRecorder(**values)


# --- 1. the recorder on the redirect path ------------------------------------------


async def bench_recorder(redis_client, prefix: str, rows: list) -> None:
    recorder = recorder_for(redis_client, prefix)
    wrk = {"type": "http", "method": "GET", "path": "/abc", "headers": [(b"host", b"127.0.0.1:8000")],
           "client": ("127.0.0.1", 50000), LINK_ID: 1}
    number = 1_000_000
    best = min(timeit.repeat(lambda: recorder.record("abc", 302, wrk), number=number, repeat=5)) / number
    recorder._raw.clear()
    baseline = min(timeit.repeat(lambda: None, number=number, repeat=5)) / number
    rows.append(("recorder `record()` per call (timeit, best of 5 x 1,000,000)",
                 f"{(best - baseline) * 1e9:,.0f} ns", "the lambda's own call subtracted"))

    mix = Mix([(n, f"code{n}") for n in range(1, 10_001)])
    cases = {
        "one client (wrk: one address, no User-Agent)": [("abc", 302, wrk)] * 100_000,
        "every visit a new client": [("abc", 302, {**wrk, "client": (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 1),
                                                    "headers": s[2]["headers"]})
                                     for i, s in enumerate(mix.scopes(100_000))],
        "realistic mix (200,000 visitors, 14 referrers)": mix.scopes(100_000),
    }
    for name, visits in cases.items():
        timings = []
        for _ in range(3):
            recorder._clients.clear()
            raw = [(time.time(), code, status, scope) for code, status, scope in visits]
            started = time.perf_counter()
            recorder._take(raw)
            await recorder._encode(10_000_000)
            timings.append((time.perf_counter() - started) / len(visits))
            recorder._unsent.clear()
        rows.append((f"flusher per visit, {name}", f"{min(timings) * 1e6:.2f} us",
                     "off the request, on the same event loop; Redis round trip not included"))


# --- 2. the fold rate -----------------------------------------------------------------


async def make_database(admin_url: str) -> tuple[str, str]:
    name = f"linkgate_bench_visits_{uuid.uuid4().hex[:8]}"
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    await engine.dispose()
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    engine = create_async_engine(url)
    await upgrade_engine(engine)
    await engine.dispose()
    return name, url


async def drop_database(admin_url: str, name: str) -> None:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await engine.dispose()


async def seed_links(db: sql.Database, count: int) -> list[tuple[int, str]]:
    from service.codes import CodeCodec

    codec = CodeCodec(salt="bench", min_length=6, alphabet=Settings().hashids_alphabet)
    rows = [{"url": f"https://example.com/{n}", "redirect_status": 302, "query_policy": None, "created_by_id": None}
            for n in range(count)]
    async with db.transaction() as session:
        return await sql.insert_generated_links(session=session, rows=rows, now=datetime.now(UTC), encode=codec.encode)


async def fill_stream(redis_client, prefix: str, mix: Mix, events: int) -> None:
    recorder = recorder_for(redis_client, prefix)
    done = 0
    while done < events:
        chunk = min(50_000, events - done)
        recorder._take([(time.time(), code, status, scope) for code, status, scope in mix.scopes(chunk)])
        assert await recorder.flush()
        done += chunk


async def bench_fold(settings: Settings, redis_client, mix: Mix, events: int, rows: list, *, name: str) -> None:
    await fill_stream(redis_client, settings.redis_key_prefix, mix, events)
    db = sql.Database.open(settings.database_url, pool_size=2)
    consumer = VisitConsumer.from_settings(settings, redis=redis_client, db=db, name="bench")
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {0})  # one core for this process; PostgreSQL and Redis run elsewhere
    started, cpu = time.perf_counter(), time.process_time()
    assert await consumer.drain(timeout_seconds=600)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    assert consumer.folded == events, (consumer.folded, events)
    rows.append((f"fold rate, one consumer on CPU 0, {events:,} visits ({name})",
                 f"{events / wall:,.0f} events/s", f"{cpu / events * 1e6:.1f} us CPU of the consumer per event; "
                 f"{wall:.1f} s wall, batches of {settings.visits_consumer_batch}"))
    await db.close()


# --- 3. the lag -------------------------------------------------------------------------


async def bench_lag(settings: Settings, redis_client, mix: Mix, *, rate: int, seconds: float, rows: list) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINKGATE_")}
    env.update({"LINKGATE_DATABASE_URL": settings.database_url, "LINKGATE_REDIS_URL": settings.redis_url,
                "LINKGATE_REDIS_KEY_PREFIX": settings.redis_key_prefix, "LINKGATE_LOG_LEVEL": "warning"})
    consumer = subprocess.Popen([sys.executable, "-m", "service", "consume-visits"], cwd=ROOT, env=env)
    engine = create_async_engine(settings.database_url)
    stream_key = VisitStream(None, prefix=settings.redis_key_prefix, retention_seconds=60).key

    async def folded() -> int:
        async with engine.connect() as connection:
            value = (await connection.execute(text("SELECT events FROM visit_streams WHERE stream = :s"),
                                              {"s": stream_key})).scalar()
        return int(value or 0)

    try:
        base = await folded()
        recorder = recorder_for(redis_client, settings.redis_key_prefix)
        flusher = asyncio.create_task(recorder.run())
        visits = mix.scopes(int(rate * seconds))
        recorded: list[float] = []
        seen: list[tuple[float, int]] = []

        async def poll() -> None:
            # The folded count over time, while visits are recorded and after, until all are in.
            deadline = time.monotonic() + seconds + 60
            while time.monotonic() < deadline:
                count = await folded() - base
                seen.append((time.monotonic(), count))
                if count >= len(visits):
                    return
                await asyncio.sleep(0.02)

        poller = asyncio.create_task(poll())
        loop = asyncio.get_running_loop()
        start = loop.time()
        per_tick = max(1, rate // 1000)
        for at in range(0, len(visits), per_tick):
            target = start + at / rate
            delay = target - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic()
            for code, status, scope in visits[at:at + per_tick]:
                recorder.record(code, status, scope)
                recorded.append(now)
        await poller
        flusher.cancel()
        lags = []
        position = 0
        for index, when in enumerate(recorded):
            while position < len(seen) and seen[position][1] <= index:
                position += 1
            lags.append((seen[position][0] if position < len(seen) else float("inf")) - when)
        lags.sort()
        p50, p99 = lags[len(lags) // 2], lags[int(len(lags) * 0.99) - 1]
        rows.append((f"lag redirect -> stats at {rate:,} visits/s for {seconds:.0f} s",
                     f"p99 {p99:.2f} s", f"p50 {p50:.2f} s, max {lags[-1]:.2f} s; consume-visits in its own process"))
    finally:
        consumer.terminate()
        consumer.wait(timeout=30)
        await engine.dispose()


# --- 4. a year of stats of 10,000,000 visits ---------------------------------------------


async def seed_year(settings: Settings, link_id: int, *, total: int, today: date) -> tuple[int, int, int]:
    """Aggregate rows of one link as a year of `total` visits would leave them (and the service's the same)."""
    rnd = random.Random(3)
    dimensions = {"referrer": 150, "country": 80, "browser": 25, "os": 12, "device": 5}
    start = today - timedelta(days=364)
    per_day = total // 365
    engine = create_async_engine(settings.database_url)
    days, breakdowns, months = [], [], {}
    for offset in range(365):
        on = start + timedelta(days=offset)
        visits = int(per_day * rnd.uniform(0.7, 1.3))
        days.append((link_id, on, visits, visits // 10, int(visits * 0.6), visits // 20))
        for dimension, count in dimensions.items():
            weights = [1 / (k + 1) for k in range(count)]
            scale = visits / sum(weights)
            for k in range(count):
                value = f"{dimension}-{k}" if dimension != "referrer" or k < 120 else f"tail-{offset % 40}-{k}"
                share = max(1, int(weights[k] * scale))
                breakdowns.append((link_id, on, dimension, value, share, share // 10))
                key = (link_id, on.replace(day=1), dimension, value)
                old = months.get(key, (0, 0))
                months[key] = (old[0] + share, old[1] + share // 10)
    async with engine.begin() as connection:
        driver = (await connection.get_raw_connection()).driver_connection
        await driver.copy_records_to_table(
            "visit_days", records=days, columns=["link_id", "day", "visits", "bots", "visitors", "bot_visitors"])
        columns = ["link_id", "day", "dimension", "value", "visits", "bots"]
        await driver.copy_records_to_table("visit_breakdowns", records=breakdowns, columns=columns)
        await driver.copy_records_to_table(
            "visit_month_breakdowns", records=[(*key, *value) for key, value in months.items()],
            columns=["link_id", "month", "dimension", "value", "visits", "bots"])
        # The consumers roll up the months that closed (consumer.prune): those months are
        # read from their monthly rows.
        closed_from = closed_before(time.time(), settings.visits_stream_retention_seconds)
        closed = {month for (_, month, _, _) in months if month_end(month) < closed_from}
        await driver.copy_records_to_table(
            "visit_rollups", records=[(month, datetime.now(UTC)) for month in sorted(closed)], columns=["month", "rolled_at"])
        for table in ("visit_days", "visit_breakdowns", "visit_month_breakdowns"):
            await connection.execute(text(f"ANALYZE {table}"))
    await engine.dispose()
    return len(days), len(breakdowns), len(months)


async def bench_stats(settings: Settings, code: str, link_id: int, rows: list, *, total: int) -> None:
    today = datetime.now(UTC).date()
    counts = await seed_year(settings, link_id, total=total, today=today)
    app = create_app(settings.model_copy(update={"tracking": False, "visits_consumer_in_process": False}),
                     configure_logs=False, tune_gc=False)
    async with app.router.lifespan_context(app):
        _, token = await app.state.keys.create(name=f"bench-{uuid.uuid4().hex[:6]}", role="reader")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench",
                                     headers={"Authorization": f"Bearer {token}"}) as client:
            path = f"/api/v1/links/{code}/stats?from={today - timedelta(days=364)}&to={today}"
            first = (await client.get(path)).json()
            assert first["total"]["visits"] > total * 0.9, first["total"]
            timings = []
            for _ in range(50):
                started = time.perf_counter()
                response = await client.get(path)
                timings.append(time.perf_counter() - started)
                assert response.status_code == 200
            timings.sort()
            use_case = []
            start = today - timedelta(days=364)
            for _ in range(50):
                started = time.perf_counter()
                await app.state.visit_stats.of_link(link_id, start=start, end=today, include_bots=True)
                use_case.append(time.perf_counter() - started)
            use_case.sort()
    rows.append((f"GET /api/v1/links/{{code}}/stats, 365 days, {first['total']['visits'] + first['total']['bots']:,} visits",
                 f"p50 {statistics.median(timings) * 1000:.1f} ms, p95 {timings[47] * 1000:.1f} ms",
                 f"in-process ASGI, key check included; the use-case alone p50 {statistics.median(use_case) * 1000:.1f} ms; "
                 f"rows: {counts[0]} days, {counts[1]:,} daily and {counts[2]:,} monthly breakdowns"))


class Rows(list):
    """The results, each also printed as it comes (a run that fails later still shows them)."""

    def append(self, row) -> None:
        print("  ".join(row), flush=True)
        super().append(row)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get(
        "LINKGATE_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--redis-url", default=os.environ.get("LINKGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    args = parser.parse_args()
    events = 100_000 if args.quick else 500_000
    prefix = f"bench-visits-{uuid.uuid4().hex[:6]}:"
    redis_client = redis.Redis.from_url(args.redis_url)
    name, url = await make_database(args.database_url)
    rows = Rows()
    try:
        settings = Settings(database_url=url, redis_url=args.redis_url, redis_key_prefix=prefix, hashids_salt="bench")
        await bench_recorder(redis_client, prefix, rows)
        db = sql.Database.open(url, pool_size=2)
        links = await seed_links(db, 10_000)
        await db.close()
        mix = Mix(links)
        await bench_fold(settings, redis_client, mix, events, rows,
                         name="realistic mix: 10,000 links, Zipf; 200,000 visitors")
        await bench_fold(settings, redis_client, Mix(links[:100], seed=11, visitors=10_000), events, rows,
                         name="a few campaigns: 100 links, Zipf; 10,000 visitors")
        for rate in ((2_000,) if args.quick else (5_000, 20_000)):
            await bench_lag(settings, redis_client, mix, rate=rate, seconds=10 if args.quick else 20, rows=rows)
        db = sql.Database.open(url, pool_size=2)
        ((year_id, year_code),) = await seed_links(db, 1)  # a link of its own: the lag run visited the others
        await db.close()
        await bench_stats(settings, year_code, year_id, rows, total=10_000_000)
    finally:
        keys = [key async for key in redis_client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await redis_client.delete(*keys)
        await redis_client.aclose()
        await drop_database(args.database_url, name)
    print(f"\nlinkgate visit benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
          f"Python {sys.version.split()[0]}\n")
    print("| what | result | how |\n|---|---:|---|")
    for what, result, how in rows:
        print(f"| {what} | {result} | {how} |")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
