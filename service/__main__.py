"""Command line: `python -m service serve|migrate|consume-visits|create-key|list-keys|revoke-key|...`.

Whatever a script reads comes on stdout (create-key: the key alone); every
message for a person goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from pydantic import ValidationError

from .config import Settings
from .log_writer import stdout_writer
from .observability import configure_logging


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ValidationError as exc:
        sys.exit(f"linkgate: invalid settings:\n{exc}")


def cmd_migrate(_args: argparse.Namespace) -> int:
    from .store.migrate import head_revision, upgrade

    settings = _settings()
    upgrade(settings.database_url)
    print(f"linkgate: database at revision {head_revision()}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = _settings()
    configure_logging(settings.log_level, writer=stdout_writer(settings.log_buffer_lines))
    workers = args.workers or settings.workers
    if workers > 1 and not settings.redis_url:
        sys.exit(
            "linkgate: more than one worker needs a shared Redis (LINKGATE_REDIS_URL); "
            "the in-process cache of one worker cannot see another's edits"
        )
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Workers must share one metrics directory, made before they start.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="linkgate-metrics-")
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,  # linkgate logs requests itself (LINKGATE_ACCESS_LOG)
        # linkgate reads X-Forwarded-For itself, from LINKGATE_TRUSTED_PROXIES
        # only (service.access.addresses): the client address limits apply to.
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=args.graceful_timeout,
        log_level=settings.log_level.lower(),
        log_config=None,  # the JSON logging set up above (and again in each worker)
    )
    return 0


def cmd_warm_cache(args: argparse.Namespace) -> int:
    import asyncio
    import time

    from .app import create_app

    settings = _settings()
    if not settings.redis_url:
        sys.exit("linkgate: warm-cache fills a shared Redis; set LINKGATE_REDIS_URL")

    async def warm() -> int:
        app = create_app(settings, configure_logs=False, tune_gc=False)
        async with app.router.lifespan_context(app):
            return await app.state.links.warm_cache(args.limit)

    started = time.perf_counter()
    count = asyncio.run(warm())
    print(f"linkgate: cached {count} links in Redis in {time.perf_counter() - started:.1f} s")
    return 0


def cmd_consume_visits(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal

    settings = _settings()
    configure_logging(settings.log_level)
    if not settings.redis_url:
        sys.exit(
            "linkgate: consume-visits reads the shared visit stream; set LINKGATE_REDIS_URL "
            "(without one, the server's in-process consumer folds its own visits)"
        )

    async def consume() -> int:
        from .app import open_redis
        from .store import sql
        from .visits.consumer import VisitConsumer

        db = sql.Database.open(settings.database_url, pool_size=2)
        redis_client = open_redis(settings)
        # Its own process: it may wait in XREADGROUP BLOCK (SIGTERM takes effect within that second).
        consumer = VisitConsumer.from_settings(settings, redis=redis_client, db=db, block_seconds=1.0)
        log = logging.getLogger("linkgate.visits")
        try:
            if args.until_empty:
                done = await consumer.drain(timeout_seconds=args.until_empty)
                log.info("folded %d visit events; stream %s", consumer.folded, "empty" if done else "not empty yet")
                return 0 if done else 1
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, consumer.stop)
            log.info("visit consumer %s folding %s", consumer.name, consumer.stream_key)
            await consumer.run()
            log.info("visit consumer %s stopped after %d events", consumer.name, consumer.folded)
            return 0
        finally:
            await redis_client.aclose()
            await db.close()

    return asyncio.run(consume())


def _with_keys(action):
    """Run `action(keys)` against the configured database, with no Redis and no server."""
    import asyncio

    from .access.keys import KeyService
    from .access.policy import Permissions
    from .errors import LinkgateError
    from .store import sql

    settings = _settings()

    async def run():
        db = sql.Database.open(settings.database_url, pool_size=1)
        try:
            keys = KeyService(db=db, permissions=Permissions.from_settings(settings),
                              pepper=settings.api_key_pepper)
            return await action(keys)
        finally:
            await db.close()

    try:
        return asyncio.run(run())
    except LinkgateError as exc:
        sys.exit(f"linkgate: {_explain(exc)}")
    except ValueError as exc:
        sys.exit(f"linkgate: {exc}")


def _explain(exc) -> str:
    from .errors import InvalidInput, KeyNameTaken, KeyNotFound, StorageUnavailable

    if isinstance(exc, InvalidInput):
        return f"--{exc.field.replace('_', '-')} {exc.reason}"
    if isinstance(exc, KeyNameTaken):
        return f"a key named '{exc.name}' exists or existed; choose another name"
    if isinstance(exc, KeyNotFound):
        return f"no key is named '{exc.key_id}'"
    if isinstance(exc, StorageUnavailable):
        return "the database cannot be reached (did `python -m service migrate` run?)"
    return str(exc)


def cmd_create_key(args: argparse.Namespace) -> int:
    from .access.keys import parse_duration

    try:
        lifetime = parse_duration(args.expires_in) if args.expires_in else None
    except ValueError as exc:
        sys.exit(f"linkgate: --expires-in: {exc}")

    async def create(keys):
        return await keys.create(name=args.name, role=args.role, lifetime=lifetime)

    key, token = _with_keys(create)
    expiry = f", expires {key.expires_at:%Y-%m-%d %H:%M} UTC" if key.expires_at else ""
    print(f"linkgate: made key '{key.name}' (id {key.key_id}, role {key.role}{expiry}); "
          "it is shown once, below", file=sys.stderr)
    print(token)
    return 0


def cmd_list_keys(_args: argparse.Namespace) -> int:
    from .access.keys import key_status

    async def listing(keys):
        return await keys.list(), keys.clock()

    rows, now = _with_keys(listing)

    def when(value) -> str:
        return f"{value:%Y-%m-%d %H:%M}" if value else "-"

    table = [("ID", "NAME", "ROLE", "STATUS", "CREATED", "EXPIRES", "LAST USED")]
    table += [(k.key_id, k.name, k.role, key_status(k, now), when(k.created_at), when(k.expires_at),
               when(k.last_used_at)) for k in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if not rows:
        print("linkgate: no keys yet; make one with `python -m service create-key`", file=sys.stderr)
    return 0


def cmd_revoke_key(args: argparse.Namespace) -> int:
    async def revoke(keys):
        key = await keys.get_by_name(args.name)
        return await keys.revoke(key.key_id)

    key = _with_keys(revoke)
    print(f"linkgate: revoked key '{key.name}' (id {key.key_id})", file=sys.stderr)
    return 0


def _with_links(action):
    """Run `action(app)` inside the app's lifespan (SQL, the cache, the key service), no server."""
    import asyncio

    from .app import create_app

    settings = _settings()

    async def run():
        app = create_app(settings, configure_logs=False, tune_gc=False)
        async with app.router.lifespan_context(app):
            return await action(app)

    return asyncio.run(run())


