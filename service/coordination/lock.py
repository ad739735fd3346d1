"""A Redis lock with a watchdog and a fencing token, for work one replica at a time does.

Keys (prefix settings.redis_key_prefix, ``lg:`` by default):

- ``lg:{lock:<name>}``: the lock. Value: the holder's random token. TTL the
  lock's ttl, extended by the holder's watchdog every ttl/3.
- ``lg:{lock:<name>}:fence``: the fencing counter, one INCR per acquire, no
  TTL. Same hash tag as the lock, so one script touches both on Redis Cluster.

Why a fence: a holder can pause past its TTL (a GC pause, SIGSTOP, a VM
migration), another replica takes the lock, and the first one wakes up
believing it still holds it. Its watchdog notices on the next extend, but a
write may already be on its way. So every acquire also returns a number
that only grows, and SQL writes made under the lock carry it
(:func:`check_fence`): a write with a number lower than one SQL has already
seen is refused, in the same transaction as the write.

The counter lives in Redis, which may be flushed; the acquire script takes
the highest fence SQL has seen as a floor, so the numbers still only grow.

redis-py's ``Lock`` is not used underneath: it keeps its token in
``threading.local``, which every task of one event loop shares, and it has
no fence. Its scripts are the model for the ones below (KEYS, ARGV and the
return value beside each).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from ..store.models import Fence

log = logging.getLogger(__name__)

# Acquire: take the lock if free, and hand out the next fencing token.
#   KEYS[1]: the lock; KEYS[2]: its fence counter (same hash tag)
#   ARGV[1]: the holder's token; ARGV[2]: ttl in ms; ARGV[3]: floor, the
#            highest fence SQL has seen (the counter may have been flushed)
#   Returns the fence (an integer > ARGV[3]) when acquired, 0 when another holds it.
ACQUIRE = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 0
end
local fence = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[3])
if fence <= floor then
  fence = floor + 1
  redis.call('SET', KEYS[2], fence)
end
return fence
"""

# Extend: push the lock's expiry out, only if this holder still holds it.
#   KEYS[1]: the lock; ARGV[1]: the holder's token; ARGV[2]: ttl in ms
#   Returns 1 when extended, 0 when the lock is gone or another's.
EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# Release: delete the lock, only if this holder still holds it.
#   KEYS[1]: the lock; ARGV[1]: the holder's token
#   Returns 1 when released, 0 when it was gone or another's.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# The clock the lock reads (tests replace it through this module alias).
monotonic = time.monotonic


class LockHeld(Exception):
    """Another holder has the lock."""


class LockLost(Exception):
    """The lock expired or was taken while the guarded work ran; the work was cancelled."""


class FenceRejected(Exception):
    """A write under a lock carried a fence older than one SQL has seen: its holder lost the lock."""

    def __init__(self, name: str, fence: int, newest: int) -> None:
        super().__init__(f"fence {fence} of lock {name!r} is older than {newest}: the write is refused")
        self.name, self.fence, self.newest = name, fence, newest


async def check_fence(*, session: AsyncSession, name: str, fence: int) -> None:
    """Record `fence` for lock `name` in this transaction, or raise FenceRejected if a newer one was seen.

    Call it inside the transaction of the write the lock guards: the UPDATE
    holds the fence row until commit, so two holders' writes serialise on it.
    """
    result = await session.execute(
        update(Fence).where(Fence.name == name, Fence.token <= fence).values(token=fence)
    )
    if result.rowcount:
        return
    newest = (await session.execute(select(Fence.token).where(Fence.name == name))).scalar_one_or_none()
    if newest is None:
        session.add(Fence(name=name, token=fence))
        await session.flush()  # a racing first insert fails on the primary key and rolls back
        return
    raise FenceRejected(name, fence, newest)


async def newest_fence(*, connection: AsyncConnection, name: str) -> int:
    return (await connection.execute(select(Fence.token).where(Fence.name == name))).scalar_one_or_none() or 0


