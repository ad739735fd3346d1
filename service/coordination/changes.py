"""Telling every replica of a committed link change at once: pub/sub invalidation, and the expiry set.

Keys and channels (prefix settings.redis_key_prefix, ``lg:`` by default):

- channel ``lg:link-changes``: each message is the codes of links whose
  change just committed, separated by spaces. Every replica subscribes and
  drops its in-memory copies of them at once. The writing replica publishes
  right after its commit (and drops its own copies before that); the relay
  publishes again from the outbox, so a change made while Redis was away is
  still told. A lost message costs at most the in-memory TTL (1 s), which
  still bounds staleness on its own.
- ``lg:{expiries}``: sorted set of link ids scored by their ``valid_until``
  (epoch seconds), for the expiry timers (expiry.py). Written after the
  commit of a create or update that sets an expiry; best effort, because
  reconcile rebuilds it from SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.exceptions import RedisError

from .. import metrics
from ..store import cluster

log = logging.getLogger(__name__)

_REDIS_DOWN = (RedisError, OSError, asyncio.TimeoutError)
# Codes per message: a bulk change is told in a few messages, each well under a packet.
CODES_PER_MESSAGE = 200


def channel(prefix: str) -> str:
    return f"{prefix}link-changes"


def expiry_key(prefix: str) -> str:
    return f"{prefix}{{expiries}}"


class LinkChanges:
    """This replica's side of the change feed: publish its commits, hear everyone's."""

    def __init__(self, redis, *, prefix: str, forget: Callable[[str], None], timeout_seconds: float = 0.5,
                 on_commit: Callable[[], None] | None = None) -> None:
        self.redis = redis
        self.prefix = prefix
        self.channel = channel(prefix)
        self._forget = forget
        self._timeout = timeout_seconds
        # Called after each commit (the relay wakes up instead of waiting for its next poll).
        self.on_commit = on_commit
        self._codes: set[str] = set()
        self._wake = asyncio.Event()
        self.heard = 0  # messages received (tests read it)
        self._subscribed = asyncio.Event()
        # The loops end at their next turn once stopped, even if a cancel was
        # lost (fakeredis's client can swallow one that lands mid-command).
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    # --- telling ----------------------------------------------------------------

    def committed(self, code: str) -> None:
        """A change of `code` committed: tell the others soon (the publisher task batches them)."""
        self._codes.add(code)
        self._wake.set()
        if self.on_commit is not None:
            self.on_commit()

    async def publish(self, codes: list[str]) -> bool:
        """Publish codes now; False when Redis did not take them (the relay tells them again)."""
        try:
            async with asyncio.timeout(self._timeout):
                for start in range(0, len(codes), CODES_PER_MESSAGE):
                    await self.redis.publish(self.channel, " ".join(codes[start:start + CODES_PER_MESSAGE]))
        except _REDIS_DOWN as exc:
            metrics.REDIS_ERRORS.labels(operation="publish").inc()
            log.warning("link changes not published: %s: %s", type(exc).__name__, exc)
            return False
        return True

    async def flush(self) -> bool:
        """Publish the codes waiting now (the publisher task does it as they come; shutdown calls this)."""
        codes, self._codes = sorted(self._codes), set()
        return await self.publish(codes) if codes else True

    async def publish_forever(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    # --- hearing ----------------------------------------------------------------

    async def wait_subscribed(self, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            await self._subscribed.wait()

    async def listen_forever(self, *, retry_seconds: float = 1.0) -> None:
        """Drop local copies of every code another replica (or this one) tells of; reconnect when cut."""
        while not self._stopping:
            pubsub = None
            try:
                pubsub = await cluster.open_pubsub(self.redis, ignore_subscribe_messages=True)
                await pubsub.subscribe(self.channel)
                self._subscribed.set()
                while not self._stopping:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    self.heard += 1
                    data = message["data"]
                    for code in (data.decode() if isinstance(data, bytes) else data).split():
                        self._forget(code)
            except _REDIS_DOWN as exc:
                self._subscribed.clear()
                log.warning("link-change channel lost (%s): local copies live out their TTL until it is back", exc)
                await asyncio.sleep(retry_seconds)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()

    # --- the expiry set ---------------------------------------------------------

    async def schedule_expiry(self, links) -> bool:
        """Put links with a valid_until in the expiry set (best effort: reconcile rebuilds it)."""
        scores = {str(link.id): link.valid_until.timestamp() for link in links if link.valid_until is not None}
        if not scores:
            return True
        try:
            async with asyncio.timeout(self._timeout):
                await self.redis.zadd(expiry_key(self.prefix), scores)
        except _REDIS_DOWN as exc:
            metrics.REDIS_ERRORS.labels(operation="expiry").inc()
            log.warning("expiry timers not set for %d links (reconcile sets them): %s", len(scores), exc)
            return False
        return True
