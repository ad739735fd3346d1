"""``max_visits``: a limited link admits exactly N visitors in total, across every replica.

Each visit of a limited link is one Redis script call on the link's counter
(below); links without a limit never reach this module. The count goes to
SQL, the truth, in the background: each replica adds what it admitted to
``links.visit_count`` every second (``flush``). So:

- while Redis is up, admission is exact (the script is atomic);
- after a Redis flush or restart the counter is reloaded from SQL, which
  lacks at most the last second of each replica's admissions: that many
  visitors may be admitted again (the documented bound);
- with Redis away, each admission is a conditional UPDATE in SQL
  (``visit_count < max_visits``), exact but slower, after this replica has
  written what it admitted through Redis.

Key: ``lg:{<code>}:visits``, the link's hash tag, so it shares the cached
link's Cluster slot. TTL: a day from its load; it is reloaded from SQL after.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.exceptions import RedisError

from .. import metrics
from ..batching import Coalescer
from ..coordination import events
from ..errors import StorageUnavailable
from ..store import scripts, sql
from .bots import is_bot, user_agent_of

log = logging.getLogger(__name__)

_REDIS_DOWN = (RedisError, OSError, asyncio.TimeoutError)
COUNTER_TTL_SECONDS = 86400

# KEYS[1]: the link's counter. ARGV[1]: max_visits; ARGV[2]: 1 to count this
# visit, 0 only to ask (a bot's visit, which does not count).
# Returns the count after this visit when admitted, -1 when the link is used
# up, -2 when the counter is not loaded (the caller loads it from SQL with
# SET NX, then calls again).
ADMIT = """
local n = redis.call('GET', KEYS[1])
if not n then
  return -2
end
n = tonumber(n)
if n >= tonumber(ARGV[1]) then
  return -1
end
if tonumber(ARGV[2]) == 0 then
  return n
end
return redis.call('INCR', KEYS[1])
"""
_ADMIT_SHA = scripts.sha_of(ADMIT)


@dataclass(frozen=True, eq=False, slots=True)
class _Visit:
    """One visit's script call, waiting for its batch (compared by identity: each visit counts)."""

    code: str
    max_visits: int
    counts: int


def utc_now() -> datetime:
    return datetime.now(UTC)


class VisitLimits:
    """Admission for limited links, and the background flush of their counts to SQL."""

    def __init__(self, redis, db: sql.Database, *, prefix: str, count_bots: bool = False,
                 timeout_seconds: float = 0.5, clock: Callable[[], datetime] = utc_now) -> None:
        self._redis = redis
        self._db = db
        self._prefix = prefix
        self._count_bots = count_bots
        self._timeout = timeout_seconds
        self._clock = clock
        # Admitted through Redis, not yet added to SQL: code -> visits.
        self._pending: dict[str, int] = {}
        # Visits that arrive together share one pipeline: a lone EVALSHA costs redis-py
        # ~65 us of CPU, one of a pipelined batch ~13 us (as for the API limiter).
        self._calls: Coalescer[_Visit, int] = Coalescer(self._call_many, max_in_flight=4, max_batch=500)
        self._loading: dict[str, asyncio.Future] = {}
        self._flushing = asyncio.Lock()

    def key(self, code: str) -> str:
        return f"{self._prefix}{{{code}}}:visits"

    async def admit(self, code: str, max_visits: int, scope) -> bool:
        """True: redirect this visitor (counted unless a bot); False: the link is used up."""
        counts = 1 if self._count_bots or not is_bot(user_agent_of(scope)) else 0
        try:
            async with asyncio.timeout(self._timeout):
                result = await self._calls.get(_Visit(code, max_visits, counts))
                if result == -2:
                    await self._loaded(code)
                    result = await self._calls.get(_Visit(code, max_visits, counts))
        except _REDIS_DOWN as exc:
            metrics.REDIS_ERRORS.labels(operation="visit-limit").inc()
            log.warning("visit limit of %s through SQL, redis failed: %s", code, exc)
            return await self._admit_in_sql(code, counts)
        if result < 0:
            return False
        if counts:
            self._pending[code] = self._pending.get(code, 0) + 1
        return True

    async def _call_many(self, visits: list[_Visit]) -> list[int]:
        """The batch's script calls in one pipeline (each visit is still its own atomic call)."""
        calls = [((self.key(visit.code),), (visit.max_visits, visit.counts)) for visit in visits]
        return [int(reply) for reply in await scripts.run_calls(self._redis, ADMIT, _ADMIT_SHA, calls)]

    async def _loaded(self, code: str) -> None:
        """Load the counter once, however many visits found it missing at once (single flight)."""
        loading = self._loading.get(code)
        if loading is None:
            loading = self._loading[code] = asyncio.ensure_future(self._load(code))
            loading.add_done_callback(lambda _, code=code: self._loading.pop(code, None))
        await asyncio.shield(loading)

    async def _load(self, code: str) -> None:
        """Put SQL's count (plus what this replica admitted and has not written yet) in Redis."""
        # The primary's count: a replica's may lag, and a low count admits visitors past the limit.
        async with self._db.read_connection(primary=True) as connection:
            counted = await sql.visit_count(connection=connection, code=code)
        await self._redis.set(self.key(code), counted + self._pending.get(code, 0), nx=True,
                              ex=COUNTER_TTL_SECONDS)

    async def _admit_in_sql(self, code: str, counts: int) -> bool:
        await self.flush()
        try:
            async with self._db.transaction() as session:
                now = self._clock()
                admitted = await sql.count_visit(session=session, code=code, counts=bool(counts), now=now)
                if admitted and counts:
                    await _tell_exhausted(session, [code], now)
                return admitted
        except StorageUnavailable:
            # Neither store answers: a limit that cannot be checked is not passed.
            return False

    async def flush(self) -> int:
        """Add what this replica admitted to SQL; returns how many visits were written.

        One flush at a time: an admission through SQL flushes first and then
        counts on SQL's figure, so it must wait for a flush already under way
        (which holds the visits it took) to commit; else it reads a count
        short by them and admits past the limit.
        """
        async with self._flushing:
            return await self._flush()

    async def _flush(self) -> int:
        pending, self._pending = self._pending, {}
        if not pending:
            return 0
        try:
            async with self._db.transaction() as session:
                now = self._clock()
                await sql.add_visits(session=session, counts=pending, now=now)
                await _tell_exhausted(session, list(pending), now)
        except StorageUnavailable:
            for code, count in pending.items():
                self._pending[code] = self._pending.get(code, 0) + count
            raise
        return sum(pending.values())

    async def flush_forever(self, every_seconds: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every_seconds)
            try:
                await self.flush()
            except StorageUnavailable:
                log.debug("visit counts not written; kept for the next round")

    def pending(self, code: str) -> int:
        """Visits this replica admitted for `code` that SQL does not count yet."""
        return self._pending.get(code, 0)

    async def forget(self, code: str) -> None:
        """Drop the Redis counter (after SQL's count changed underneath it); best effort."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.delete(self.key(code))
        except _REDIS_DOWN:
            pass


async def _tell_exhausted(session, codes: list[str], now) -> None:
    """link.gone (exhausted) for each of `codes` whose count reached its limit in this transaction."""
    links = await sql.exhausted_links(session=session, codes=codes)
    if links:
        await events.record(session=session, now=now, events=[
            events.change(events.GONE, link, reason="exhausted",
                          once_key=events.gone_once_key(link.id, "exhausted", link.max_visits))
            for link in links])
