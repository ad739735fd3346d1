"""The Redis cache of links, in front of SQL on the redirect path.

Keys (all start with settings.redis_key_prefix, "lg:" by default):

- ``lg:{<code>}``: the cached link. Value ``b"<status><id><policy-json>\\n<url>"``:
  three ASCII digits, the link's row id in decimal (visit events carry it;
  a value written before ids were cached has none, and decodes with id
  None), the link's query policy as compact JSON (empty when the link uses
  the operator default; it starts with ``{``, so it never runs into the id),
  a newline (never inside JSON or a stored URL), then the URL. TTL
  settings.cache_ttl_seconds. A link with a
  lifecycle (a validity window, a visit limit, flags, a fallback, or
  deleted) has ``~<lifecycle-json>\\n`` in front: keys ``s``/``u`` valid
  since/until (epoch seconds), ``m`` max visits, ``f`` flags, ``b`` the
  fallback URL, ``d`` 1 when deleted, ``p`` 1 when visitors need a
  password (the hash stays in SQL). Plain links pay nothing for it.
  The value ``b""`` means "no such code" and lives settings.cache_miss_ttl_seconds,
  so scans of random codes reach SQL once per code per miss TTL, not per request.

The code sits in braces, a Redis Cluster hash tag: every key a later feature
keeps for one link (``lg:{<code>}:visits``, ...) lands in the same slot, so a
Lua script may touch them together. No Lua scripts are used yet.

Lookups are coalesced: GETs that arrive while a round trip is under way wait
and go out together as one MGET, because redis-py's cost per command, not
Redis, is what limits a busy process. On Redis Cluster (LINKGATE_REDIS_CLUSTER)
the codes of one batch fall in many slots, and the batch goes out as one MGET
per slot, pipelined per master (store/cluster.py has what that costs).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from .. import metrics
from ..batching import Coalescer
from . import cluster

log = logging.getLogger(__name__)

MISS_VALUE = b""


class CacheUnavailable(Exception):
    """Redis did not answer; the caller falls back to SQL."""


@dataclass(frozen=True, slots=True)
class CachedLink:
    url: str
    redirect_status: int
    query_policy: dict | None
    lifecycle: dict | None = None
    # The row id (visit events name the link by it); None in values cached before ids were.
    id: int | None = None


def cached_link(row, *, deleted: bool) -> CachedLink:
    """The cached form of a link row (an ORM Link or a store.sql.Target: the same attribute names)."""
    return CachedLink(
        url=row.url, redirect_status=row.redirect_status, query_policy=row.query_policy, id=row.id,
        lifecycle=lifecycle_fields(
            valid_since=row.valid_since, valid_until=row.valid_until, max_visits=row.max_visits,
            flags=row.flags, fallback_url=row.fallback_url, deleted=deleted, protected=row.protected,
        ),
    )


def lifecycle_fields(*, valid_since, valid_until, max_visits, flags, fallback_url, deleted: bool,
                     protected: bool = False) -> dict | None:
    """The lifecycle part of a cached link, or None for a plain live link (the common case)."""
    fields: dict = {}
    if valid_since is not None:
        fields["s"] = valid_since.timestamp()
    if valid_until is not None:
        fields["u"] = valid_until.timestamp()
    if max_visits is not None:
        fields["m"] = max_visits
    if flags:
        fields["f"] = int(flags)
    if fallback_url:
        fields["b"] = fallback_url
    if deleted:
        fields["d"] = 1
    if protected:
        fields["p"] = 1
    return fields or None


class _Missing:
    """Redis knows the code does not exist (a cached miss)."""

    __slots__ = ()


MISSING = _Missing()


def encode_link(link: CachedLink) -> bytes:
    policy = json.dumps(link.query_policy, separators=(",", ":")) if link.query_policy else ""
    head = f"~{json.dumps(link.lifecycle, separators=(',', ':'))}\n" if link.lifecycle else ""
    row_id = "" if link.id is None else link.id
    return f"{head}{link.redirect_status:03d}{row_id}{policy}\n{link.url}".encode()


def decode_link(value: bytes) -> CachedLink | _Missing:
    if not value:
        return MISSING
    text = value.decode()
    lifecycle = None
    if text[0] == "~":
        head_end = text.index("\n")
        lifecycle = json.loads(text[1:head_end])
        text = text[head_end + 1 :]
    newline = text.index("\n")
    head = text[3:newline]
    brace = head.find("{")
    id_text, policy_text = (head, "") if brace < 0 else (head[:brace], head[brace:])
    return CachedLink(
        url=text[newline + 1 :],
        redirect_status=int(text[:3]),
        query_policy=json.loads(policy_text) if policy_text else None,
        lifecycle=lifecycle,
        id=int(id_text) if id_text else None,
    )


_REDIS_DOWN_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


class LinkCache:
    """Best-effort Redis cache: errors are counted and logged, never raised to a visitor."""

    def __init__(
        self,
        redis,
        *,
        prefix: str,
        ttl_seconds: int,
        miss_ttl_seconds: int,
        max_in_flight: int = 4,
        cooldown_seconds: float = 1.0,
        timeout_seconds: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl = ttl_seconds
        self.miss_ttl = miss_ttl_seconds
        self._clock = clock
        self._cooldown = cooldown_seconds
        # One deadline per round trip, not redis-py's socket_timeout: that one
        # arms a timer for every reply read, which doubled the cost of a
        # pipelined write per command.
        self._timeout = timeout_seconds
        self._down_until = 0.0
        self._reads: Coalescer[bytes, bytes | None] = Coalescer(self._mget, max_in_flight=max_in_flight)

    def key(self, code: str) -> bytes:
        return f"{self.prefix}{{{code}}}".encode()

    # --- health ------------------------------------------------------------

    @property
    def is_cooling_down(self) -> bool:
        return self._clock() < self._down_until

    def _failed(self, exc: BaseException, operation: str) -> None:
        # After a failure, skip Redis for a moment: a visitor should not wait
        # for a connect timeout on every request while Redis is away.
        self._down_until = self._clock() + self._cooldown
        metrics.REDIS_ERRORS.labels(operation=operation).inc()
        log.warning("redis %s failed: %s", operation, exc)

    # --- reads (coalesced) -------------------------------------------------

    async def get(self, code: str) -> CachedLink | _Missing | None:
        """The cached link, MISSING for a cached miss, None when Redis has nothing.

        Raises CacheUnavailable when Redis cannot be asked.
        """
        if self._clock() < self._down_until:
            raise CacheUnavailable("redis cooling down after an error")
        value = await self._reads.get(self.key(code))
        if value is None:
            return None
        return decode_link(value)

    async def _mget(self, keys: list[bytes]) -> list[bytes | None]:
        try:
            async with asyncio.timeout(self._timeout):
                return await cluster.mget(self.redis, keys)
        except _REDIS_DOWN_ERRORS as exc:
            self._failed(exc, "get")
            raise CacheUnavailable(str(exc)) from exc

    # --- writes ------------------------------------------------------------

    async def put(self, code: str, link: CachedLink) -> bool:
        return await self._write("set", self.redis.set, self.key(code), encode_link(link), ex=self.ttl)

    async def put_miss(self, code: str) -> bool:
        return await self._write("set", self.redis.set, self.key(code), MISS_VALUE, ex=self.miss_ttl)

    async def put_many(self, links: dict[str, CachedLink | None]) -> bool:
        """Cache several links (None: a miss) in one round trip."""
        if not links:
            return True
        pipe = self.redis.pipeline(transaction=False)
        for code, link in links.items():
            # execute_command: the same SET ... EX, without redis-py's keyword
            # handling, which cost more than sending the command.
            if link is None:
                pipe.execute_command("SET", self.key(code), MISS_VALUE, "EX", self.miss_ttl)
            else:
                pipe.execute_command("SET", self.key(code), encode_link(link), "EX", self.ttl)
        return await self._write("set", pipe.execute)

    async def drop(self, *codes: str) -> bool:
        """Forget cached entries; False when Redis could not be told."""
        if not codes:
            return True
        return await self._write("delete", self.redis.delete, *(self.key(code) for code in codes))

    async def _write(self, operation: str, command, *args, **kwargs) -> bool:
        if self._clock() < self._down_until and operation != "delete":
            return False
        try:
            async with asyncio.timeout(self._timeout):
                await command(*args, **kwargs)
        except _REDIS_DOWN_ERRORS as exc:
            self._failed(exc, operation)
            return False
        return True

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                return bool(await self.redis.ping())
        except _REDIS_DOWN_ERRORS:
            return False