def cmd_import(args: argparse.Namespace) -> int:
    from .app import tune_garbage_collector
    from .lifecycle import transfer

    # A million rows make millions of short-lived objects: the server's GC settings fit.
    tune_garbage_collector()
    fmt = args.format or ("jsonl" if args.file.endswith((".jsonl", ".ndjson")) else "csv")

    async def run(app):
        owner_id = None
        if args.owner:
            owner_id = (await app.state.keys.get_by_name(args.owner)).id
        progress = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            progress = tqdm(unit=" rows", unit_scale=True, file=sys.stderr)
        try:
            with transfer.open_text(args.file) as stream:
                return await transfer.import_links(app.state.links, transfer.read_rows(stream, fmt),
                                                   owner_id=owner_id, progress=progress)
        finally:
            if progress is not None:
                progress.close()

    from .errors import KeyNotFound

    try:
        report = _with_links(run)
    except KeyNotFound:
        sys.exit(f"linkgate: --owner: no key is named '{args.owner}'")
    except (OSError, ValueError) as exc:
        sys.exit(f"linkgate: {args.file}: {exc}")
    for number, reason in report.refused[:100]:
        print(f"line {number}: {reason}")
    if len(report.refused) > 100:
        print(f"... and {len(report.refused) - 100} more refused lines")
    print(f"linkgate: {report.summary()}")
    return 1 if report.refused and not (report.created or report.skipped) else 0


def cmd_export(args: argparse.Namespace) -> int:
    from .lifecycle import transfer

    async def run(app):
        return await transfer.export_links(app.state.links, sys.stdout, args.format)

    count = _with_links(run)
    print(f"linkgate: exported {count} links", file=sys.stderr)
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    try:
        before = datetime.fromisoformat(args.gone_before)
    except ValueError:
        sys.exit("linkgate: --gone-before takes a date (YYYY-MM-DD) or an RFC 3339 time")
    before = before.replace(tzinfo=UTC) if before.tzinfo is None else before

    async def run(app):
        return await app.state.links.purge_gone(before=before)

    codes = _with_links(run)
    print(f"linkgate: purged {len(codes)} links gone before {before:%Y-%m-%d %H:%M} UTC; their codes stay reserved")
    return 0