@dataclass
class Held:
    """A lock this process holds: its fence, and whether the watchdog lost it."""

    name: str
    fence: int
    token: str
    lost: bool = False
    extended: int = 0
    # Set when the body is done: the watchdog stops at its next turn even if a
    # cancel was lost (fakeredis can swallow one that lands mid-command).
    done: bool = False


@dataclass
class FencedLock:
    """One named lock (see the module docstring). The Redis client is passed in."""

    redis: object
    name: str
    prefix: str = "lg:"
    ttl_seconds: float = 30.0
    _scripts: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ttl_seconds <= 0:
            raise ValueError("a lock's ttl must be positive")
        if not self.name or "}" in self.name or "{" in self.name:
            raise ValueError(f"a lock name may not be empty nor hold braces: {self.name!r}")

    @property
    def key(self) -> str:
        return f"{self.prefix}{{lock:{self.name}}}"

    @property
    def fence_key(self) -> str:
        return f"{self.key}:fence"

    def _script(self, source: str):
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self.redis.register_script(source)
        return script

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.ttl_seconds * 1000))

    async def acquire(self, *, floor: int = 0) -> Held | None:
        """Take the lock if it is free: a Held with its fence, or None when another holds it."""
        if floor < 0:
            raise ValueError("a fence floor is never negative")
        token = secrets.token_hex(16)
        fence = await self._script(ACQUIRE)(keys=[self.key, self.fence_key], args=[token, self._ttl_ms, floor])
        return Held(self.name, int(fence), token) if fence else None

    async def extend(self, held: Held) -> bool:
        return bool(await self._script(EXTEND)(keys=[self.key], args=[held.token, self._ttl_ms]))

    async def release(self, held: Held) -> bool:
        return bool(await self._script(RELEASE)(keys=[self.key], args=[held.token]))

    @contextlib.asynccontextmanager
    async def hold(self, *, floor: int = 0) -> AsyncIterator[Held]:
        """Run the body under the lock, its watchdog extending it every ttl/3.

        Raises LockHeld when another holds the lock. When an extend fails the
        lock is lost: the body is cancelled, and LockLost is raised from it.
        """
        held = await self.acquire(floor=floor)
        if held is None:
            raise LockHeld(self.name)
        body = asyncio.current_task()
        watchdog = asyncio.create_task(self._watch(held, body), name=f"lock-watchdog:{self.name}")
        try:
            yield held
        except asyncio.CancelledError:
            if held.lost and body is not None and body.uncancel() == 0:
                raise LockLost(f"lock {self.name!r} (fence {held.fence}) was lost; its work was cancelled") from None
            raise
        finally:
            held.done = True
            watchdog.cancel()
            await asyncio.wait({watchdog}, timeout=1.0)
            if not held.lost:
                with contextlib.suppress(Exception):  # Redis away: the lock expires by itself
                    await self.release(held)
        if held.lost:  # lost after the body finished, before it was cancelled
            raise LockLost(f"lock {self.name!r} (fence {held.fence}) was lost")

    async def _watch(self, held: Held, body: asyncio.Task | None) -> None:
        every = self.ttl_seconds / 3
        deadline = monotonic() + self.ttl_seconds
        while not held.done:
            await asyncio.sleep(every)
            if held.done:
                return
            try:
                async with asyncio.timeout(max(0.05, deadline - monotonic())):
                    extended = await self.extend(held)
            except asyncio.TimeoutError:
                extended = False
            except Exception as exc:  # Redis away: the lock may expire; keep trying until then
                log.warning("lock %s not extended: %s", self.name, exc)
                if monotonic() < deadline:
                    continue
                extended = False
            if not extended:
                held.lost = True
                log.error("lock %s (fence %d) lost: another holder may have it; cancelling its work",
                          self.name, held.fence)
                if body is not None:
                    body.cancel()
                return
            held.extended += 1
            deadline = monotonic() + self.ttl_seconds
