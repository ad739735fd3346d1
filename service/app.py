"""create_app(settings) and the lifespan that opens and closes every client."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from . import __version__, metrics
from .access.addresses import ClientAddresses
from .access.gate import AccessGate
from .access.keys import KeyService
from .access.limiter import ApiLimiter, ScanGuard
from .access.policy import Permissions
from .access.rates import parse_rate
from .api import auth, health, keys as keys_api, links as links_api, problems, stats as stats_api
from .api import webhooks as webhooks_api
from .codes import CodeCodec
from .coordination.changes import LinkChanges
from .coordination.coordinator import LOCK_NAME, Coordinator
from .coordination.expiry import ExpiryTimers
from .coordination.lock import FencedLock
from .coordination.relay import OutboxRelay
from .coordination.webhooks import Deliverer, checked_client
from .config import Settings
from .lifecycle.visit_limits import VisitLimits
from .access_log import AccessLog
from .links import LinkService
from .log_writer import SHUTDOWN_FLUSH_SECONDS, stdout_writer
from .observability import HEAD_AS_GET, RequestContext, configure_logging
from .pages import password as password_pages, preview as preview_pages, qr as qr_pages
from .pages.assets import asset_router
from .pages.password import PasswordGate
from .pages.render import Pages
from .pages import console
from .query_filter import FilterLimits
from .redirect import RedirectGateway, Redirector
from .store import sql
from .store.cache import LinkCache
from .targets import TargetRules
from .visits.consumer import VisitConsumer
from .visits.recorder import VisitRecorder
from .visits.stats import VisitStats

log = logging.getLogger("linkgate")

# The largest request body read: a link with the longest URL and the
# largest query policy the settings allow is well under 64 KiB.
MAX_BODY_BYTES = 64 * 1024

DESCRIPTION = """\
Create short links over this API; browsers that follow `/{code}` get a
301/302/307/308 to the long URL, with their query string passed through the
link's gateway query policy. Every error is RFC 9457 problem JSON.
"""


def open_redis(settings: Settings):
    """The Redis client: a real one when LINKGATE_REDIS_URL is set (a cluster's with
    LINKGATE_REDIS_CLUSTER), else in-process fakeredis."""
    if settings.redis_url:
        options = dict(
            socket_connect_timeout=0.5,
            # No per-read timeout: LinkCache puts one deadline on each round trip.
            socket_timeout=None,
            health_check_interval=30,
            max_connections=64,  # per node, on a cluster
        )
        if settings.redis_cluster:
            from .store.cluster import open_cluster

            return open_cluster(settings.redis_url, **options)
        import redis.asyncio as redis

        return redis.Redis.from_url(settings.redis_url, **options)
    import fakeredis

    return fakeredis.FakeAsyncRedis()


class LinkgateApp(FastAPI):
    """FastAPI with the redirect gateway in front of everything it does per request.

    FastAPI.__call__ checks for OpenTelemetry providers (environment lookups)
    and Starlette adds its error middleware and routing; a redirect should pay
    for none of it, so the gateway answers before FastAPI is called at all.
    """

    def __init__(self, *, access_log: AccessLog | None, client_addresses: ClientAddresses, **kwargs) -> None:
        super().__init__(**kwargs)
        self.access_log = access_log
        self.redirect_gateway = RedirectGateway(access_log=access_log, client_addresses=client_addresses)

    def openapi(self) -> dict:
        if self.openapi_schema is None:
            auth.document_security(problems.document_media_type(super().openapi()))
        return self.openapi_schema

    async def __call__(self, scope, receive, send) -> None:
        code = self.redirect_gateway.code_of(scope)
        if code is not None:
            return await self.redirect_gateway.serve(code, scope, send)
        if scope["type"] == "http" and scope["method"] == "HEAD":
            # HEAD is GET without the body (RFC 9110 9.3.2), on every route
            # that answers GET: probes and link checkers use it.
            # (Counted and logged as HEAD: see HEAD_AS_GET.)
            as_get = {**scope, "method": "GET", HEAD_AS_GET: True}
            return await super().__call__(as_get, receive, _without_body(send))
        if scope["type"] == "http" and _declared_length(scope) > _body_limit(scope["path"]):
            # Refused before a byte of it is read, as problem JSON.
            response = problems.problem(
                413, "too-large", "Request body too large",
                f"The body is larger than {_body_limit(scope['path'])} bytes.", instance=scope["path"],
            )
            return await response(scope, receive, send)
        await super().__call__(scope, receive, send)


def serve_docs_from_package(app: FastAPI) -> None:
    """/docs: Swagger UI from the files fastapi-offline ships, not from a CDN.

    So the API docs work in an air-gapped cluster, and no page linkgate
    serves loads anything from another host (Swagger UI's online validator
    badge included: it is switched off). StaticFiles finds the package's
    files at start, so a missing package fails then, not on the first visit.
    """
    files = "/docs/static"
    app.mount(files, StaticFiles(packages=[("fastapi_offline", "static")]), name="docs-static")
    title = app.title

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url, title=f"{title} - Swagger UI",
            swagger_js_url=f"{files}/swagger-ui-bundle.js", swagger_css_url=f"{files}/swagger-ui.css",
            swagger_favicon_url=f"{files}/favicon.png", swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> RedirectResponse:
        # ReDoc's bundle loads its logo from its vendor's CDN whatever it is
        # told, so the one set of docs is Swagger UI's; old links land there.
        return RedirectResponse("/docs", status_code=308)


def _without_body(send):
    """`send` for a HEAD request served as GET: the same status and headers, no body."""

    async def send_head(message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return send_head


def _body_limit(path: str) -> int:
    return links_api.BATCH_MAX_BODY_BYTES if path == "/api/v1/links/batch" else MAX_BODY_BYTES


def _declared_length(scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


async def _every_second_flush_metrics() -> None:
    while True:
        await asyncio.sleep(1.0)
        metrics.TALLY.flush()


async def _drain_invalidations_forever(service: LinkService, every_seconds: float) -> None:
    """Drop cache entries left stale while Redis was away (writes remembered them in SQL)."""
    while True:
        await asyncio.sleep(every_seconds)
        try:
            dropped = await service.drain_pending_invalidations()
            if dropped:
                log.info("dropped %d cache entries left stale while redis was away", dropped)
        except Exception as exc:  # SQL or Redis away: try again next round
            log.debug("pending invalidations not drained: %s", exc)


async def _every_while_share_unknown_codes(guard: ScanGuard, every_seconds: float) -> None:
    while True:
        await asyncio.sleep(every_seconds)
        await guard.flush()


# How often each process shares its count of unknown codes per address.
SCAN_FLUSH_SECONDS = 0.5

# At shutdown: how long the last visit events may take to reach the stream,
# and (with the in-process consumer) the stream to be folded into SQL.
VISITS_SEND_SECONDS = 5.0
VISITS_DRAIN_SECONDS = 15.0


async def _close_visits(recorder: VisitRecorder | None, consumer: VisitConsumer | None,
                        consumer_task: asyncio.Task | None) -> None:
    """Send the last visit events, then (in-process consumer) fold what the stream holds.

    Under `make run` the stream lives in this process's fakeredis and dies
    with it: only what is folded into SQL here survives the exit.
    """
    if recorder is not None:
        await recorder.close(timeout_seconds=VISITS_SEND_SECONDS)
    if consumer is not None and consumer_task is not None:
        consumer.stop()  # it finishes the fold under way, then returns
        await asyncio.wait({consumer_task}, timeout=VISITS_DRAIN_SECONDS)
        if not consumer_task.done():
            consumer_task.cancel()  # a fold cut short rolls back; drain folds its entries again
            await asyncio.wait({consumer_task}, timeout=1.0)
    if consumer is not None:
        try:
            if not await consumer.drain(timeout_seconds=VISITS_DRAIN_SECONDS):
                log.error("visit events left unfolded at shutdown: the stream keeps them for the next consumer")
        except Exception as exc:  # Redis or SQL away: what is in the stream stays there
            log.error("visit events not folded at shutdown: %s", exc)

# At shutdown: how long the background tasks get to stop once cancelled.
TASK_STOP_SECONDS = 5.0


async def stop_tasks(tasks: list[asyncio.Task], *, timeout_seconds: float) -> None:
    """Cancel the tasks and wait for them, cancelling again those that swallowed it; bounded.

    A cancel can be lost: fakeredis's asyncio client (the embedded default)
    swallows a CancelledError that arrives during a command, and the task
    then waits on as if nothing happened. So the cancel is repeated until the
    task ends, and the shutdown goes on after `timeout_seconds` whatever
    happens (logging the tasks left).
    """
    deadline = asyncio.get_running_loop().time() + timeout_seconds
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            log.error("background tasks did not stop at shutdown: %s", sorted(t.get_name() for t in pending))
            return
        _, pending = await asyncio.wait(pending, timeout=min(0.1, left))
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("background task %s ended with %r", task.get_name(), task.exception())


# Collections of the young generations at most every GC_THRESHOLDS[0] net
# allocations of tracked objects, instead of Python's 700 (see tune_garbage_collector).
GC_THRESHOLDS = (50_000, 20, 100)


def tune_garbage_collector() -> None:
    """Set the cyclic garbage collector up for a long-running redirect server.

    Everything made before serving (the imported framework, the app, its
    clients) lives as long as the process: freezing it keeps full passes
    from walking ~130,000 such objects, a ~130 ms pause each time that
    showed in redirect tail latency.

    The in-process link cache then churns: with many links visited, every
    entry lives a second or two, long enough to survive the young
    collections and be promoted, and short enough to die soon after.
    Under Python's default thresholds that meant a young collection every
    700 allocations and a full pass every second or so: 13% of a redirect's
    CPU and 75 ms at p99 (uniform visits over 1,000,000 links with a query
    to filter). The thresholds above keep cycles collected (a full pass
    still comes after 20 x 100 young ones) at a fraction of that cost.
    Redirects make no reference cycles; the rare ones of errors wait a
    little longer. What an entry holds counts as much: a young collection
    walks every object made since the last, 10-60 ms for ~50,000 here, so
    entries keep no per-link objects for one visit (Destination.location).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def create_app(
    settings: Settings | None = None,
    *,
    redis_client=None,
    configure_logs: bool = True,
    tune_gc: bool = True,
) -> LinkgateApp:
    """The whole service as an ASGI app; nothing connects until its lifespan starts."""
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: LinkgateApp) -> AsyncIterator[None]:
        # Access lines and (with configure_logs) every other log line go
        # through this; its drops are counted with the other metrics.
        writer = stdout_writer(settings.log_buffer_lines)
        drops = (metrics.LOG_LINES_DROPPED, writer.take_dropped)
        metrics.TALLY.sources.append(drops)
        if configure_logs:
            configure_logging(settings.log_level, writer=writer)
        if app.access_log is not None:
            app.access_log.write = writer.write
        if settings.uses_dev_salt:
            log.warning("LINKGATE_HASHIDS_SALT is not set: using the development salt")
        db = sql.Database.open(
            settings.database_url, settings.database_read_url, pool_size=settings.database_pool_size
        )
        redis_client_ = redis_client if redis_client is not None else open_redis(settings)
        cache = LinkCache(
            redis_client_,
            prefix=settings.redis_key_prefix,
            ttl_seconds=settings.cache_ttl_seconds,
            miss_ttl_seconds=settings.cache_miss_ttl_seconds,
        )
        limits = FilterLimits.from_settings(settings)
        redirector = Redirector(settings=settings, cache=cache, db=db, limits=limits)
        service = LinkService(
            settings=settings,
            db=db,
            cache=cache,
            codec=CodeCodec(
                salt=settings.effective_salt,
                min_length=settings.hashids_min_length,
                alphabet=settings.hashids_alphabet,
            ),
            target_rules=TargetRules.from_settings(settings),
            filter_limits=limits,
        )
        service.on_change.append(redirector.forget)
        changes = LinkChanges(redis_client_, prefix=settings.redis_key_prefix, forget=redirector.forget)
        service.changes = changes
        webhook_client = checked_client(allow_private=settings.webhook_allow_private,
                                        timeout_seconds=settings.webhook_timeout_seconds)
        coordinator = Coordinator(
            db=db,
            lock=FencedLock(redis_client_, LOCK_NAME, prefix=settings.redis_key_prefix,
                            ttl_seconds=settings.lock_ttl_seconds),
            relay=OutboxRelay(db=db, redis=redis_client_, prefix=settings.redis_key_prefix,
                              max_length=settings.events_stream_max_length, clock=service.clock),
            timers=ExpiryTimers(db=db, redis=redis_client_, prefix=settings.redis_key_prefix, clock=service.clock),
            deliverer=Deliverer(db=db, client=webhook_client, max_attempts=settings.webhook_max_attempts,
                                clock=service.clock),
            relay_interval=settings.events_relay_interval_seconds,
            expiry_interval=settings.expiry_interval_seconds,
            clock=service.clock,
        )
        changes.on_commit = coordinator.wake
        app.state.changes, app.state.coordinator = changes, coordinator
        permissions = Permissions.from_settings(settings)
        keys = KeyService(
            db=db, permissions=permissions, pepper=settings.api_key_pepper,
            cache_ttl_seconds=settings.api_key_cache_ttl_seconds,
        )
        scan_guard = ScanGuard(
            redis_client_, prefix=settings.redis_key_prefix,
            rate=parse_rate(settings.unknown_code_limit_per_address),
        )
        app.state.db, app.state.cache, app.state.links, app.state.redirector = db, cache, service, redirector
        app.state.permissions, app.state.keys, app.state.scan_guard = permissions, keys, scan_guard
        app.state.api_limiter = ApiLimiter(redis_client_, prefix=settings.redis_key_prefix)
        app.state.visit_stats = VisitStats(db=db)
        recorder = consumer = consumer_task = None
        if settings.tracking:
            recorder = VisitRecorder.from_settings(settings, redis=redis_client_, addresses=client_addresses)
            app.redirect_gateway.recorder = recorder
        if settings.visits_consumer_in_process:
            consumer = VisitConsumer.from_settings(settings, redis=redis_client_, db=db)
        app.state.visit_recorder, app.state.visit_consumer = recorder, consumer
        visit_limits = VisitLimits(redis_client_, db, prefix=settings.redis_key_prefix,
                                   count_bots=settings.max_visits_count_bots)
        service.visit_limits = visit_limits
        gateway = app.redirect_gateway
        gateway.scan_guard, gateway.visit_limits = scan_guard, visit_limits
        gateway.gone_redirect_url = settings.gone_redirect_url
        gateway.permanent_max_age = settings.permanent_redirect_max_age
        app.state.visit_limits = visit_limits
        gateway.password_gate = app.state.password_gate = PasswordGate.from_settings(
            settings, db=db, limiter=app.state.api_limiter, addresses=client_addresses, pages=pages,
        )
        gateway.redirector = redirector
        # (Tests that start many apps in one process pass tune_gc=False.)
        if tune_gc:
            tune_garbage_collector()
        tasks = [
            asyncio.create_task(_drain_invalidations_forever(service, 5.0)),
            asyncio.create_task(_every_second_flush_metrics()),
            asyncio.create_task(keys.flush_last_used_forever()),
            asyncio.create_task(_every_while_share_unknown_codes(scan_guard, SCAN_FLUSH_SECONDS)),
            asyncio.create_task(visit_limits.flush_forever()),
            asyncio.create_task(changes.publish_forever()),
            asyncio.create_task(changes.listen_forever()),
        ]
        if settings.coordination_in_process:
            tasks.append(asyncio.create_task(coordinator.run_forever()))
        if recorder is not None:
            tasks.append(asyncio.create_task(recorder.run()))
        if consumer is not None:
            consumer_task = asyncio.create_task(consumer.run())
        try:
            yield
        finally:
            app.redirect_gateway.redirector = None
            app.redirect_gateway.recorder = None
            changes.stop()
            coordinator.stop()
            await stop_tasks(tasks, timeout_seconds=TASK_STOP_SECONDS)
            await _close_visits(recorder, consumer, consumer_task)
            metrics.TALLY.flush()
            with contextlib.suppress(Exception):  # SQL away: the last minute's last_used_at is lost
                await keys.flush_last_used()
            with contextlib.suppress(Exception):  # SQL away: reloaded counters may admit these again
                await visit_limits.flush()
            metrics.TALLY.sources.remove(drops)
            await redirector.aclose()
            await service.aclose()
            with contextlib.suppress(Exception):  # Redis away: the others' copies live out their TTL
                await changes.flush()
            await webhook_client.aclose()
            if redis_client is None:
                await redis_client_.aclose()
            await db.close()
            # Every line of the requests served, out before the process exits
            # (bounded: a stalled stdout cannot hold the shutdown).
            await asyncio.to_thread(writer.close, SHUTDOWN_FLUSH_SECONDS)

    client_addresses = ClientAddresses(settings.trusted_proxies)
    # Rendered now: a broken LINKGATE_TEMPLATES_DIR stops the start, not a visitor's page.
    pages = Pages.from_settings(settings)
    app = LinkgateApp(
        access_log=AccessLog() if settings.access_lines else None,
        client_addresses=client_addresses,
        # Stops bodies sent without Content-Length (chunked) as they arrive;
        # bodies that declare a larger length are refused in __call__.
        max_body_size=MAX_BODY_BYTES,
        title="linkgate",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # /docs from package files, /redoc sent there: serve_docs_from_package
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.client_addresses = client_addresses
    app.state.rate_per_key = parse_rate(settings.rate_limit_per_key)
    app.state.rate_per_address = parse_rate(settings.rate_limit_per_address)
    problems.install(app)
    app.include_router(links_api.router)
    app.include_router(keys_api.router)
    app.include_router(links_api.tags_router)
    app.include_router(stats_api.router)
    app.include_router(webhooks_api.router)
    app.include_router(health.router)
    # The visitor pages (service.pages); the gateway answers GET /{code} before any of these.
    app.state.pages = pages
    app.redirect_gateway.not_found_html, app.redirect_gateway.gone_html = pages.not_found_html, pages.gone_html
    app.include_router(qr_pages.router)
    app.include_router(preview_pages.router)
    app.include_router(password_pages.router)
    app.include_router(asset_router())
    serve_docs_from_package(app)
    console.mount(app)
    # Added first, so it runs inside RequestContext: refusals get request ids, logs and metrics too.
    app.add_middleware(AccessGate)
    app.add_middleware(RequestContext, access_log=app.access_log)
    return app
