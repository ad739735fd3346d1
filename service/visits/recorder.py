"""The redirect side of visit analytics: record each answered visit, send them to the stream in batches.

``record`` is what the redirect gateway calls, once per answered request: it
appends ``(time, code, status, scope)`` to a list. No I/O, no parsing, no
allocation beyond that tuple (measured at well under a microsecond a call;
docs/visits.md). Everything else happens in the flusher, a task on the same
event loop that wakes at least every ``LINKGATE_VISITS_FLUSH_SECONDS``
(250 ms), or as soon as ``LINKGATE_VISITS_FLUSH_SIZE`` visits are waiting:

1. each visit's client is worked out once per distinct (peer,
   X-Forwarded-For, User-Agent, Referer, privacy signal): the address
   through the trusted proxies and cut to its network (anonymise.py), the
   referrer's host (referrer.py), the User-Agent cut to 512 characters,
   whether it is counted as a visitor at all (LINKGATE_TRACKING_EXCLUDE,
   Sec-GPC/DNT). The raw address stays in this process's memory, for the
   visitor hash, and is never sent;
2. visits wait in the backlog, at most ``LINKGATE_VISITS_BUFFER_SIZE`` of
   them per process; past that the oldest are dropped and counted
   (``linkgate_visits_dropped_total``);
3. the backlog goes out as envelopes of up to the flush size, one per UTC
   day, each one script call appending one stream entry, all of a flush in
   one round trip (stream.py). Sent envelopes leave the backlog; if Redis did
   not answer, they stay and go with the next flush, and the envelope ids
   make a retry harmless.

``close`` flushes what is left before the process exits (SIGTERM), retrying
while Redis answers within the time it is given.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import os
import secrets
import time
from collections.abc import Callable

from redis.exceptions import RedisError

from .. import metrics
from ..access.addresses import ClientAddresses
from ..pages.marker import QR_VISIT
from . import schema
from .anonymise import SECONDS_PER_DAY, DailySalts, anonymise, day_of, visitor_hash
from .referrer import referrer_parts
from .stream import VisitStream

log = logging.getLogger(__name__)

# The scope key where the gateway leaves the id of the link it answered for.
LINK_ID = "linkgate.link_id"
# The answers that are visits: redirects (303: a password link unlocked by its form), and
# orphan visits (a code not live).
COUNTED = frozenset({301, 302, 303, 307, 308, 404, 410})
MAX_USER_AGENT = 512
# Distinct clients remembered between flushes (their hash is reused within a day).
CLIENT_CACHE_SIZE = 50_000

_REDIS_DOWN = (RedisError, OSError, asyncio.TimeoutError)


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Client:
    """What a visit's event says about its client, worked out once per distinct client."""

    __slots__ = ("address", "network", "user_agent", "referrer_host", "referrer_path", "counted", "_day", "_visitor")

    def __init__(self, *, address: str, network: str | None, user_agent: str, referrer_host: str | None,
                 referrer_path: str | None, counted: bool) -> None:
        self.address = address  # raw: for the visitor hash only, never sent
        self.network = network
        self.user_agent = user_agent
        self.referrer_host = referrer_host if counted else None
        self.referrer_path = referrer_path if counted else None
        self.counted = counted
        self._day = -1
        self._visitor: str | None = None

    def row(self, day: int, salt: bytes) -> list:
        if self.counted and self._day != day:
            self._day, self._visitor = day, visitor_hash(salt, self.address, self.user_agent)
        return [self.network, self._visitor if self.counted else None, self.user_agent,
                self.referrer_host, self.referrer_path]


