"""Rate limits shared across replicas through Redis.

``ApiLimiter``: one script call (one round trip) per API request, for the
key's limit or, without a valid key, the address's. ``ScanGuard``: the
redirect's limit on unknown codes per address, counted in process and
shared in batches, so redirects of existing codes pay nothing for it.

Both are sliding-window counters: two fixed windows, the previous one
weighted by how much of it still overlaps the sliding window. That is one
counter per window per client in Redis (not one entry per request, as a
log would need). The weighting takes the previous window's requests as
spread evenly, so a burst at a window's edge is counted a little high or
low, never enough to let through more than twice the limit in any window.

Why not the `limits` library (which the design names as the default): its
sliding-window `hit()` answers only yes or no, so sending the RateLimit
headers every limited response carries costs a second round trip
(`get_window_stats`), and it reads the time from Redis, which leaves no
clock for tests to move. The script below does both in one call and takes
the time from the caller.

Keys (prefix ``lg:`` by default; each client's two windows share a hash
tag, so the script touches one Cluster slot):

- ``lg:rl:{<kind>:<id>}:<window number>``: requests of one client in one
  window; TTL two windows. ``kind`` is ``key`` (a key's public id),
  ``addr`` (an address, for requests without a valid key), ``scan``
  (unknown codes asked for by an address), or for password attempts
  (service.pages.password) ``pw-link`` (a link's code) and ``pw-addr``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from .. import metrics
from ..batching import Coalescer
from ..store import scripts
from .rates import Rate

log = logging.getLogger(__name__)

_REDIS_DOWN = (RedisError, OSError, asyncio.TimeoutError)

# KEYS[1]: the counter of the current window; KEYS[2]: the previous window's.
# ARGV[1]: the limit; ARGV[2]: the window in ms; ARGV[3]: ms elapsed in the
# current window; ARGV[4]: how many requests to add (0 only reads).
# Returns {allowed (1 or 0), current window's count, previous window's count},
# the counts as they stand after this call. A refused request is not counted.
SLIDING_WINDOW_HIT = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local elapsed = tonumber(ARGV[3])
local amount = tonumber(ARGV[4])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
local used = math.floor(previous * (window - elapsed) / window) + current
if used + amount > limit then
  return {0, current, previous}
end
if amount > 0 then
  current = redis.call('INCRBY', KEYS[1], amount)
  if current == amount then
    redis.call('PEXPIRE', KEYS[1], window * 2)
  end
end
return {1, current, previous}
"""


@dataclass(frozen=True, slots=True)
class Decision:
    """One request's standing against one limit."""

    name: str
    rate: Rate
    allowed: bool
    remaining: int
    reset_seconds: int
    retry_after: int | None

    def headers(self) -> list[tuple[bytes, bytes]]:
        """RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers-10)."""
        policy = f'"{self.name}";{self.rate.policy_header}'
        state = f'"{self.name}";r={self.remaining};t={self.reset_seconds}'
        return [(b"ratelimit-policy", policy.encode()), (b"ratelimit", state.encode())]


def window_state(rate: Rate, now: float) -> tuple[int, int, int]:
    """(window number, window length in ms, ms elapsed in it) at `now` (seconds since the epoch)."""
    window_ms = rate.window_seconds * 1000
    now_ms = int(now * 1000)
    return now_ms // window_ms, window_ms, now_ms % window_ms


def decide(name: str, rate: Rate, *, allowed: bool, current: int, previous: int, elapsed_ms: int) -> Decision:
    """What the counts mean for the client: how much is left, and when to come back."""
    window_ms = rate.window_seconds * 1000
    left_in_window = window_ms - elapsed_ms
    used = math.floor(previous * left_in_window / window_ms) + current
    remaining = max(0, rate.limit - used)
    retry_after = None
    if not allowed or remaining == 0:
        # The first moment one more request fits under the limit.
        if current < rate.limit and previous:
            wait_ms = left_in_window - (rate.limit - current) * window_ms / previous
        else:
            # Not in this window: in the next, this window's count decays away.
            wait_ms = left_in_window + window_ms * max(0.0, 1 - rate.limit / max(current, 1))
        # +1 ms: the weighted count must fall strictly below the limit, not reach it.
        retry_after = max(1, math.ceil((max(wait_ms, 0) + 1) / 1000))
    reset = retry_after if retry_after is not None else max(1, math.ceil(left_in_window / 1000))
    return Decision(name=name, rate=rate, allowed=allowed, remaining=remaining,
                    reset_seconds=reset, retry_after=retry_after if not allowed else None)


