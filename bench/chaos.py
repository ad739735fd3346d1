"""Fault drills (`make chaos`): a store or a server is broken under steady load; a table says what held.

    python -m bench.chaos            # every drill, full length (about 2 minutes)
    python -m bench.chaos --short    # the integration tier's short version
    python -m bench.chaos 1 3        # some drills only

Each drill starts what it breaks itself (bench/own_stores.py: a redis-server
and a throwaway PostgreSQL cluster on ports of their own, a server process
of linkgate), puts steady load on the server (redirect workers over existing
links, and a create every few tens of milliseconds), breaks one thing, and
checks what the README's "Fault drills" table promises. Every request has a
deadline (REQUEST_DEADLINE): one that passes it counts as failed.

A drill is one row of DRILLS: its number, the fault, what must hold, and
the coroutine that runs it and returns what it measured and whether it held.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from .own_stores import OwnCluster, OwnPostgres, OwnRedis, own_port, stop_quietly, workdir
from .stack import REPO, Server, clean_env

REQUEST_DEADLINE = 5.0
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


@dataclass(frozen=True)
class Timing:
    """How long each drill's phases last (before the fault, the fault, after it), and its links."""

    before: float
    fault: float
    after: float
    links: int


FULL = Timing(before=3.0, fault=10.0, after=5.0, links=200)
SHORT = Timing(before=1.0, fault=2.5, after=1.5, links=50)


# --- the service under test ---------------------------------------------------------


def _service(env: dict[str, str], *argv: str, timeout: float = 120.0) -> str:
    result = subprocess.run([sys.executable, "-m", "service", *argv], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"python -m service {' '.join(argv)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


@dataclass
class Linkgate:
    """One linkgate server on the drill's stores, and an admin key for its API."""

    env: dict[str, str]
    server: Server
    key: str = ""

    @classmethod
    def on(cls, *, database_url: str, redis_url: str, work, **settings: str) -> Linkgate:
        env = {**clean_env(), "LINKGATE_DATABASE_URL": database_url, "LINKGATE_REDIS_URL": redis_url,
               "LINKGATE_HASHIDS_SALT": "chaos-drill", "LINKGATE_LOG_LEVEL": "warning", "LINKGATE_ACCESS_LOG": "false",
               "LINKGATE_WORKERS": "1", "LINKGATE_ALLOW_PRIVATE_TARGETS": "true",
               **{f"LINKGATE_{name.upper()}": value for name, value in settings.items()}}
        port = own_port()
        server = Server("linkgate", [sys.executable, "-m", "service", "serve", "--port", str(port),
                                     "--graceful-timeout", "10"],
                        port=port, env=env, log_path=work / f"server-{port}.log", ready_path="/healthz")
        return cls(env=env, server=server)

    async def start(self) -> None:
        if not self.key:
            _service(self.env, "migrate")
            self.key = _service(self.env, "create-key", "--name", "chaos", "--role", "admin").strip()
        await self.server.start()

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.server.base_url, timeout=REQUEST_DEADLINE,
                                 headers={"authorization": f"Bearer {self.key}", "user-agent": FIREFOX},
                                 limits=httpx.Limits(max_connections=64))

    async def make_links(self, count: int, *, tag: str) -> dict[str, str]:
        """code -> url, created through the API and visited once (so they are in Redis)."""
        links = {}
        async with self.client() as client:
            for number in range(count):
                url = f"https://example.com/{tag}/{number}"
                response = await client.post("/api/v1/links", json={"url": url})
                response.raise_for_status()
                links[response.json()["code"]] = url
            for code in links:
                assert (await client.get(f"/{code}")).status_code == 302
        return links


# --- steady load ----------------------------------------------------------------------


@dataclass
class Outcome:
    kind: str  # "redirect" or "create"
    started: float
    finished: float
    status: int | None  # None: no answer (the error says why)
    error: str | None = None
    retry_after: str | None = None
    url: str | None = None
    code: str | None = None
    retried: bool = False  # the first try's kept-alive connection was closed unanswered (see Load._get)