def cmd_reconcile(_args: argparse.Namespace) -> int:
    from .coordination.lock import FencedLock
    from .coordination.reconcile import LOCK_NAME, Reconciler, report_line

    async def run(app):
        state = app.state
        settings = state.settings
        reconciler = Reconciler(db=state.db, redis=state.cache.redis, service=state.links,
                                prefix=settings.redis_key_prefix, batch=settings.reconcile_batch,
                                ttl_seconds=settings.cache_ttl_seconds, clock=state.links.clock)
        lock = FencedLock(state.cache.redis, LOCK_NAME, prefix=settings.redis_key_prefix,
                          ttl_seconds=settings.lock_ttl_seconds)
        return await reconciler.run(lock)

    report = _with_links(run)
    if report is None:
        print("linkgate: another replica holds the reconcile lock; nothing to do", file=sys.stderr)
        return 0
    print(report_line(report))
    return 0


def settings_table() -> str:
    """The README's settings table, straight from the Settings class."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, list):
            default = ",".join(default) or "(empty)"
        elif default is None:
            default = "(unset)"
        rows.append(f"| `LINKGATE_{name.upper()}` | `{default}` | {field.description or ''} |")
    return "\n".join(rows)


def cmd_settings(_args: argparse.Namespace) -> int:
    print(settings_table())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service", description="linkgate URL shortener")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the API and redirects with uvicorn")
    serve.add_argument("--host", help="bind address (default LINKGATE_HOST)")
    serve.add_argument("--port", type=int, help="port (default LINKGATE_PORT)")
    serve.add_argument("--workers", type=int, help="worker processes (default LINKGATE_WORKERS)")
    serve.add_argument("--graceful-timeout", type=int, default=20,
                       help="seconds to finish in-flight requests after SIGTERM")
    serve.set_defaults(run=cmd_serve)
    migrate = commands.add_parser("migrate", help="apply database migrations, then exit")
    migrate.set_defaults(run=cmd_migrate)
    consume = commands.add_parser(
        "consume-visits", help="fold the visit stream into the stats, in the consumer group, until SIGTERM"
    )
    consume.add_argument("--until-empty", type=float, metavar="SECONDS",
                         help="fold what the stream holds now (for at most SECONDS), then exit")
    consume.set_defaults(run=cmd_consume_visits)
    warm = commands.add_parser("warm-cache", help="write the newest links to Redis (after a flush or an import)")
    warm.add_argument("--limit", type=int, default=100_000, help="how many links, newest first (default 100000)")
    warm.set_defaults(run=cmd_warm_cache)
    create_key = commands.add_parser("create-key", help="make an API key; prints the key alone on stdout")
    create_key.add_argument("--name", required=True, help="a unique name for the key")
    create_key.add_argument("--role", required=True, help="admin, editor, reader, or a role of your policy")
    create_key.add_argument("--expires-in", help="lifetime, like 90d, 12h or 2w (default: never expires)")
    create_key.set_defaults(run=cmd_create_key)
    list_keys = commands.add_parser("list-keys", help="list API keys (never their secrets)")
    list_keys.set_defaults(run=cmd_list_keys)
    revoke_key = commands.add_parser("revoke-key", help="revoke an API key by name")
    revoke_key.add_argument("name", help="the key's name")
    revoke_key.set_defaults(run=cmd_revoke_key)
    importer = commands.add_parser("import", help="create links from a CSV or JSON Lines file (safe to run twice)")
    importer.add_argument("file", help="the file, or - for standard input")
    importer.add_argument("--owner", help="name of the key that will own the links (default: none)")
    importer.add_argument("--format", choices=["csv", "jsonl"], help="default: by the file's ending, else csv")
    importer.set_defaults(run=cmd_import)
    exporter = commands.add_parser("export", help="write every live link to stdout, as import reads them")
    exporter.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    exporter.set_defaults(run=cmd_export)
    purge = commands.add_parser("purge", help="delete links expired or used up before a date (codes stay reserved)")
    purge.add_argument("--gone-before", required=True, metavar="DATE", help="YYYY-MM-DD or an RFC 3339 time")
    purge.set_defaults(run=cmd_purge)
    commands.add_parser(
        "reconcile", help="repair Redis from SQL under a lock (one replica at a time); prints a JSON report"
    ).set_defaults(run=cmd_reconcile)
    table = commands.add_parser("settings", help="print every setting, its default and meaning (Markdown)")
    table.set_defaults(run=cmd_settings)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