@dataclass(frozen=True, eq=False, slots=True)
class _Hit:
    """One request's script call, waiting for its batch (compared by identity: each counts)."""

    keys: tuple[str, str]
    args: tuple[int, int, int, int]


class ApiLimiter:
    """Per-key and per-address limits of the REST API: one Redis script call each request.

    Calls that arrive together go out as one pipeline (a Coalescer, as the
    cache's lookups do): measured on this machine's Redis, a lone EVALSHA
    costs redis-py ~65 us of CPU (~140 us through its Script helper), one in
    a pipeline of 50 ~13 us. Each request still makes exactly one script
    call and waits one round trip.

    Fails open: with Redis away, requests go through unlimited (and the
    limiter skips Redis for a second before trying again), because the API
    must keep working when its cache does; `linkgate_redis_errors_total`
    shows it.
    """

    def __init__(
        self,
        redis,
        *,
        prefix: str,
        clock: Callable[[], float] = time.time,
        timeout_seconds: float = 0.5,
        cooldown_seconds: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self.clock = clock  # seconds since the epoch; tests move it
        self._monotonic = monotonic
        self._timeout = timeout_seconds
        self._cooldown = cooldown_seconds
        self._down_until = 0.0
        self._sha = scripts.sha_of(SLIDING_WINDOW_HIT)
        self._hits: Coalescer[_Hit, list] = Coalescer(self._run, max_in_flight=4, max_batch=500)

    def keys(self, kind: str, ident: str, number: int) -> tuple[str, str]:
        tag = f"{self._prefix}rl:{{{kind}:{ident}}}"
        return f"{tag}:{number}", f"{tag}:{number - 1}"

    async def hit(self, kind: str, ident: str, rate: Rate | None, *, name: str) -> Decision | None:
        """Count one request of `ident`; None when it is not limited (no rate, or Redis away)."""
        if rate is None or self._monotonic() < self._down_until:
            return None
        number, window_ms, elapsed = window_state(rate, self.clock())
        try:
            allowed, current, previous = await self._hits.get(
                _Hit(self.keys(kind, ident, number), (rate.limit, window_ms, elapsed, 1))
            )
        except _REDIS_DOWN as exc:
            self._down_until = self._monotonic() + self._cooldown
            metrics.REDIS_ERRORS.labels(operation="rate-limit").inc()
            log.warning("rate limit not checked, redis failed: %s", exc)
            return None
        return decide(name, rate, allowed=bool(allowed), current=int(current), previous=int(previous),
                      elapsed_ms=elapsed)

    async def _run(self, hits: list[_Hit]) -> list[list]:
        """The batch's script calls in one pipeline (store.scripts)."""
        async with asyncio.timeout(self._timeout):
            return await scripts.run_calls(self._redis, SLIDING_WINDOW_HIT, self._sha,
                                           [(hit.keys, hit.args) for hit in hits])


class ScanGuard:
    """The unknown-code limit of redirects, per client address, at no round trip per redirect.

    A redirect of a code that does not exist calls `note(address)`: it
    counts in a dict and answers from what this process knows, which is the
    shared count as of the last flush plus what it counted since. Every
    `flush_every` seconds (and when a process has counted many) one
    pipeline adds this process's counts to the shared windows in Redis and
    reads back the totals, so every replica sees every replica's unknowns
    within about one flush. Known codes never reach it.
    """

    def __init__(
        self,
        redis,
        *,
        prefix: str,
        rate: Rate | None,
        clock: Callable[[], float] = time.time,
        timeout_seconds: float = 0.5,
        max_addresses: int = 50_000,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self.rate = rate
        self.clock = clock  # seconds since the epoch; tests move it
        self._timeout = timeout_seconds
        self._max_addresses = max_addresses
        # Counted here since the last flush, per (address, window number).
        self._pending: dict[tuple[str, int], int] = {}
        self._window_ms = rate.window_seconds * 1000 if rate else 0
        self._policy = f'"unknown-codes";{rate.policy_header}'.encode() if rate else b""
        # As of the last flush: (window number, current count, previous count) per address.
        self._shared: dict[str, tuple[int, int, int]] = {}

    def note(self, address: str) -> tuple[bool, list[tuple[bytes, bytes]], int | None] | None:
        """Count one unknown code from `address`: (allowed, the RateLimit headers, Retry-After when
        not allowed), or None when there is no limit.

        This runs on every 404 of the redirect path, so it is plain arithmetic
        and bytes formatting (a profile had the general-purpose Decision at
        ~8 us per 404, a fifth of the unknown-code path); the figures are
        decide()'s, which a test compares.
        """
        rate = self.rate
        if rate is None:
            return None
        window_ms = self._window_ms
        now_ms = int(self.clock() * 1000)
        number, elapsed = divmod(now_ms, window_ms)
        current, previous = self._standing(address, number)
        pending = self._pending.get((address, number), 0)
        current += pending
        previous += self._pending.get((address, number - 1), 0)
        left = window_ms - elapsed
        used = previous * left // window_ms + current
        if used < rate.limit:
            if len(self._pending) >= self._max_addresses and (address, number) not in self._pending:
                # A flood of addresses: forget this round's counts rather than grow without bound.
                self._pending.clear()
            self._pending[(address, number)] = pending + 1
            remaining = rate.limit - used - 1
            if remaining > 0:
                state = b'"unknown-codes";r=%d;t=%d' % (remaining, -(-left // 1000))
                return True, [(b"ratelimit-policy", self._policy), (b"ratelimit", state)], None
            current += 1
        else:
            decision = decide("unknown-codes", rate, allowed=False, current=current, previous=previous,
                              elapsed_ms=elapsed)
            return False, decision.headers(), decision.retry_after
        decision = decide("unknown-codes", rate, allowed=True, current=current, previous=previous,
                          elapsed_ms=elapsed)
        return True, decision.headers(), None

    def _standing(self, address: str, number: int) -> tuple[int, int]:
        shared = self._shared.get(address)
        if shared is None:
            return 0, 0
        seen_in, current, previous = shared
        if seen_in == number:
            return current, previous
        if seen_in == number - 1:
            return 0, current
        return 0, 0

    async def flush(self) -> bool:
        """Share this process's counts and learn everyone's; False when Redis did not answer."""
        rate = self.rate
        if rate is None:
            return True
        pending, self._pending = self._pending, {}
        number, window_ms, _ = window_state(rate, self.clock())
        addresses = sorted({address for address, _ in pending})
        if not addresses:
            return True
        try:
            pipe = self._redis.pipeline(transaction=False)
            for (address, counted_in), count in pending.items():
                if counted_in >= number - 1:  # older counts no longer weigh on anything
                    key = f"{self._tag(address)}:{counted_in}"
                    pipe.incrby(key, count)
                    pipe.pexpire(key, window_ms * 2)
            for address in addresses:
                # (One slot: the same tag. As a plain command: redis-py refuses pipe.mget on a cluster.)
                pipe.execute_command("MGET", f"{self._tag(address)}:{number}", f"{self._tag(address)}:{number - 1}")
            async with asyncio.timeout(self._timeout):
                replies = await pipe.execute()
        except _REDIS_DOWN as exc:
            # Kept for the next try; meanwhile this process's own counts still limit.
            for entry, count in pending.items():
                self._pending[entry] = self._pending.get(entry, 0) + count
            metrics.REDIS_ERRORS.labels(operation="rate-limit").inc()
            log.debug("unknown-code counts not shared: %s", exc)
            return False
        shared = {a: s for a, s in self._shared.items() if s[0] >= number - 1}
        for address, (current, previous) in zip(addresses, replies[-len(addresses):], strict=True):
            shared[address] = (number, int(current or 0), int(previous or 0))
        self._shared = shared
        return True

    def _tag(self, address: str) -> str:
        return f"{self._prefix}rl:{{scan:{address}}}"