@dataclass
class Load:
    """Redirect workers over `links` and one creator, until stopped; every request's outcome is kept."""

    linkgate: Linkgate
    links: dict[str, str]
    redirect_workers: int = 6
    create_every: float = 0.05
    tag: str = "load"
    on_created: Callable[[httpx.AsyncClient, str, str], Awaitable[None]] | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    @staticmethod
    async def _get(client: httpx.AsyncClient, path: str) -> tuple[httpx.Response, bool]:
        """GET as a browser does: once more on a new connection if the kept-alive one closed unanswered.

        A server shutting down closes its idle kept-alive connections; a request the client wrote
        at that moment is thrown away unread (the close resets the connection) and no server can
        answer it. RFC 9112 section 9.3.1 lets a client send an idempotent request again then, and
        browsers do. The server never saw the first try, so a visit counted twice would still show
        as more counted than answered.
        """
        try:
            return await client.get(path), False
        except (httpx.ReadError, httpx.RemoteProtocolError):
            return await client.get(path), True

    async def _redirects(self, client: httpx.AsyncClient) -> None:
        codes = list(self.links)
        while not self._stop.is_set():
            code = random.choice(codes)
            started = time.monotonic()
            try:
                response, retried = await self._get(client, f"/{code}")
                ok = response.status_code == 302 and response.headers.get("location") == self.links[code]
                self.outcomes.append(Outcome("redirect", started, time.monotonic(), response.status_code,
                                             None if ok else f"{response.status_code} {response.text[:80]}",
                                             retried=retried))
            except httpx.HTTPError as exc:
                self.outcomes.append(Outcome("redirect", started, time.monotonic(), None, type(exc).__name__))
                await asyncio.sleep(0.01)

    async def _creates(self, client: httpx.AsyncClient) -> None:
        number = 0
        while not self._stop.is_set():
            number += 1
            url = f"https://example.com/{self.tag}/created/{number}"
            started = time.monotonic()
            try:
                response = await client.post("/api/v1/links", json={"url": url})
                code = response.json().get("code") if response.status_code == 201 else None
                self.outcomes.append(Outcome("create", started, time.monotonic(), response.status_code,
                                             None if response.status_code == 201 else response.text[:120],
                                             response.headers.get("retry-after"), url, code))
                if code is not None and self.on_created is not None:
                    await self.on_created(client, code, url)
            except httpx.HTTPError as exc:
                self.outcomes.append(Outcome("create", started, time.monotonic(), None, type(exc).__name__, url=url))
            await asyncio.sleep(self.create_every)

    @contextlib.asynccontextmanager
    async def running(self):
        async with self.linkgate.client() as client:
            tasks = [asyncio.create_task(self._redirects(client)) for _ in range(self.redirect_workers)]
            tasks.append(asyncio.create_task(self._creates(client)))
            try:
                yield self
            finally:
                self._stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)

    def of(self, kind: str, since: float = 0.0, until: float = float("inf")) -> list[Outcome]:
        return [o for o in self.outcomes if o.kind == kind and since <= o.started < until]


def failed(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.error is not None or o.finished - o.started > REQUEST_DEADLINE]


def slowest(outcomes: list[Outcome]) -> float:
    return max((o.finished - o.started for o in outcomes), default=0.0)


# --- what a drill reports ---------------------------------------------------------------


@dataclass
class Result:
    measured: str
    held: bool
    problems: list[str] = field(default_factory=list)


async def _reconcile(linkgate: Linkgate) -> dict:
    out = await asyncio.to_thread(_service, linkgate.env, "reconcile")
    return json.loads(out.strip().splitlines()[-1])


async def _sql_scalar(database_url: str, statement: str, **params):
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            return (await connection.execute(text(statement), params)).scalar()
    finally:
        await engine.dispose()


# --- the drills -------------------------------------------------------------------------


