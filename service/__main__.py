"""Command line: `python -m service serve|migrate`."""

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
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
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
    warm = commands.add_parser("warm-cache", help="write the newest links to Redis (after a flush or an import)")
    warm.add_argument("--limit", type=int, default=100_000, help="how many links, newest first (default 100000)")
    warm.set_defaults(run=cmd_warm_cache)
    table = commands.add_parser("settings", help="print every setting, its default and meaning (Markdown)")
    table.set_defaults(run=cmd_settings)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
