"""Expiry timers: ``link.gone`` when a link's valid_until comes, with nobody visiting it.

Upcoming expiries wait in the sorted set ``lg:{expiries}`` (changes.py),
scored by valid_until. One replica at a time (the coordinator's lock) pops
what is due every LINKGATE_EXPIRY_INTERVAL_SECONDS: SQL is asked whether
each link is still live and still expires then, and the ``link.gone``
events go into the outbox with a once-key (gone, expired, link id,
valid_until), so a link is told gone once however often it is popped.
Nothing scans SQL on a timer; reconcile rebuilds the set from SQL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy import BigInteger, any_, bindparam, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from .. import metrics
from ..store.models import Link
from . import events
from .changes import expiry_key

# Remove popped members, each only if its score is still the one read (a
# ZADD since then moved the timer: it stays).
#   KEYS[1]: the expiry set
#   ARGV: member, score, member, score, ... (as ZRANGEBYSCORE WITHSCORES read them)
#   Returns how many members were removed.
REMOVE_IF_UNMOVED = """
local removed = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
"""


_COLUMNS = [Link.__table__.c[name] for name in (
    "id", "code", "url", "redirect_status", "title", "valid_since", "valid_until", "max_visits", "flags",
    "created_at", "updated_at", "deleted_at", "created_by_id")]
_BY_IDS = select(*_COLUMNS).where(Link.id.in_(bindparam("ids", expanding=True)))
# PostgreSQL: the ids as one array parameter, one statement prepared once (as store.sql does for codes).
_BY_IDS_PG = select(*_COLUMNS).where(Link.id == any_(bindparam("ids", type_=postgresql.ARRAY(BigInteger))))


class ExpiryTimers:
    def __init__(self, *, db, redis, prefix: str, clock: Callable[[], datetime], batch: int = 2000) -> None:
        self.db = db
        self.redis = redis
        self.key = expiry_key(prefix)
        self.clock = clock
        self.batch = batch
        self._remove = redis.register_script(REMOVE_IF_UNMOVED)

    async def pop_due(self, *, fenced: Callable[[AsyncSession], Awaitable[None]]) -> int:
        """Record link.gone for one batch of due timers; returns how many timers were popped."""
        now = self.clock()
        due = await self.redis.zrangebyscore(self.key, "-inf", now.timestamp(), start=0, num=self.batch,
                                             withscores=True, score_cast_func=bytes)
        if not due:
            return 0
        ids = [int(member) for member, _ in due]
        async with self.db.transaction() as session:
            # Core rows (attribute access by column name), not ORM objects: a third of the cost.
            links = (await session.execute(_BY_IDS_PG if session.bind.dialect.name == "postgresql" else _BY_IDS,
                                           {"ids": ids})).all()
            gone, later = [], {}
            for link in links:
                if link.deleted_at is not None or link.valid_until is None:
                    continue
                if link.valid_until > now:  # moved later while Redis was not told
                    later[str(link.id)] = link.valid_until.timestamp()
                    continue
                gone.append(events.change(
                    events.GONE, link, reason="expired",
                    once_key=events.gone_once_key(link.id, "expired", link.valid_until)))
            added = 0
            if gone:
                await fenced(session)
                added = await events.record(session=session, events=gone, now=now)
        flat = [part for member, score in due for part in (member, score)]
        await self._remove(keys=[self.key], args=flat)
        if later:
            await self.redis.zadd(self.key, later)
        metrics.EXPIRY_EVENTS.inc(added)
        return len(due)