async def drill_redis_killed(timing: Timing) -> Result:
    """1: Redis is killed, then restarted empty after the fault time."""
    work = workdir()
    pg, redis = OwnPostgres(work, "pg"), OwnRedis(work)
    linkgate = None
    try:
        pg.init()
        pg.start()
        redis.start()
        linkgate = Linkgate.on(database_url=pg.url(), redis_url=redis.url, work=work)
        await linkgate.start()
        links = await linkgate.make_links(timing.links, tag="redis-killed")
        load = Load(linkgate, links, tag="redis-killed")
        async with load.running():
            await asyncio.sleep(timing.before)
            killed_at = time.monotonic()
            redis.kill()
            await asyncio.sleep(timing.fault)
            redis.start()  # empty: it kept nothing
            back_at = time.monotonic()
            await asyncio.sleep(timing.after)
        first = await _reconcile(linkgate)
        second = await _reconcile(linkgate)
        redirects, creates = load.of("redirect"), load.of("create")
        during = load.of("redirect", killed_at, back_at)
        drift = sum(second["repaired"].values())
        problems = [f"redirect {o.error}" for o in failed(redirects)[:3]] + [f"create {o.error}" for o in failed(creates)[:3]]
        if drift:
            problems.append(f"reconcile's second run still repaired {second['repaired']}")
        held = not failed(redirects) and not failed(creates) and drift == 0 and len(during) > 0
        return Result(
            f"Redis down {timing.fault:g} s: {len(redirects)} redirects ({len(during)} while it was down), "
            f"{len(failed(redirects))} failed; "
            f"{len(creates)} creates, {len(failed(creates))} failed; slowest {slowest(redirects) * 1000:.0f} ms; "
            f"reconcile after: {sum(first['repaired'].values())} repaired, then {drift}",
            held, problems)
    finally:
        if linkgate is not None:
            await linkgate.server.stop()
        stop_quietly(redis, pg)
        shutil.rmtree(work, ignore_errors=True)


async def drill_postgres_stopped(timing: Timing) -> Result:
    """2: PostgreSQL is stopped for the fault time."""
    work = workdir()
    pg, redis = OwnPostgres(work, "pg"), OwnRedis(work)
    linkgate = None
    try:
        pg.init()
        pg.start()
        redis.start()
        linkgate = Linkgate.on(database_url=pg.url(), redis_url=redis.url, work=work)
        await linkgate.start()
        links = await linkgate.make_links(timing.links, tag="pg-stopped")
        load = Load(linkgate, links, tag="pg-stopped")
        async with load.running():
            await asyncio.sleep(timing.before)
            stopped_at = time.monotonic()
            await asyncio.to_thread(pg.stop, "fast")
            await asyncio.sleep(timing.fault)
            await asyncio.to_thread(pg.start)
            back_at = time.monotonic()
            await asyncio.sleep(timing.after)
        redirects = load.of("redirect")
        during = load.of("create", stopped_at, back_at)
        refused = [o for o in during if o.status == 503]
        problems = [f"redirect {o.error}" for o in failed(redirects)[:3]]
        wrong = [o for o in during if o.status not in (201, 503) or (o.status == 503 and not o.retry_after)]
        problems += [f"create while down answered {o.status} ({o.error}), Retry-After {o.retry_after}" for o in wrong[:3]]
        after = load.of("create", back_at + 1.0)
        problems += [f"create after answered {o.status} ({o.error})" for o in failed(after)[:3]]
        # Everything answered 201 is there; nothing answered 503 is (not half-written).
        made = {o.code: o.url for o in load.of("create") if o.status == 201} | links
        missing, half = 0, 0
        async with linkgate.client() as client:
            for code, url in made.items():
                response = await client.get(f"/api/v1/links/{code}")
                missing += response.status_code != 200 or response.json()["url"] != url
        for outcome in [o for o in load.of("create") if o.status != 201]:
            half += await _sql_scalar(pg.url(), "SELECT count(*) FROM links WHERE url = :url", url=outcome.url)
        problems += [f"{missing} links answered 201 are missing"] if missing else []
        problems += [f"{half} links answered 503 were written"] if half else []
        held = not problems and len(refused) > 0
        if not refused:
            problems.append("no create was refused: the outage did not happen")
        return Result(
            f"PostgreSQL down {timing.fault:g} s: {len(redirects)} redirects of cached links, "
            f"{len(failed(redirects))} failed; "
            f"{len(during)} creates while down: {len(refused)} 503 with Retry-After, {len(wrong)} other; "
            f"{len(made)} links written before and after all there, {half} half-written; "
            f"slowest redirect {slowest(redirects) * 1000:.0f} ms",
            held, problems)
    finally:
        if linkgate is not None:
            await linkgate.server.stop()
        stop_quietly(redis, pg)
        shutil.rmtree(work, ignore_errors=True)


