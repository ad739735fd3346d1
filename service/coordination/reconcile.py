"""Reconcile: bring Redis back in line with SQL, in bounded batches, one replica at a time.

``python -m service reconcile`` takes the ``reconcile`` lock (another
holder: it says so and exits 0), records its fence in SQL, and repairs:

- ``stale_links``: cached links whose URL, status, policy or lifecycle
  differ from SQL (rewritten from SQL);
- ``deleted_links``: cached as live, deleted in SQL (rewritten as deleted,
  so they answer 410);
- ``unknown_codes``: cached links with no row in SQL (dropped);
- ``false_misses``: a cached "no such code" for a code SQL has (dropped);
- ``pending_invalidations``: cache drops remembered in SQL while Redis was
  away (done, and forgotten);
- ``visit_counters``: a max_visits counter in Redis below the count SQL
  holds (raised to it). A counter above SQL is left alone: the difference
  may be visits a replica admitted and flushes within a second, and
  lowering it could admit more visitors than the limit;
- ``expiry_timers``: links with a valid_until in the last day or later
  missing from (or misplaced in) the expiry set (added; the timers tell
  each expiry once whatever happens).

Keys are walked with SCAN (never KEYS; on Redis Cluster, on every master),
``reconcile_batch`` at a time; one MGET (one per slot on a cluster) and one SQL
query per batch. Its last line on stdout is a JSON object:
``scanned``, ``repaired`` (counts by kind), ``took_ms`` and ``fence``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import timedelta

from sqlalchemy import select

from .. import metrics
from ..store import cluster, sql
from ..store.cache import MISS_VALUE, cached_link, decode_link, encode_link
from ..store.models import Link, LinkEvent
from . import events
from .changes import expiry_key
from .lock import FencedLock, check_fence, newest_fence

LOCK_NAME = "reconcile"
KINDS = ("stale_links", "deleted_links", "unknown_codes", "false_misses", "pending_invalidations",
         "visit_counters", "expiry_timers")


def _code_of(key: bytes, prefix: bytes) -> str | None:
    """The code of a cached-link key ``<prefix>{<code>}``; None for any other key."""
    if not (key.startswith(prefix + b"{") and key.endswith(b"}")):
        return None
    inner = key[len(prefix) + 1:-1]
    if not inner or b"{" in inner or b"}" in inner or b":" in inner:
        return None
    return inner.decode()


def _counter_code(key: bytes, prefix: bytes) -> str | None:
    if key.startswith(prefix + b"{") and key.endswith(b"}:visits"):
        return key[len(prefix) + 1:-len(b"}:visits")].decode()
    return None


class Reconciler:
    def __init__(self, *, db, redis, service, prefix: str, batch: int, ttl_seconds: int, clock) -> None:
        self.db = db
        self.redis = redis
        self.service = service
        self.prefix = prefix
        self._prefix = prefix.encode()
        self.batch = batch
        self.ttl = ttl_seconds
        self.clock = clock
        self.scanned: Counter = Counter()
        self.repaired: Counter = Counter({kind: 0 for kind in KINDS})

    async def run(self, lock: FencedLock) -> dict | None:
        """Reconcile under the lock; the report, or None when another holder has the lock."""
        started = time.monotonic()
        async with self.db.read_connection(primary=True) as connection:
            floor = await newest_fence(connection=connection, name=LOCK_NAME)
        held = await lock.acquire(floor=floor)
        if held is None:
            return None
        try:
            async with self.db.transaction() as session:
                await check_fence(session=session, name=LOCK_NAME, fence=held.fence)
            await self._links_and_counters()
            self.repaired["pending_invalidations"] += await self.service.drain_pending_invalidations()
            await self._expiry_timers()
        finally:
            await lock.release(held)
        for kind, count in self.repaired.items():
            if count:
                metrics.RECONCILE_REPAIRED.labels(kind=kind).inc(count)
        metrics.RECONCILE_SCANNED.inc(sum(self.scanned.values()))
        return {"scanned": dict(self.scanned), "repaired": dict(self.repaired),
                "took_ms": round((time.monotonic() - started) * 1000), "fence": held.fence}

    async def _links_and_counters(self) -> None:
        # On Redis Cluster, every master in turn.
        async for keys in cluster.scan_batches(self.redis, match=self.prefix + "{*}*", count=self.batch):
            links = {code: key for key in keys if (code := _code_of(key, self._prefix)) is not None}
            counters = {code: key for key in keys if (code := _counter_code(key, self._prefix)) is not None}
            if links:
                await self._links(links)
            if counters:
                await self._counters(counters)

    async def _links(self, keys: dict[str, bytes]) -> None:
        codes = list(keys)
        values = await cluster.mget(self.redis, [keys[code] for code in codes])
        # The primary: a lagging replica would "repair" fresh entries back to older rows.
        async with self.db.read_connection(primary=True) as connection:
            truth = await sql.find_targets(connection=connection, codes=codes)
        pipe = self.redis.pipeline(transaction=False)
        changed: list[str] = []
        for code, value in zip(codes, values, strict=True):
            if value is None:  # expired (or not a string) since the SCAN
                continue
            self.scanned["links"] += 1
            target = truth.get(code)
            if target is None:
                if value != MISS_VALUE:
                    pipe.delete(keys[code])
                    self.repaired["unknown_codes"] += 1
                    changed.append(code)
                continue
            if value == MISS_VALUE:
                pipe.delete(keys[code])
                self.repaired["false_misses"] += 1
                changed.append(code)
                continue
            expected = encode_link(cached_link(target, deleted=target.deleted))
            if value != expected:
                cached = decode_link(value)
                kind = "deleted_links" if target.deleted and not (cached.lifecycle or {}).get("d") else "stale_links"
                pipe.set(keys[code], expected, ex=self.ttl)
                self.repaired[kind] += 1
                changed.append(code)
        if changed:
            await pipe.execute()
            if self.service.changes is not None:
                for code in changed:  # every replica drops its in-memory copy too
                    self.service.changes.committed(code)

    async def _counters(self, keys: dict[str, bytes]) -> None:
        codes = list(keys)
        values = await cluster.mget(self.redis, [keys[code] for code in codes])
        async with self.db.reading() as session:
            counted = dict((await session.execute(
                select(Link.code, Link.visit_count).where(Link.code.in_(codes))
            )).all())
        pipe = self.redis.pipeline(transaction=False)
        raised = 0
        for code, value in zip(codes, values, strict=True):
            if value is None:
                continue
            self.scanned["visit_counters"] += 1
            in_sql = counted.get(code)
            if in_sql is not None and int(value) < in_sql:
                pipe.set(keys[code], in_sql, keepttl=True)
                raised += 1
        if raised:
            await pipe.execute()
            self.repaired["visit_counters"] += raised

    async def _expiry_timers(self) -> None:
        key = expiry_key(self.prefix)
        since = self.clock() - timedelta(days=1)
        after = 0
        while True:
            async with self.db.reading() as session:
                rows = (await session.execute(
                    select(Link.id, Link.valid_until).where(
                        Link.deleted_at.is_(None), Link.valid_until.is_not(None), Link.valid_until > since,
                        Link.id > after,
                    ).order_by(Link.id).limit(self.batch)
                )).all()
            if not rows:
                return
            after = rows[-1][0]
            self.scanned["expiry_timers"] += len(rows)
            now = self.clock()
            # An expiry already told (its link.gone event exists) needs no timer.
            keys = {events.gone_once_key(row_id, "expired", until): row_id for row_id, until in rows if until <= now}
            told = set()
            if keys:
                async with self.db.reading() as session:
                    told = {keys[once] for once in (await session.execute(
                        select(LinkEvent.once_key).where(LinkEvent.once_key.in_(list(keys)))
                    )).scalars()}
            wanted = [(row_id, until) for row_id, until in rows if row_id not in told]
            scores = await self.redis.zmscore(key, [str(row_id) for row_id, _ in wanted]) if wanted else []
            missing = {}
            for (row_id, until), score in zip(wanted, scores, strict=True):
                if score is None or abs(score - until.timestamp()) > 0.001:
                    missing[str(row_id)] = until.timestamp()
            if missing:
                await self.redis.zadd(key, missing)
                self.repaired["expiry_timers"] += len(missing)


def report_line(report: dict) -> str:
    return json.dumps(report, separators=(",", ":"), sort_keys=True)
