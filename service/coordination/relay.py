"""The outbox relay: link events from SQL to the link-event stream, to pub/sub and to webhook deliveries.

Keys (prefix settings.redis_key_prefix, ``lg:`` by default):

- ``lg:{link-events}``: the link-event stream. Each entry has one field,
  ``event``: the event's JSON document (docs/link-events.md, schema v1;
  ``id`` is the outbox row id, increasing, for readers to de-duplicate on).
  Trimmed to about LINKGATE_EVENTS_STREAM_MAX_LENGTH entries.

The relay reads outbox rows not yet published, in id order, appends them to
the stream and publishes their codes on the change channel (changes.py) in
one pipelined round trip, then, in one SQL transaction carrying its lock's
fence, marks them published and queues their webhook deliveries. A relay
that dies between the two publishes the same rows again: delivery is at
least once, and the event ids make the repeat recognisable.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .. import metrics
from ..store import cluster
from ..store.models import LinkEvent
from . import changes as link_changes
from .webhooks import body_of, queue_deliveries

log = logging.getLogger(__name__)


def stream_key(prefix: str) -> str:
    return f"{prefix}{{link-events}}"


class OutboxRelay:
    def __init__(self, *, db, redis, prefix: str, max_length: int, clock: Callable[[], datetime],
                 batch: int = 2000) -> None:
        self.db = db
        self.redis = redis
        self.prefix = prefix
        self.stream = stream_key(prefix)
        self.channel = link_changes.channel(prefix)
        self.max_length = max_length
        self.clock = clock
        self.batch = batch

    async def relay_once(self, *, fenced: Callable[[AsyncSession], Awaitable[None]]) -> int:
        """Publish one batch of unpublished events; returns how many (0: the outbox is empty)."""
        async with self.db.reading() as session:
            # Core rows (attributes by column name): no ORM identity bookkeeping for a batch read once.
            rows = (await session.execute(
                select(*LinkEvent.__table__.columns).where(LinkEvent.published_at.is_(None))
                .order_by(LinkEvent.id).limit(self.batch)
            )).all()
        if not rows:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for row in rows:
            pipe.xadd(self.stream, {"event": body_of(row)}, maxlen=self.max_length, approximate=True)
        codes = sorted({row.code for row in rows})
        for start in range(0, len(codes), link_changes.CODES_PER_MESSAGE):
            cluster.queue_publish(pipe, self.channel, " ".join(codes[start:start + link_changes.CODES_PER_MESSAGE]))
        await pipe.execute()
        now = self.clock()
        async with self.db.transaction() as session:
            await fenced(session)
            await session.execute(
                update(LinkEvent).where(LinkEvent.id.in_([row.id for row in rows])).values(published_at=now)
            )
            await queue_deliveries(session=session, events=rows, now=now)
        metrics.LINK_EVENTS_PUBLISHED.inc(len(rows))
        return len(rows)