async def drill_sigterm(timing: Timing) -> Result:
    """3: the server gets SIGTERM under load."""
    work = workdir()
    pg, redis = OwnPostgres(work, "pg"), OwnRedis(work)
    linkgate = None
    try:
        pg.init()
        pg.start()
        redis.start()
        linkgate = Linkgate.on(database_url=pg.url(), redis_url=redis.url, work=work,
                               visits_consumer_in_process="false")
        await linkgate.start()
        links = await linkgate.make_links(50, tag="sigterm")
        load = Load(linkgate, links, tag="sigterm", redirect_workers=8)
        async with load.running():
            await asyncio.sleep(timing.before)
            process = linkgate.server.process
            signalled_at = time.monotonic()
            process.send_signal(signal.SIGTERM)
            exited = await asyncio.to_thread(process.wait, 30)
        redirects = load.of("redirect")
        before = load.of("redirect", until=signalled_at)
        # A connect refused never reached the server (the listener had closed): not in flight, not lost.
        refused = [o for o in before if o.status is None and o.error == "ConnectError"]
        in_flight = [o for o in before if o.finished >= signalled_at and o not in refused]
        unanswered = [o for o in before if o.status is None and o.error != "ConnectError"]
        answered = [o for o in redirects if o.status == 302]
        retried = [o for o in before if o.retried]
        # The visits of make_links (one each) and of the load, all folded?
        await asyncio.to_thread(_service, linkgate.env, "consume-visits", "--until-empty", "60")
        await linkgate.server.start()
        counted = 0
        async with linkgate.client() as client:
            for code in links:
                counted += (await client.get(f"/api/v1/links/{code}")).json()["visits"]
        expected = len(answered) + len(links)
        problems = [f"sent before SIGTERM, no answer: {o.error}" for o in unanswered[:3]]
        if counted != expected:
            problems.append(f"{expected} visits answered, {counted} counted")
        if exited not in (0, -signal.SIGTERM):
            problems.append(f"the server exited with {exited}")
        return Result(
            f"{len(before)} redirects sent before SIGTERM ({len(in_flight)} in flight), {len(unanswered)} unanswered, "
            f"{len(refused)} refused at connect, {len(retried)} sent again after the server closed a kept-alive "
            f"connection unanswered; "
            f"server exited {exited} in {(time.monotonic() - signalled_at):.1f} s; "
            f"{expected} visits answered, {counted} counted, {expected - counted} lost",
            not problems and len(in_flight) > 0, problems)
    finally:
        if linkgate is not None:
            await linkgate.server.stop()
        stop_quietly(redis, pg)
        shutil.rmtree(work, ignore_errors=True)


