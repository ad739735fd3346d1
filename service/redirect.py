"""The hot path: GET/HEAD /<code> -> 301/302/307/308 with the filtered Location.

LinkgateApp.__call__ (service.app) hands these requests to the gateway here
before FastAPI is called at all, so a redirect never pays for routing,
dependency injection, middleware or response models. Lookups go:

1. this process's memory (bounded, entries live settings.local_cache_ttl_seconds,
   which bounds how stale another replica's edit can look here);
2. Redis, one round trip, coalesced with the other lookups under way into
   one MGET (store.cache);
3. SQL (the read replica when configured): codes missed together are loaded
   together in one SELECT, one load per code at a time in this process; the
   answers, found or not, are written back to Redis behind the response. A
   code the replica lacks is asked of the primary before it is called unknown.

Anything that is not a single path segment shaped like a code, or is one of
the service's own reserved words, goes on to FastAPI untouched.

A link with a password (its cached entry says so, no SQL read) gets the
password form instead, or, with the right ``X-Link-Password`` header, its
redirect (service.pages.password); a QR code's ``qr=1`` marker is stripped
from the query here (service.pages.marker).

Every answered visit (a redirect, a 404) is handed to the visit recorder
(service.visits.recorder) as it stands: a tuple appended to a list, no I/O
and no parsing here; the recorder's flusher does the rest off the path.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import os
import time
from collections.abc import Callable

from . import metrics
from .access_log import AccessLog
from .batching import Coalescer
from .codes import CODE_PATTERN, is_reserved
from .config import Settings
from .access.addresses import ClientAddresses
from .access.keys import redact
from .access.limiter import ScanGuard
from .errors import PROBLEM_TYPE_PREFIX, StorageUnavailable
from .query_filter import CompiledFilter, FilterLimits, QueryPolicy, SplitTarget, compile_filter
from .store import sql
from .lifecycle.gone import GONE_HTML, gone_location
from .lifecycle.state import Lifecycle, LinkStatus
from .lifecycle.visit_limits import VisitLimits
from .pages.marker import MARKER as QR_MARKER, strip_marker
from .pages.render import SECURITY_HEADERS, accepts_json
from .store.cache import MISSING, CacheUnavailable, CachedLink, LinkCache, cached_link
from .visits.recorder import LINK_ID, VisitRecorder

log = logging.getLogger("linkgate.redirect")

PERMANENT = frozenset({301, 308})
# A code the read replica does not have: the primary decides (Redirector._load_many).
UNCONFIRMED = object()
_NO_STORE = b"private, no-store"

_NOT_FOUND_HTML = (
    b"<!doctype html><html lang=en><meta charset=utf-8><title>Link not found</title>"
    b"<h1>Link not found</h1><p>This short link does not exist or was removed.</p></html>"
)


# Destination._parts of a link visited once with a query string.
_CUT_ONCE = object()


class Destination:
    """A link as the redirect needs it.

    Links without a query policy of their own share one compiled filter
    (the operator's default); a link with its own policy compiles it on
    first use. A visit without a query string to a link that adds no
    parameters goes straight to the stored URL. The target is cut for the
    filter on a visit with a query string, and the parts are kept from the
    second such visit on (see `location`).
    """

    __slots__ = ("status", "url", "link_id", "plain_location", "cache_control", "lifecycle", "_policy", "_limits",
                 "_filter", "_parts")

    def __init__(self, *, status: int, url: str, cache_control: bytes, policy: QueryPolicy,
                 limits: FilterLimits, compiled: CompiledFilter | None = None,
                 lifecycle: Lifecycle | None = None, link_id: int | None = None) -> None:
        """`compiled`: the policy's filter when it is already built (the shared default's).
        `lifecycle`: None for a plain live link, which is what keeps those links' redirect unchanged.

        `link_id`: the row id visit events name the link by (None from a
        cache entry written before ids were cached; the consumer then finds
        it by the code).
        """
        self.status = status
        self.link_id = link_id
        self.url = url
        self.cache_control = cache_control
        self.lifecycle = lifecycle
        # The Location of a visit without a query string, when the policy adds nothing.
        self.plain_location: bytes | None = None if policy.add else url.encode("latin-1")
        self._policy = policy
        self._limits = limits
        self._filter = compiled
        self._parts: SplitTarget | object | None = None  # None, _CUT_ONCE or the kept parts

    @property
    def filter(self) -> CompiledFilter:
        if self._filter is None:
            self._filter = compile_filter(self._policy, self._limits)
        return self._filter

    def location(self, raw_query: bytes) -> tuple[bytes, int]:
        """The Location header for a visitor's query string, and how many parameters a limit dropped."""
        if not raw_query and self.plain_location is not None:
            return self.plain_location, 0
        filter_ = self.filter
        parts = self._parts
        if parts is None:
            # Kept only from a second visit: parts kept on every entry of the in-process cache
            # are ~6 objects the garbage collector tracks, where the entry is one. Under visits
            # spread over many links, each entry seen once, they filled the young generation
            # ~7 times as fast, and each young collection paused the process 10-60 ms.
            self._parts = _CUT_ONCE
            parts = filter_.split(self.url)
        elif parts is _CUT_ONCE:
            parts = self._parts = filter_.split(self.url)
        location, dropped = filter_.apply_split(parts, raw_query.decode("latin-1"))  # type: ignore[arg-type]
        return location.encode("latin-1"), dropped


