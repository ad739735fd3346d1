"""The work one replica at a time does, under the ``coordinator`` lock: relay, webhooks, expiry timers.

Every replica runs this loop; one holds the lock and works, the others try
again every lock TTL / 3 and take over within a TTL of the holder's death.
Each SQL write of the holder carries the lock's fence (lock.check_fence),
so a holder that paused past its TTL cannot write over its successor.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from .. import metrics
from ..errors import StorageUnavailable
from .expiry import ExpiryTimers
from .lock import FencedLock, LockHeld, LockLost, check_fence, newest_fence
from .relay import OutboxRelay
from .webhooks import Deliverer

log = logging.getLogger(__name__)

LOCK_NAME = "coordinator"


class Coordinator:
    def __init__(self, *, db, lock: FencedLock, relay: OutboxRelay, timers: ExpiryTimers, deliverer: Deliverer,
                 relay_interval: float, expiry_interval: float, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.lock = lock
        self.relay = relay
        self.timers = timers
        self.deliverer = deliverer
        self.relay_interval = relay_interval
        self.expiry_interval = expiry_interval
        self.clock = clock
        self._wake = asyncio.Event()
        self._delivery_due = asyncio.Event()
        self.holding = False  # tests and /health read it
        # The loops end at their next turn once stopped, even if a cancel was
        # lost (fakeredis's client can swallow one that lands mid-command).
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self._delivery_due.set()

    def wake(self) -> None:
        """A change committed on this replica: relay it now rather than at the next poll."""
        self._wake.set()

    async def run_forever(self) -> None:
        while not self._stopping:
            try:
                async with self.db.read_connection(primary=True) as connection:
                    floor = await newest_fence(connection=connection, name=LOCK_NAME)
                async with self.lock.hold(floor=floor) as held:
                    self.holding = True
                    log.info("coordinator lock taken (fence %d): relaying events on this replica", held.fence)
                    await self._work(held.fence)
            except LockHeld:
                pass
            except LockLost as exc:
                metrics.LOCKS_LOST.labels(name=LOCK_NAME).inc()
                log.error("%s", exc)
            except (RedisError, OSError, asyncio.TimeoutError, StorageUnavailable) as exc:
                log.warning("coordinator paused: %s", exc)
            finally:
                self.holding = False
            await asyncio.sleep(self.lock.ttl_seconds / 3)

    async def _work(self, fence: int) -> None:
        """Relay, deliveries and expiry timers side by side (a burst of events never holds up the timers)."""

        async def fenced(session: AsyncSession) -> None:
            await check_fence(session=session, name=LOCK_NAME, fence=fence)

        await asyncio.gather(self._relay(fenced), self._deliver(fenced), self._expire(fenced))

    async def _relay(self, fenced) -> None:
        while not self._stopping:
            self._wake.clear()
            while await self.relay.relay_once(fenced=fenced):
                self._delivery_due.set()
            try:
                async with asyncio.timeout(self.relay_interval):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _deliver(self, fenced) -> None:
        while not self._stopping:
            await self.deliverer.deliver_due(fenced=fenced)
            self._delivery_due.clear()
            try:  # retries come due by the clock: look at least every second
                async with asyncio.timeout(1.0):
                    await self._delivery_due.wait()
            except TimeoutError:
                pass

    async def _expire(self, fenced) -> None:
        while not self._stopping:
            while await self.timers.pop_due(fenced=fenced) >= self.timers.batch:
                pass
            await asyncio.sleep(self.expiry_interval)