async def drill_consumer_killed(timing: Timing) -> Result:
    """4: a visit consumer is SIGKILLed while it holds entries it has read and not acknowledged."""
    work = workdir()
    pg, redis = OwnPostgres(work, "pg"), OwnRedis(work)
    linkgate = victim = None
    try:
        pg.init()
        pg.start()
        redis.start()
        linkgate = Linkgate.on(database_url=pg.url(), redis_url=redis.url, work=work,
                               visits_consumer_in_process="false", visits_claim_idle_seconds="1")
        await linkgate.start()
        links = await linkgate.make_links(timing.links, tag="consumer-killed")
        client = aioredis.Redis.from_url(redis.url)
        stream, group = "lg:{visits}:stream", "linkgate-aggregates"
        load = Load(linkgate, links, tag="consumer-killed", create_every=1.0)
        held_when_killed = 0
        async with load.running():
            await asyncio.sleep(timing.before)
            victim = subprocess.Popen([sys.executable, "-m", "service", "consume-visits"], cwd=REPO,
                                      env={**linkgate.env, "LINKGATE_VISITS_CONSUMER_BATCH": "50"},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + max(timing.fault, 10.0)
            while time.monotonic() < deadline:  # killed the moment it holds unacknowledged entries
                with contextlib.suppress(Exception):
                    held_when_killed = (await client.xpending(stream, group))["pending"]
                if held_when_killed:
                    break
                await asyncio.sleep(0.002)
            victim.kill()
            victim.wait()
            await asyncio.sleep(timing.after)
        answered = len([o for o in load.of("redirect") if o.status == 302]) + len(links)
        # Another consumer: claims what the victim held (idle over a second), folds the rest.
        survivor = subprocess.Popen([sys.executable, "-m", "service", "consume-visits"], cwd=REPO, env=linkgate.env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while True:
                counted = 0
                async with linkgate.client() as api:
                    for code in links:
                        counted += (await api.get(f"/api/v1/links/{code}")).json()["visits"]
                left = (await client.xpending(stream, group))["pending"]
                if (counted >= answered and not left) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
        finally:
            survivor.send_signal(signal.SIGTERM)
            await asyncio.to_thread(survivor.wait, 20)
        await client.aclose()
        problems = []
        if not held_when_killed:
            problems.append("the consumer was never caught holding entries")
        if left:
            problems.append(f"{left} entries still pending after the claim")
        if counted != answered:
            problems.append(f"{answered} visits answered, {counted} counted")
        return Result(
            f"killed holding {held_when_killed} unacknowledged entries; {left} pending after another consumer "
            f"claimed them; {answered} visits answered, {counted} counted",
            not problems, problems)
    finally:
        if victim is not None and victim.poll() is None:
            victim.kill()
            victim.wait()
        if linkgate is not None:
            await linkgate.server.stop()
        stop_quietly(redis, pg)
        shutil.rmtree(work, ignore_errors=True)


async def drill_replica_lag(timing: Timing) -> Result:
    """5: the read replica lags by 5 s (recovery_min_apply_delay)."""
    work = workdir()
    primary, replica, redis = OwnPostgres(work, "primary"), OwnPostgres(work, "replica"), OwnRedis(work)
    linkgate = None
    try:
        primary.init()
        primary.start()
        replica.init_replica_of(primary)
        replica.start()
        redis.start()
        _service({**clean_env(), "LINKGATE_DATABASE_URL": primary.url()}, "migrate")
        linkgate = Linkgate.on(database_url=primary.url(), redis_url=redis.url, work=work,
                               database_read_url=replica.url())
        await linkgate.start()
        links = await linkgate.make_links(timing.links, tag="lag")
        engine = create_async_engine(replica.url(), isolation_level="AUTOCOMMIT")
        async with engine.connect() as connection:
            await connection.execute(text("ALTER SYSTEM SET recovery_min_apply_delay = '5s'"))
            await connection.execute(text("SELECT pg_reload_conf()"))
        await engine.dispose()
        await asyncio.sleep(0.5)
        cache = aioredis.Redis.from_url(redis.url)
        replica_engine = create_async_engine(replica.url(), isolation_level="AUTOCOMMIT")
        fresh: list[tuple[str, int, bool]] = []  # code, status, whether the replica had it when visited

        async def visit_fresh(client: httpx.AsyncClient, code: str, url: str) -> None:
            # As after a Redis flush or eviction: the redirect must ask SQL.
            await cache.delete(f"lg:{{{code}}}")
            response = await client.get(f"/{code}")
            async with replica_engine.connect() as connection:
                had = (await connection.execute(text("SELECT count(*) FROM links WHERE code = :code"),
                                                {"code": code})).scalar()
            fresh.append((code, response.status_code if response.headers.get("location") == url else -1, bool(had)))

        load = Load(linkgate, links, tag="lag", create_every=0.1, on_created=visit_fresh)
        async with load.running():
            await asyncio.sleep(timing.before + timing.fault + timing.after)
        await cache.aclose()
        await replica_engine.dispose()
        redirects = load.of("redirect")
        bad = [f for f in fresh if f[1] != 302]
        unseen = [f for f in fresh if not f[2]]
        problems = [f"fresh link {code} answered {status}" for code, status, _ in bad[:3]]
        problems += [f"redirect {o.error}" for o in failed(redirects)[:3]]
        if not unseen:
            problems.append("the replica had every fresh link already: it did not lag")
        return Result(
            f"{timing.before + timing.fault + timing.after:g} s at a 5 s lag: {len(fresh)} fresh links visited at once, "
            f"{len(unseen)} of them not yet on the replica, "
            f"{len(bad)} not redirected; {len(redirects)} other redirects, {len(failed(redirects))} failed",
            not problems, problems)
    finally:
        if linkgate is not None:
            await linkgate.server.stop()
        stop_quietly(redis, replica, primary)
        shutil.rmtree(work, ignore_errors=True)


async def drill_cluster_master_killed(timing: Timing) -> Result:
    """6: one master of a three-master Redis Cluster is killed (its slots have no replica to take them)."""
    work = workdir()
    pg, cluster = OwnPostgres(work, "pg"), OwnCluster(work)
    linkgate = None
    try:
        pg.init()
        pg.start()
        cluster.start()
        linkgate = Linkgate.on(database_url=pg.url(), redis_url=cluster.url, work=work, redis_cluster="true")
        await linkgate.start()
        links = await linkgate.make_links(timing.links, tag="master-killed")
        load = Load(linkgate, links, tag="master-killed")
        async with load.running():
            await asyncio.sleep(timing.before)
            killed_at = time.monotonic()
            cluster.nodes[-1].kill()
            await asyncio.sleep(timing.fault)
        redirects, creates = load.of("redirect"), load.of("create")
        during = load.of("redirect", killed_at)
        slow = [o for o in redirects if o.finished - o.started > REQUEST_DEADLINE]
        problems = [f"redirect {o.error}" for o in failed(redirects)[:3]]
        problems += [f"create {o.error}" for o in failed(creates)[:3]]
        return Result(
            f"{timing.fault:g} s after the kill: {len(redirects)} redirects ({len(during)} after it), "
            f"{len(failed(redirects))} failed, "
            f"{len(slow)} past the {REQUEST_DEADLINE:g} s deadline, slowest {slowest(during) * 1000:.0f} ms; "
            f"{len(creates)} creates, {len(failed(creates))} failed",
            not problems and len(during) > 0, problems)
    finally:
        if linkgate is not None:
            await linkgate.server.stop()
        stop_quietly(cluster, pg)
        shutil.rmtree(work, ignore_errors=True)


@dataclass(frozen=True)
class Drill:
    number: int
    fault: str
    must_hold: str
    run: Callable[[Timing], Awaitable[Result]] | None  # None: not drilled yet


DRILLS = (
    Drill(1, "Redis is killed, then restarted empty after 10 s",
          "0 failed redirects of existing links; creates keep working; after the restart, reconcile leaves no drift",
          drill_redis_killed),
    Drill(2, "PostgreSQL is stopped for 10 s",
          "redirects of cached links are served; writes answer 503 with Retry-After; nothing is half-written; "
          "once it is back, everything written before is there", drill_postgres_stopped),
    Drill(3, "a server gets SIGTERM under load", "lost visit events: 0; in-flight requests are answered",
          drill_sigterm),
    Drill(4, "a consumer is SIGKILLed mid-batch", "its pending events are claimed; aggregates are exact",
          drill_consumer_killed),
    Drill(5, "the replica lags by 5 s", "fresh links redirect", drill_replica_lag),
    Drill(6, "one Cluster master is killed", "redirects keep being answered from SQL; no request hangs past its "
          "deadline", drill_cluster_master_killed),
)


async def run(numbers: list[int], timing: Timing) -> list[tuple[Drill, Result | None]]:
    rows = []
    for drill in DRILLS:
        if numbers and drill.number not in numbers:
            continue
        if drill.run is None:
            rows.append((drill, None))
            continue
        started = time.monotonic()
        try:
            result = await drill.run(timing)
        except Exception as exc:  # a drill that could not run did not hold
            result = Result(f"the drill failed to run: {exc!r}", False, [repr(exc)])
        result.measured += f" (drill {time.monotonic() - started:.0f} s)"
        rows.append((drill, result))
    return rows


def table(rows: list[tuple[Drill, Result | None]]) -> str:
    lines = ["| # | fault | must hold | measured | held |", "|---|---|---|---|---|"]
    for drill, result in rows:
        if result is None:
            lines.append(f"| {drill.number} | {drill.fault} | {drill.must_hold} | not drilled yet | - |")
        else:
            lines.append(f"| {drill.number} | {drill.fault} | {drill.must_hold} | {result.measured} | "
                         f"{'yes' if result.held else 'NO'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("drills", nargs="*", type=int, help="drill numbers (default: every one)")
    parser.add_argument("--short", action="store_true", help="the integration tier's short version")
    args = parser.parse_args(argv)
    rows = asyncio.run(run(args.drills, SHORT if args.short else FULL))
    print(table(rows))
    for drill, result in rows:
        for problem in (result.problems if result else []):
            print(f"drill {drill.number}: {problem}")
    return 0 if all(result.held for _, result in rows if result is not None) else 1


if __name__ == "__main__":
    sys.exit(main())