# --- request ids -------------------------------------------------------------

_request_counter = itertools.count(1)
_process_tag = f"{os.getpid():x}-{int(time.time()):x}"


def new_request_id() -> str:
    """Unique per process start and request, and far cheaper than a uuid4."""
    return f"{_process_tag}-{next(_request_counter):x}"


def request_id_of(scope) -> bytes:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and 0 < len(value) <= 128 and value.isascii():
            return value
    return new_request_id().encode()


# --- lookups -----------------------------------------------------------------


class Redirector:
    """Finds where a code goes, through the local cache, Redis, then SQL."""

    def __init__(
        self,
        *,
        settings: Settings,
        cache: LinkCache,
        db: sql.Database,
        limits: FilterLimits,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cache = cache
        self._db = db
        self._limits = limits
        # One compiled filter for every link that has no policy of its own.
        self._default_filter = compile_filter(None, limits)
        self._clock = clock
        self._local: dict[str, tuple[float, Destination | None]] = {}
        self._local_size = settings.local_cache_size
        self._local_ttl = settings.local_cache_ttl_seconds
        # SQL loads: codes missed together are looked up together, one load per code at a time.
        self._loads: Coalescer[str, Destination | None] = Coalescer(self._load_many, max_in_flight=4, max_batch=500)
        # With a read replica: its misses, asked of the primary (see _load_many).
        self._primary_loads: Coalescer[str, Destination | None] = Coalescer(
            functools.partial(self._load_many, primary=True), max_in_flight=4, max_batch=500)
        self._background: set[asyncio.Task] = set()
        self.retry_after = str(settings.sql_retry_after_seconds).encode()
        self._permanent_cc = f"public, max-age={settings.permanent_redirect_max_age}".encode()
        self._local_hit = metrics.CACHE_LOOKUPS.labels(layer="local", result="hit")
        self._redis_hit = metrics.CACHE_LOOKUPS.labels(layer="redis", result="hit")
        self._redis_miss = metrics.CACHE_LOOKUPS.labels(layer="redis", result="miss")
        self._redis_error = metrics.CACHE_LOOKUPS.labels(layer="redis", result="error")

    async def aclose(self) -> None:
        """Let the Redis fills already under way finish (bounded by Redis's socket timeout)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def forget(self, code: str) -> None:
        self._local.pop(code, None)

    def forget_all(self) -> None:
        self._local.clear()

    def destination(self, link: CachedLink) -> Destination:
        if link.query_policy:
            policy, compiled = QueryPolicy.model_validate(link.query_policy), None
        else:
            policy, compiled = self._default_filter.policy, self._default_filter
        return Destination(
            status=link.redirect_status,
            url=link.url,
            cache_control=self._permanent_cc if link.redirect_status in PERMANENT else _NO_STORE,
            policy=policy,
            limits=self._limits,
            compiled=compiled,
            lifecycle=Lifecycle.from_cached(link.lifecycle) if link.lifecycle else None,
            link_id=link.id,
        )

    async def find(self, code: str) -> Destination | None:
        """Where the code leads, None if nowhere; StorageUnavailable if SQL was needed and down."""
        now = self._clock()
        held = self._local.get(code)
        if held is not None and held[0] > now:
            metrics.TALLY.add(self._local_hit)
            return held[1]
        try:
            cached = await self._cache.get(code)
        except CacheUnavailable:
            metrics.TALLY.add(self._redis_error)
            cached = None
        else:
            if cached is None:
                metrics.TALLY.add(self._redis_miss)
        if cached is None:
            # Another request may have loaded the code from SQL while this one
            # waited for Redis (which the load fills only afterwards).
            held = self._local.get(code)
            if held is not None and held[0] > now:
                return held[1]
            # _load_many has put the answer in the local cache already.
            destination = await self._loads.get(code)
            if destination is UNCONFIRMED:
                destination = await self._primary_loads.get(code)
            return destination
        else:
            metrics.TALLY.add(self._redis_hit)
            destination = None if cached is MISSING else self.destination(cached)
        self._remember(code, destination, now)
        return destination

    def _remember(self, code: str, destination: Destination | None, now: float) -> None:
        if self._local_size <= 0 or self._local_ttl <= 0:
            return
        local = self._local
        if code not in local and len(local) >= self._local_size:
            self._evict_oldest()
        local[code] = (now + self._local_ttl, destination)

    def _evict_oldest(self) -> None:
        """Make room by dropping the oldest eighth of the entries (dicts keep insertion order).

        One at a time would cost more than the lookup it serves: after many
        deletions at its front, a dict's first key is found only by stepping
        over every deleted slot until the dict next compacts itself (profiled
        at 15% of a redirect's time with a full cache of 50,000).
        """
        local = self._local
        for code in list(itertools.islice(local, max(1, self._local_size // 8))):
            del local[code]

    async def _load_many(self, codes: list[str], *, primary: bool = False) -> list[Destination | None]:
        """One SQL query for a batch of codes; what it finds (or not) is written back to Redis.

        With a read replica, a code the replica does not have may be younger
        than the replica's lag (created a moment ago on the primary): it is
        answered UNCONFIRMED, neither remembered nor cached as unknown, and
        find() asks the primary (primary=True), whose answer is the one kept.
        So a fresh link redirects at once however far the replica lags, and
        unknown codes cost one primary query per code per miss TTL.
        """
        try:
            async with self._db.read_connection(primary=primary) as connection:
                rows = await sql.find_targets(connection=connection, codes=codes)
        except StorageUnavailable:
            metrics.SQL_ERRORS.labels(operation="redirect").inc()
            raise
        unconfirmed = self._db.has_replica and not primary
        found: dict[str, CachedLink | None] = {}
        destinations: list[Destination | None] = []
        now = self._clock()
        for code in codes:
            row = rows.get(code)
            if row is None and unconfirmed:
                destinations.append(UNCONFIRMED)
                continue
            link = None if row is None else cached_link(row, deleted=row.deleted)
            found[code] = link
            destination = None if link is None else self.destination(link)
            destinations.append(destination)
            # Remembered before the callers hear back and before Redis is
            # filled, so a request whose Redis miss lands in between finds it
            # here instead of starting a second load.
            self._remember(code, destination, now)
        # Visitors get their answer now; Redis is filled behind them.
        task = asyncio.get_running_loop().create_task(self._cache.put_many(found))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return destinations


# --- the ASGI middleware -------------------------------------------------------


class RedirectGateway:
    """Answers GET/HEAD /<code> before FastAPI sees the request (see service.app).

    It runs outside FastAPI's and Starlette's own per-request machinery
    (telemetry checks, error middleware, routing), so it guards its own
    errors: a visitor gets a 500 problem, never a dropped connection.
    """

    def __init__(self, *, access_log: AccessLog | None = None, client_addresses: ClientAddresses | None = None) -> None:
        # Set by the app's lifespan; until then every request goes to FastAPI.
        self.redirector: Redirector | None = None
        # The unknown-code limit: consulted only for codes that do not exist.
        self.scan_guard: ScanGuard | None = None
        # Lifecycle: consulted only for links that have one (Destination.lifecycle).
        self.visit_limits: VisitLimits | None = None
        self.wall_clock: Callable[[], float] = time.time
        self.gone_redirect_url: str | None = None
        self.permanent_max_age = 3600
        # Visit events (LINKGATE_TRACKING); None: none are made.
        self.recorder: VisitRecorder | None = None
        # The visitor pages (service.pages): the 404/410 bodies, and what password links get.
        self.not_found_html = _NOT_FOUND_HTML
        self.gone_html = GONE_HTML
        self.password_gate = None
        self._addresses = client_addresses or ClientAddresses(())
        self._access_log = access_log
        self._redirects = {s: metrics.REDIRECTS.labels(status=str(s)) for s in (301, 302, 307, 308)}
        self._requests: dict[tuple[str, int], object] = {}
        self._latency = {m: metrics.LATENCY.labels(method=m, route="/{code}") for m in ("GET", "HEAD")}

    def code_of(self, scope) -> str | None:
        """The code a request asks to be redirected by, or None if it is not a redirect."""
        if self.redirector is None or scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            return None
        code = scope["path"][1:]
        if not CODE_PATTERN.fullmatch(code) or is_reserved(code):
            return None
        return code

    async def serve(self, code: str, scope, send) -> None:
        """Answer a redirect request (code_of said it is one)."""
        redirector = self.redirector
        started = time.perf_counter()
        request_id = request_id_of(scope)
        try:
            status = await self._redirect(redirector, code, scope, send, request_id)
        except Exception:
            log.exception("redirect of %s failed", code)
            status = 500
            try:
                await self._problem(send, scope, request_id, 500, "internal", "Internal error",
                                    "Something went wrong on our side.")
            except Exception:  # the response had started (the client went away mid-send)
                log.debug("could not send the 500 for %s", code)
        elapsed = time.perf_counter() - started
        method = scope["method"]
        self._observe(method, status, elapsed)
        if self._access_log is not None:
            self._access_log.record(method, "/{code}", scope["path"], status, request_id.decode(), elapsed)
        if self.recorder is not None:
            self.recorder.record(code, status, scope)

    async def _redirect(self, redirector: Redirector, code: str, scope, send, request_id: bytes) -> int:
        try:
            destination = await redirector.find(code)
        except StorageUnavailable:
            await self._problem(send, scope, request_id, 503, "storage-unavailable",
                                "Storage unavailable", "The link store cannot be reached; try again shortly.",
                                extra_headers=[(b"retry-after", redirector.retry_after)])
            return 503
        if destination is None:
            return await self._unknown(send, scope, request_id, code)
        scope[LINK_ID] = destination.link_id  # for the visit event: see serve
        cache_control = destination.cache_control
        lifecycle = destination.lifecycle
        if lifecycle is not None:
            now = self.wall_clock()
            standing = lifecycle.standing(now)
            if standing is LinkStatus.SCHEDULED:
                return await self._unknown(send, scope, request_id, code)  # not public yet
            if standing is None and lifecycle.protected:
                # The form, or a refusal: never the target, never counted (a 200 or 4xx is no visit).
                answer = await self.password_gate.check_header(code, scope)
                if answer is not None:
                    return await answer.send(send, scope, request_id)
                # Opened by its header: no browser or proxy may keep this redirect for the next visitor.
                cache_control = _NO_STORE
            if standing is None and lifecycle.max_visits is not None:
                if not await self.visit_limits.admit(code, lifecycle.max_visits, scope):
                    standing = LinkStatus.EXHAUSTED
            if standing is not None:
                return await self._gone(send, scope, request_id, code, lifecycle.fallback)
            if lifecycle.until is not None and destination.status in PERMANENT and not lifecycle.protected:
                # A browser keeps a permanent redirect: never past the moment the link expires.
                left = max(0, int(lifecycle.until - now))
                cache_control = f"public, max-age={min(left, self.permanent_max_age)}".encode()
        raw_query = scope["query_string"]
        if raw_query and raw_query.startswith(QR_MARKER):  # one comparison for a query without it
            raw_query = strip_marker(raw_query, scope)
        location, dropped = destination.location(raw_query)
        if dropped:
            metrics.TALLY.add(metrics.QUERY_PARAMS_DROPPED, dropped)
        status = destination.status
        await send({
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"location", location),
                (b"cache-control", cache_control),
                (b"content-length", b"0"),
                (b"x-request-id", request_id),
            ],
        })
        await send({"type": "http.response.body", "body": b""})
        metrics.TALLY.add(self._redirects[status])
        return status

    async def _unknown(self, send, scope, request_id: bytes, code: str) -> int:
        """404 for a code that does not exist (or is not public yet), under the unknown-code limit."""
        limit_headers: list = []
        guard = self.scan_guard
        if guard is not None:
            standing = guard.note(self._addresses.of(scope))
            if standing is not None:
                allowed, limit_headers, retry_after = standing
                if not allowed:
                    await self._problem(
                        send, scope, request_id, 429, "rate-limited", "Too many requests",
                        "Too many unknown codes from this address; try again later.",
                        extra_headers=[(b"retry-after", str(retry_after).encode()), *limit_headers],
                    )
                    return 429
        await self._not_found(send, scope, request_id, code, limit_headers)
        return 404

    async def answer_unknown(self, scope, send, code: str) -> int:
        """The redirect's own 404 (or 429) for `code`, for the visitor pages' routes."""
        return await self._unknown(send, scope, request_id_of(scope), code)

    async def answer_gone(self, scope, send, code: str, fallback: str | None) -> int:
        """The redirect's own answer for a link that is no longer live, for the visitor pages' routes."""
        return await self._gone(send, scope, request_id_of(scope), code, fallback)

    async def _gone(self, send, scope, request_id: bytes, code: str, fallback: str | None) -> int:
        """The link's fallback, the operator's gone URL, or 410 (see service.lifecycle.gone)."""
        location = gone_location(fallback, self.gone_redirect_url)
        if location is not None:
            await send({"type": "http.response.start", "status": 302, "headers": [
                (b"location", location), (b"cache-control", b"no-store"), (b"content-length", b"0"),
                (b"x-request-id", request_id),
            ]})
            await send({"type": "http.response.body", "body": b""})
            return 302
        if accepts_json(scope):
            await self._problem(send, scope, request_id, 410, "link-gone", "Link gone",
                                f"The link '{code}' has expired, run out or been switched off.")
            return 410
        body = self.gone_html
        await send({"type": "http.response.start", "status": 410, "headers": [
            (b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"), (b"x-request-id", request_id), *SECURITY_HEADERS,
        ]})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
        return 410

    def _observe(self, method: str, status: int, elapsed: float) -> None:
        counter = self._requests.get((method, status))
        if counter is None:
            counter = metrics.REQUESTS.labels(method=method, route="/{code}", status=str(status))
            self._requests[(method, status)] = counter
        metrics.TALLY.add(counter)
        self._latency[method].observe(elapsed)

    async def _not_found(self, send, scope, request_id: bytes, code: str, extra_headers: list) -> None:
        if accepts_json(scope):
            await self._problem(send, scope, request_id, 404, "link-not-found", "Link not found",
                                f"No link has the code '{code}'.", extra_headers=extra_headers)
            return
        page = self.not_found_html
        body = b"" if scope["method"] == "HEAD" else page
        await send({
            "type": "http.response.start",
            "status": 404,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(page)).encode()),
                (b"cache-control", b"no-store"),
                (b"x-request-id", request_id),
                *SECURITY_HEADERS,
                *extra_headers,
            ],
        })
        await send({"type": "http.response.body", "body": body})

    async def _problem(self, send, scope, request_id: bytes, status: int, kind: str, title: str,
                       detail: str, extra_headers: list | None = None) -> None:
        body = json.dumps({
            "type": PROBLEM_TYPE_PREFIX + kind, "title": title, "status": status,
            "detail": redact(detail), "instance": redact(scope["path"]),
        }).encode()
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            (b"x-request-id", request_id),
            *(extra_headers or []),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
