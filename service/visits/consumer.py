"""The consumer side: read the visit stream in a consumer group, fold it into SQL exactly once.

Each consumer (a task in the server under ``make run``, or
``python -m service consume-visits``, several replicas sharing the group in
production) loops:

1. every half ``LINKGATE_VISITS_CLAIM_IDLE_SECONDS``, ``XAUTOCLAIM`` the
   entries another consumer (or this one, after a failed fold) was handed
   and has left unacknowledged that long: a consumer killed mid-batch loses
   nothing, its entries are folded by whoever claims them;
2. ``XREADGROUP ... >`` up to ``LINKGATE_VISITS_CONSUMER_BATCH`` new
   entries, waiting up to a second when there are none;
3. folds them: decode (schema.py), enrich (enrich.py, cached), count
   (fold.py), then one SQL transaction that skips what was folded already and
   adds the rest with the stream position (aggregates.py);
4. ``XACK`` after the commit.

Steps 2 and 3 overlap when the stream is busy: the next batch is read and
counted while the one before it commits (``_fold_new``).

An entry of a schema version this code does not know is left unacknowledged
for a consumer that does; one that cannot be read at all is logged, counted
(``linkgate_visits_invalid_total``) and acknowledged, so it cannot block the
group. Redis or SQL away: the loop waits and tries again (up to 10 s apart);
what it had read stays pending and is claimed again, and the exactly-once
check makes the retry harmless.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from .. import metrics
from ..store import sql
from . import aggregates
from .anonymise import SECONDS_PER_DAY, day_date, day_of
from .enrich import Enricher
from .fold import Delta, Folder
from .schema import Envelope, InvalidEntry, UnsupportedVersion, decode
from .stream import GROUP, VisitStream, position, position_at

log = logging.getLogger(__name__)


def closed_before(now: float, retention_seconds: float) -> date:
    """The first day whose events may still arrive at `now` (seconds since the epoch): every day
    before it is closed. Events of day D arrive until the stream's retention after D ends, and a
    while longer from a process that held them while Redis was away."""
    keep_days = int(retention_seconds // SECONDS_PER_DAY) + 2
    return day_date(day_of(now)) - timedelta(days=keep_days)

PRUNE_EVERY_SECONDS = 600.0
PRUNE_FIRST_SECONDS = 60.0
CODE_CACHE_SIZE = 100_000
MAX_BACKOFF_SECONDS = 10.0


@dataclass
class FoldResult:
    entries: int = 0  # stream entries acknowledged
    events: int = 0  # visit events added to the aggregates
    duplicates: int = 0  # entries that had been folded before
    invalid: int = 0  # entries that could not be read
    unsupported: int = 0  # entries of a schema version this code does not read (left pending)


@dataclass
class _Batch:
    """Stream entries decoded and counted, not yet added (VisitConsumer._prepare, then _commit)."""

    readable: list  # (id, position, envelope) of those to add
    acked: list  # ids to acknowledge whatever the fold finds (unreadable ones)
    gaps: bool  # some entries were left out (another version's): the rest is no contiguous range
    delta: Delta
    result: FoldResult


class VisitConsumer:
    """One member of the stream's consumer group (see the module docstring)."""

    def __init__(
        self,
        *,
        stream: VisitStream,
        db: sql.Database,
        enricher: Enricher,
        batch: int = 2000,
        entry_size: int = 1000,
        claim_idle_seconds: float = 30.0,
        block_seconds: float = 0.0,
        poll_seconds: float = 0.1,
        name: str | None = None,
        group: str = GROUP,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._stream = stream
        self._redis = stream.redis
        self._db = db
        self._enricher = enricher
        self._folder = Folder(enricher)
        # XREADGROUP counts stream entries; a busy producer puts entry_size visits in each.
        self._batch = max(1, batch // max(1, entry_size))
        self._claim_idle_ms = int(claim_idle_seconds * 1000)
        self._claim_every = max(0.5, claim_idle_seconds / 2)
        # block_seconds > 0: wait for entries in XREADGROUP BLOCK (a process of its
        # own); 0: read without blocking and sleep poll_seconds when there was
        # nothing (in the server, where stop() must take effect at once).
        self._block_ms = int(block_seconds * 1000)
        self._poll_seconds = poll_seconds
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.group = group
        self.clock = clock  # seconds since the epoch; tests move it
        self._codes: dict[str, int | None] = {}
        self._ready = False
        self._stopping = False
        self._idle: asyncio.Future | None = None
        # Held while this consumer reads and folds: drain() waits for a step's fold under way, so
        # it never returns while entries this consumer was handed are still being counted.
        self._folding = asyncio.Lock()
        self._next_claim = 0.0
        # Not at once: a process that starts and stops soon (a test, a crash loop) has nothing to prune.
        self._next_prune = time.monotonic() + PRUNE_FIRST_SECONDS
        self.folded = 0  # events folded by this consumer so far

    @classmethod
    def from_settings(cls, settings, *, redis, db: sql.Database, **overrides) -> VisitConsumer:
        values = dict(
            stream=VisitStream(redis, prefix=settings.redis_key_prefix,
                               retention_seconds=settings.visits_stream_retention_seconds),
            db=db,
            enricher=Enricher(geoip_db=settings.geoip_db),
            batch=settings.visits_consumer_batch,
            entry_size=settings.visits_flush_size,
            claim_idle_seconds=settings.visits_claim_idle_seconds,
        )
        values.update(overrides)
        return cls(**values)

    @property
    def stream_key(self) -> str:
        return self._stream.key

    # --- the loop ------------------------------------------------------------------

    def stop(self) -> None:
        """Finish the fold under way, then return from run()."""
        self._stopping = True
        if self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    async def _pause(self, seconds: float) -> None:
        """Sleep, unless stop() comes first."""
        if self._stopping:
            return
        loop = asyncio.get_running_loop()
        self._idle = idle = loop.create_future()
        timer = loop.call_later(seconds, lambda: idle.done() or idle.set_result(None))
        try:
            await idle
        finally:
            timer.cancel()
            self._idle = None

    async def run(self) -> None:
        """Fold until stop() or cancellation; failures are logged and retried, never raised."""
        failures = 0
        while not self._stopping:
            try:
                await self.step(block=True)
                if failures:
                    log.info("visit consumer %s is folding again", self.name)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis or SQL away, or a bug: never a reason to stop counting
                failures += 1
                wait = min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** min(failures, 5))
                log.warning("visit consumer %s failed (%s: %s); again in %.1f s",
                            self.name, type(exc).__name__, exc, wait)
                await self._pause(wait)

    async def step(self, *, block: bool = False) -> int:
        """Claim what is due, read and fold one batch; returns the events folded."""
        if not self._ready:
            await self._stream.ensure_group(self.group)
            self._ready = True
        folded = 0
        now = time.monotonic()
        async with self._folding:
            if now >= self._next_claim:
                self._next_claim = now + self._claim_every
                folded += await self.claim()
            entries = await self._read(">", block=block and self._block_ms > 0)
            if entries:
                folded += await self._fold_new(entries, until=self._next_claim)
        if not entries and block and not self._block_ms:
            await self._pause(self._poll_seconds)
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY_SECONDS
            await self.prune()
        return folded

    async def _read(self, after: str, *, block: bool) -> list:
        reply = await self._redis.xreadgroup(
            self.group, self.name, {self._stream.key: after}, count=self._batch,
            block=self._block_ms if block else None,
        )
        return reply[0][1] if reply else []

    async def claim(self, *, min_idle_ms: int | None = None) -> int:
        """Fold the entries left unacknowledged for the claim idle time; returns the events folded."""
        start, folded = "0-0", 0
        for _ in range(100):  # bounded: at most 100 batches a round
            next_start, entries, *_ = await self._redis.xautoclaim(
                self._stream.key, self.group, self.name,
                self._claim_idle_ms if min_idle_ms is None else min_idle_ms, start, count=self._batch,
            )
            if entries:
                log.info("visit consumer %s claimed %d pending entries", self.name, len(entries))
                folded += (await self.fold(entries, contiguous=False)).events
            start = next_start.decode() if isinstance(next_start, bytes) else next_start
            if start == "0-0":
                break
        return folded

    async def drain(self, *, timeout_seconds: float) -> bool:
        """Fold everything in the stream, this consumer's own pending entries first; False if time ran out."""
        deadline = time.monotonic() + timeout_seconds
        if not self._ready:
            await self._stream.ensure_group(self.group)
            self._ready = True
        try:
            await asyncio.wait_for(self._folding.acquire(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return False
        try:
            return await self._drain(deadline)
        finally:
            self._folding.release()

    async def _drain(self, deadline: float) -> bool:
        while time.monotonic() < deadline:  # first what this consumer was handed and did not acknowledge
            entries = await self._read("0", block=False)
            if not entries or (await self.fold(entries, contiguous=False)).entries == 0:
                break  # none, or only entries left for another version's reader
        else:
            return False
        while time.monotonic() < deadline:
            entries = await self._read(">", block=False)
            if not entries:
                return True
            await self._fold_new(entries, until=deadline)
        return False

    # --- one fold ------------------------------------------------------------------

    async def _fold_new(self, entries: list, *, until: float) -> int:
        """Fold `entries` (just read as new) and the batches behind them until the stream is empty, stop()
        is called or time.monotonic() passes `until`; returns the events folded.

        Pipelined: each next batch is read, decoded and counted (CPU, here)
        while the one before it commits (mostly waiting for SQL), so the fold
        rate is what the slower of the two allows, not their sum. Commits
        still go one at a time, in stream order.
        """
        folded = 0
        ready = await self._prepare(entries)
        while ready is not None:
            commit = asyncio.ensure_future(self._commit(ready, contiguous=True))
            ready = None
            try:
                if not self._stopping and time.monotonic() < until:
                    more = await self._read(">", block=False)
                    if more:
                        ready = await self._prepare(more)
            finally:  # read or counted or not, the batch under way is committed (or fails) before anything else
                folded += (await commit).events
        return folded

    async def fold(self, entries: list, *, contiguous: bool) -> FoldResult:
        """Fold stream entries ((id, fields) pairs, in stream order) exactly once, then acknowledge them.

        `contiguous`: the entries are one run of the stream as XREADGROUP ">"
        hands them out (recorded as one range); claimed entries are not.
        """
        return await self._commit(await self._prepare(entries), contiguous=contiguous)

    async def _prepare(self, entries: list) -> _Batch:
        """Decode and count entries (no SQL but code lookups): what _commit then adds."""
        result = FoldResult()
        readable: list[tuple[bytes, str, Envelope]] = []
        acked: list[bytes] = []
        gaps = False
        for entry_id, fields in entries:
            try:
                readable.append((entry_id, position(entry_id), decode(fields)))
            except UnsupportedVersion as exc:
                result.unsupported += 1
                gaps = True
                log.warning("visit stream entry %s left for another reader: %s", entry_id, exc)
            except InvalidEntry as exc:
                result.invalid += 1
                acked.append(entry_id)
                log.error("visit stream entry %s skipped: %s", entry_id, exc)
        delta, bad = await self._count(readable)
        if bad:
            result.invalid += len(bad)
            acked.extend(bad)
            readable = [item for item in readable if item[0] not in bad]
        return _Batch(readable=readable, acked=acked, gaps=gaps, delta=delta, result=result)

    async def _commit(self, batch: _Batch, *, contiguous: bool) -> FoldResult:
        """Add a prepared batch in one transaction, leaving out what was folded before; then acknowledge it."""
        readable, delta, acked, result = batch.readable, batch.delta, batch.acked, batch.result
        duplicates: list[bytes] = []
        now = datetime.fromtimestamp(self.clock(), UTC)
        async with self._db.transaction() as session:
            await aggregates.lock_stream(session=session, stream=self._stream.key, now=now)
            done = await aggregates.folded_already(
                session=session, stream=self._stream.key, positions=[p for _, p, _ in readable]
            )
            if done:
                result.duplicates = len(done)
                duplicates = [entry_id for entry_id, p, _ in readable if p in done]
                readable = [item for item in readable if item[1] not in done]
                delta, _ = await self._count(readable)
            if not readable:
                ranges = []
            elif contiguous and not batch.gaps:
                ranges = [(readable[0][1], readable[-1][1])]
            else:
                ranges = [(p, p) for _, p, _ in readable]
            await aggregates.add(session=session, delta=delta)
            await aggregates.record_folded(session=session, stream=self._stream.key, ranges=ranges,
                                           events=delta.visits, now=now)
        committed = self.clock()
        acked.extend(duplicates)
        acked.extend(entry_id for entry_id, _, _ in readable)
        for _, _, envelope in readable:
            if envelope.visits:
                metrics.VISITS_FOLD_LAG.observe(max(0.0, committed - envelope.visits[0][0] / 1000))
        result.events = delta.visits
        result.entries = len(acked)
        self.folded += delta.visits
        metrics.TALLY.add(metrics.VISITS_FOLDED, delta.visits)
        if result.duplicates:
            metrics.TALLY.add(metrics.VISITS_DUPLICATES, result.duplicates)
            log.info("visit consumer %s skipped %d entries folded before", self.name, result.duplicates)
        if result.invalid:
            metrics.TALLY.add(metrics.VISITS_INVALID, result.invalid)
        if acked:
            try:
                await self._redis.xack(self._stream.key, self.group, *acked)
            except Exception as exc:  # folded all the same; a redelivery is skipped as a duplicate
                log.warning("visit consumer %s could not acknowledge %d entries: %s", self.name, len(acked), exc)
        return result

    async def _count(self, readable: list[tuple[bytes, str, Envelope]]) -> tuple[Delta, set[bytes]]:
        """The Delta of readable entries, and the ids of those that turned out malformed."""
        groups: defaultdict = defaultdict(int)
        orphans: defaultdict = defaultdict(lambda: [0, 0])
        visitors: dict = {}
        missing = self._missing_codes(readable)
        if missing:
            await self._resolve(missing)
        # Taken once: a fold preparing its next batch meanwhile may start a new map (_resolve).
        codes = self._codes
        bad: set[bytes] = set()
        visits = 0
        for entry_id, _, envelope in readable:
            try:
                visits += self._folder.count(envelope, groups, orphans, codes, visitors)
            except InvalidEntry as exc:
                bad.add(entry_id)
                log.error("visit stream entry %s skipped: %s", entry_id, exc)
            # After each entry (up to LINKGATE_VISITS_FLUSH_SIZE visits, ~20 ms): under `make run` this
            # shares the loop with redirects, and the commit of the batch before waits on it for its
            # next statement (every 4 entries made that wait most of the time the pipeline would save).
            await asyncio.sleep(0)
        return self._folder.delta(groups, orphans, visits, visitors), bad

    def _missing_codes(self, readable) -> set[str]:
        """Codes of redirects whose event has no link id (served from an old cache entry) not yet known."""
        missing = set()
        for _, _, envelope in readable:
            for visit in envelope.visits:
                try:
                    if visit[1] is None and visit[3] < 400 and visit[2] not in self._codes:
                        missing.add(visit[2])
                except (IndexError, TypeError):
                    pass  # malformed: count() says so
        return missing

    async def _resolve(self, codes: set[str]) -> None:
        async with self._db.reading() as session:
            found = await aggregates.link_ids(session=session, codes=[c for c in codes if isinstance(c, str)])
        # Nothing awaited from here on: the caller finds its codes in self._codes.
        if len(self._codes) > CODE_CACHE_SIZE:
            self._codes = {}  # a new map, not clear(): a count under way keeps the one it took
        for code in codes:
            self._codes[code] = found.get(code)

    async def prune(self) -> None:
        """Forget fold records and visitor hashes that no entry still in the stream can need."""
        now = self.clock()
        retention = self._stream.retention_ms / 1000
        folds_before = position_at(int((now - retention - 3600) * 1000))
        visitors_before = closed_before(now, retention)
        async with self._db.transaction() as session:
            forgotten = await aggregates.forget_old(session=session, stream=self._stream.key,
                                                    folds_before=folds_before, visitors_before=visitors_before)
        if forgotten:
            log.info("visit consumer %s forgot %d fold records and visitor hashes", self.name, forgotten)
        await self.roll_up(closed_before=visitors_before)

    async def roll_up(self, *, closed_before: date) -> list[date]:
        """Add up the monthly breakdowns of the months that ended before `closed_before` (no event of
        theirs can still arrive), each in a transaction of its own under the stream's lock; returns them."""
        async with self._db.reading() as session:
            months = await aggregates.months_to_roll_up(session=session, closed_before=closed_before)
        done = []
        for month in months:
            now = datetime.fromtimestamp(self.clock(), UTC)
            async with self._db.transaction() as session:
                await aggregates.lock_stream(session=session, stream=self._stream.key, now=now)
                if await aggregates.roll_up(session=session, month=month, now=now):
                    done.append(month)
        if done:
            log.info("visit consumer %s rolled up the monthly stats of %s", self.name,
                     ", ".join(f"{month:%Y-%m}" for month in done))
        return done