class VisitRecorder:
    """Visits of this process, from the redirect to the visit stream (see the module docstring)."""

    def __init__(
        self,
        *,
        stream: VisitStream,
        salts: DailySalts,
        addresses: ClientAddresses,
        buffer_size: int,
        flush_seconds: float,
        flush_size: int,
        exclude: list[str] = (),  # type: ignore[assignment]
        honour_dnt: bool = True,
        referrer_path: bool = False,
        ipv4_bits: int = 24,
        ipv6_bits: int = 48,
        clock: Callable[[], float] = time.time,
        timeout_seconds: float = 1.0,
    ) -> None:
        self._stream = stream
        self._salts = salts
        self._addresses = addresses
        self._trusts_proxies = addresses.trusts_proxies
        self._bound = buffer_size
        self._flush_seconds = flush_seconds
        self._flush_size = flush_size
        self._exclude = tuple(ipaddress.ip_network(n, strict=False) for n in exclude)
        self._honour_dnt = honour_dnt
        self._referrer_path = referrer_path
        self._bits = (ipv4_bits, ipv6_bits)
        self.clock = clock  # seconds since the epoch; tests move it
        self._timeout = timeout_seconds
        self._raw: list[tuple] = []
        # Visits taken from records, oldest first, not yet in an envelope.
        self._backlog: list[tuple] = []
        # Envelopes made but not yet taken by Redis: (envelope id, document, visits in it).
        self._unsent: list[tuple[str, bytes, int]] = []
        self._clients: dict[tuple, _Client] = {}
        self._waiter: asyncio.Future | None = None
        # One flush at a time: two would put the same backlog visits in envelopes of different ids.
        self._flushing = asyncio.Lock()
        self._envelopes = itertools.count(1)
        self._tag = f"{os.getpid():x}.{int(time.time()):x}.{secrets.token_hex(3)}"
        self.dropped = 0

    @classmethod
    def from_settings(cls, settings, *, redis, addresses: ClientAddresses, **overrides) -> VisitRecorder:
        values = dict(
            stream=VisitStream(redis, prefix=settings.redis_key_prefix,
                               retention_seconds=settings.visits_stream_retention_seconds),
            salts=DailySalts(redis, prefix=settings.redis_key_prefix),
            addresses=addresses,
            buffer_size=settings.visits_buffer_size,
            flush_seconds=settings.visits_flush_seconds,
            flush_size=settings.visits_flush_size,
            exclude=settings.tracking_exclude,
            honour_dnt=settings.tracking_honour_dnt,
            referrer_path=settings.tracking_referrer_path,
            ipv4_bits=settings.tracking_ipv4_prefix,
            ipv6_bits=settings.tracking_ipv6_prefix,
        )
        values.update(overrides)
        return cls(**values)

    # --- the request path ----------------------------------------------------

    def record(self, code: str, status: int, scope) -> None:
        """Note one answered request; nothing else happens here (see the module docstring)."""
        if status in COUNTED:
            raw = self._raw
            if len(raw) < self._bound:
                raw.append((self.clock(), code, status, scope))
                if len(raw) == self._flush_size and self._waiter is not None:
                    _wake(self._waiter)
            else:  # the flusher has not run for a whole buffer's worth: keep what is waiting
                self.dropped += 1

    # --- the flusher -----------------------------------------------------------

    @property
    def backlog(self) -> int:
        """Visits recorded and not yet sent."""
        return len(self._raw) + len(self._backlog) + sum(count for _, _, count in self._unsent)

    async def run(self) -> None:
        """Flush at least every flush interval, and whenever a flush size is waiting; until cancelled."""
        loop = asyncio.get_running_loop()
        failing = 0
        while True:
            # After failures, wait longer (up to 2 s): Redis is away, the backlog holds the visits.
            wait = min(self._flush_seconds * 2 ** failing, max(self._flush_seconds, 2.0))
            # A plain future that record() or the timer resolves: cancelling a
            # wait on it is never lost (asyncio.wait_for can swallow a cancel on 3.11).
            self._waiter = waiter = loop.create_future()
            timer = loop.call_later(wait, _wake, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
            if await self.flush():
                if failing:
                    log.info("visit events are reaching the stream again")
                failing = 0
            else:
                failing = min(failing + 1, 8)
            metrics.VISITS_BACKLOG.set(self.backlog)

    async def flush(self) -> bool:
        """Send everything waiting; False when Redis did not take it all (the rest stays, bounded).

        Flushes queue behind each other (the flusher task, ``close`` and a
        caller's own flush may overlap), so a visit goes in one envelope only.
        """
        async with self._flushing:
            return await self._flush()

    async def _flush(self) -> bool:
        raw, self._raw = self._raw, []
        if raw:
            self._take(raw)
            metrics.TALLY.add(metrics.VISITS_RECORDED, len(raw))
        if self.dropped:
            metrics.TALLY.add(metrics.VISITS_DROPPED, self.dropped)
            self.dropped = 0
        while self._unsent or self._backlog:
            try:
                if not self._unsent:
                    await self._encode(self._flush_size * 8)
                async with asyncio.timeout(self._timeout):
                    await self._stream.append([(eid, doc) for eid, doc, _ in self._unsent],
                                              now_ms=int(self.clock() * 1000), version=schema.VERSION)
            except _REDIS_DOWN as exc:
                metrics.REDIS_ERRORS.labels(operation="visits").inc()
                log.warning("visit events not sent (%d waiting, at most %d kept): %s",
                            self.backlog, self._bound, exc)
                return False
            metrics.TALLY.add(metrics.VISITS_SENT, sum(count for _, _, count in self._unsent))
            self._unsent = []
        return True

    def _take(self, raw: list[tuple]) -> None:
        """Turn recorded requests into backlog entries (ts, link id, code, status, method, client, qr)."""
        backlog = self._backlog
        clients = self._clients
        if len(clients) > CLIENT_CACHE_SIZE:
            clients.clear()
        trusts_proxies = self._trusts_proxies
        for ts, code, status, scope in raw:
            user_agent = referer = forwarded = b""
            private = False
            for name, value in scope["headers"]:
                if name == b"user-agent":
                    user_agent = value
                elif name == b"referer":
                    referer = value
                elif name == b"sec-gpc" or name == b"dnt":
                    private = private or value.strip() == b"1"
                elif trusts_proxies and name == b"x-forwarded-for":
                    forwarded += value + b","
            peer = scope.get("client")
            key = (peer[0] if peer else None, forwarded, user_agent, referer, private)
            client = clients.get(key)
            if client is None:
                client = clients[key] = self._client(scope, user_agent, referer, private)
            backlog.append((ts, scope.get(LINK_ID), code, status, scope["method"], client, QR_VISIT in scope))
        overflow = self.backlog - self._bound
        if overflow > 0:
            self._drop_oldest(overflow)

    def _drop_oldest(self, count: int) -> None:
        """Forget the `count` oldest unsent visits (whole envelopes first: they are the oldest)."""
        dropped = 0
        while self._unsent and dropped < count:
            dropped += self._unsent.pop(0)[2]
        if dropped < count:
            from_backlog = min(count - dropped, len(self._backlog))
            del self._backlog[:from_backlog]
            dropped += from_backlog
        metrics.TALLY.add(metrics.VISITS_DROPPED, dropped)
        log.warning("visit backlog full: dropped the %d oldest events", dropped)

    def _client(self, scope, user_agent: bytes, referer: bytes, private: bool) -> _Client:
        address = self._addresses.of(scope)
        counted = not (private and self._honour_dnt)
        if counted and self._exclude:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                pass
            else:
                counted = not any(ip in network for network in self._exclude)
        host, path = (referrer_parts(referer.decode("latin-1"), keep_path=self._referrer_path)
                      if referer else (None, None))
        return _Client(
            address=address,
            network=anonymise(address, ipv4_bits=self._bits[0], ipv6_bits=self._bits[1]),
            user_agent=user_agent[:MAX_USER_AGENT].decode("utf-8", "replace")[:MAX_USER_AGENT],
            referrer_host=host,
            referrer_path=path,
            counted=counted,
        )

    async def _encode(self, most: int) -> None:
        """Move up to `most` backlog visits into envelopes (one UTC day, at most a flush size each).

        An envelope keeps its id until Redis has taken it: a send retried after
        a lost reply repeats the same ids, which the append script skips.
        """
        chunk = self._backlog[:most]
        size = self._flush_size
        start, end = 0, len(chunk)
        while start < end:
            day = day_of(chunk[start][0])
            next_day = (day + 1) * SECONDS_PER_DAY
            salt = await self._salts.for_day(day, now=self.clock())
            index: dict[_Client, int] = {}
            clients: list[list] = []
            visits: list[list] = []
            add = visits.append
            for ts, link_id, code, status, method, client, qr in itertools.islice(chunk, start, min(end, start + size)):
                if ts >= next_day:
                    break
                at = index.get(client)
                if at is None:
                    at = index[client] = len(clients)
                    clients.append(client.row(day, salt))
                add([int(ts * 1000), link_id, code, status, method, at, qr])
            start += len(visits)
            self._unsent.append((f"{self._tag}.{next(self._envelopes)}", schema.encode(clients, visits), len(visits)))
        # Only now: a salt Redis could not give leaves every visit where it was.
        del self._backlog[:end]

    async def close(self, *, timeout_seconds: float = 5.0) -> bool:
        """Send what is left (call after the flusher task is cancelled); False if some could not be."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            if await self.flush():
                return True
            if time.monotonic() + 0.2 > deadline:
                log.error("%d visit events not sent before shutdown; they are lost", self.backlog)
                return False
            await asyncio.sleep(0.2)
