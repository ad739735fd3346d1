"""`python -m bench`: the whole benchmark, from empty storage to bench/RESULTS.md.

Steps, in one run so every ratio compares figures taken minutes apart:

1. its own PostgreSQL databases and Redis key prefixes (or SQLite + fakeredis
   when those do not answer), migrated with `python -m service migrate`;
2. seed links through LinkService.bulk_create (BENCH_LINKS, default 1,000,000,
   and 10,000 in a second database);
3. the ceiling (bench/ceiling.py) under wrk, sent the same requests (the
   same script and paths) right before and right after each service
   workload, so each ratio compares figures taken seconds apart (the machine
   is shared, and its load moves within minutes);
4. `python -m service serve` under wrk: one hot code, codes uniform over every
   link, the same with a query to filter, unknown codes, link creation; each
   followed by a check of a sample of answers; Redis memory per cached link;
   the creates and the uniform run are followed by their floors
   (bench/floor.py: FastAPI with linkgate's models storing nothing, and one
   Redis round trip a request), between the same two ceiling runs;
5. the service on the 10,000-link database, codes uniform over those;
6. the query filter's cost per call, in-process.

Nothing is flushed between workloads: caches warm up the way they would in
production. Everything started or stored is removed at the end, on failure
and on Ctrl-C too.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import datetime
import fcntl
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import timeit
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from service.config import Settings
from service.observability import CLIENT_CLOSED
from service.query_filter import FilterLimits, QueryPolicy, compile_filter

from . import ceiling as ceiling_app
from . import machine, report, seed, stack, verify, workloads, wrk
from .report import Check, Figure, Report, WorkloadResult

RESULTS = Path(__file__).parent / "RESULTS.md"
LOCK = Path("/tmp/linkgate-bench.lock")
SALT = "linkgate-bench-salt"


def log(message: str) -> None:
    print(message, flush=True)


def _env_int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise SystemExit(f"bench: {name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise SystemExit(f"bench: {name} must be at least {minimum}")
    return value


@dataclass(frozen=True)
class Config:
    links: int = 1_000_000
    small_links: int = 10_000
    seconds: int = 10
    ceiling_seconds: int = 5
    connections: int = 64
    chunk: int = 20_000
    verify_samples: int = 200
    unknown_codes: int = 10_000
    import_rows: int = 1_000_000
    pg_admin_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
    redis_url: str = "redis://127.0.0.1:6379/0"
    results: Path = RESULTS
    pyspy_dir: Path | None = None

    @classmethod
    def from_env(cls) -> Config:
        defaults = cls()
        pyspy = os.environ.get("BENCH_PYSPY_DIR")
        return cls(
            links=_env_int("BENCH_LINKS", defaults.links),
            small_links=_env_int("BENCH_SMALL_LINKS", defaults.small_links),
            seconds=_env_int("BENCH_SECONDS", defaults.seconds),
            ceiling_seconds=_env_int("BENCH_CEILING_SECONDS", defaults.ceiling_seconds),
            connections=_env_int("BENCH_CONNECTIONS", defaults.connections),
            chunk=_env_int("BENCH_SEED_CHUNK", defaults.chunk),
            verify_samples=_env_int("BENCH_VERIFY_SAMPLES", defaults.verify_samples, minimum=2),
            unknown_codes=_env_int("BENCH_UNKNOWN_CODES", defaults.unknown_codes),
            import_rows=_env_int("BENCH_IMPORT_ROWS", defaults.import_rows),
            pg_admin_url=stack.require_loopback(os.environ.get("BENCH_PG_ADMIN_URL", defaults.pg_admin_url)),
            redis_url=stack.require_loopback(os.environ.get("BENCH_REDIS_URL", defaults.redis_url)),
            results=Path(os.environ.get("BENCH_RESULTS", str(defaults.results))),
            pyspy_dir=Path(pyspy) if pyspy else None,
        )


# --- the settings the service runs with ------------------------------------------

SETTINGS_ENV = stack.REPO / "deploy" / "k8s" / "base" / "settings.env"

# What the bench's own environment decides, replacing production's value (or
# default): each with the reason, printed at the start and in RESULTS.md.
OVERRIDES: dict[str, str] = {
    "host": "127.0.0.1: the bench talks to this machine only",
    "port": "a free port",
    "public_base_url": "http://127.0.0.1:<port>",
    "workers": "1: the bench pins one worker to one core, wrk to the other",
    "database_url": "the bench's own database (a Secret in production)",
    "redis_url": "the bench's Redis (a Secret in production)",
    "redis_key_prefix": "a prefix of the bench's own, removed afterwards",
    "hashids_salt": "a bench salt (a Secret in production)",
    "query_deny": f"{seed.QUERY_DENY}: the operator deny list the query workload is built around "
    "(production's default is empty)",
    "rate_limit_per_key": "100000000/minute: the create workload is one key sending thousands a second; "
    "the limiter still runs (one script call a request), only its limit is out of reach",
    "unknown_code_limit_per_address": "100000000/minute: wrk is one address asking for thousands of unknown "
    "codes a second, a scanner by design; the counting still runs on every 404, only the limit is out of reach",
}


def parse_settings_env(text: str) -> dict[str, str]:
    """KEY=VALUE lines of an env file (comments and blank lines skipped), as field names: LINKGATE_X -> x."""
    fields = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.startswith("LINKGATE_"):
            raise ValueError(f"settings.env line {number}: not LINKGATE_<FIELD>=value: {raw!r}")
        fields[name.removeprefix("LINKGATE_").lower()] = value
    return fields


def production_settings() -> dict[str, str]:
    return parse_settings_env(SETTINGS_ENV.read_text())


def overrides(storage: stack.Storage, port: int) -> dict[str, str]:
    """The values of OVERRIDES for one service process."""
    fields = {
        "host": "127.0.0.1",
        "port": str(port),
        "public_base_url": f"http://127.0.0.1:{port}",
        "workers": "1",
        "database_url": storage.database_url,
        "redis_key_prefix": storage.redis_prefix,
        "hashids_salt": SALT,
        "query_deny": seed.QUERY_DENY,
        "rate_limit_per_key": "100000000/minute",
        "unknown_code_limit_per_address": "100000000/minute",
    }
    if storage.redis_url is not None:
        fields["redis_url"] = storage.redis_url
    return fields


# --- the service's own counters ------------------------------------------------

Snapshot = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Snapshot:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def counter_delta(before: Snapshot, after: Snapshot, name: str, **labels: str) -> float:
    """The increase of every sample of `name` whose labels include `labels`."""
    def total(snapshot: Snapshot) -> float:
        return sum(
            value for (sample, sample_labels), value in snapshot.items()
            if sample == name and set(labels.items()) <= set(sample_labels)
        )
    return total(after) - total(before)


def unexpected_statuses(before: Snapshot, after: Snapshot, expected: int) -> int:
    """Answers, on any route but /metrics, whose status was not `expected`.

    499 is no answer: the service counts so a request whose client left
    before the answer started, which is what wrk does to the requests in
    flight when its time is up.
    """
    count = 0.0
    for key, value in after.items():
        name, labels = key
        label = dict(labels)
        if name != "linkgate_http_requests_total" or label.get("route") == "/metrics":
            continue
        if label.get("status") not in (str(expected), str(CLIENT_CLOSED)):
            count += value - before.get(key, 0.0)
    return int(count)


async def metrics_snapshot(base_url: str) -> Snapshot:
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as client:
        response = await client.get("/metrics")
        response.raise_for_status()
        return parse_metrics(response.text)


def lookup_counts(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """Where the redirect lookups of a workload were answered: memory, Redis, SQL (a Redis miss), or Redis failed."""
    name = "linkgate_cache_lookups_total"
    return {
        "local": counter_delta(before, after, name, layer="local", result="hit"),
        "redis": counter_delta(before, after, name, layer="redis", result="hit"),
        "sql": counter_delta(before, after, name, layer="redis", result="miss"),
        "error": counter_delta(before, after, name, layer="redis", result="error"),
    }


# --- running things ------------------------------------------------------------


class Bench:
    def __init__(self, config: Config, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.rng = random.Random()
        multi = (os.cpu_count() or 1) >= 2
        self.server_cpu = 0 if multi else None
        self.wrk_cpu = 1 if multi else None
        self.servers: list[stack.Server] = []
        self.lookups: list[tuple[str, dict[str, float]]] = []

    # --- servers

    def service_fields(self, storage: stack.Storage, port: int, *, access_log: bool = True,
                       tracking: bool = True) -> dict[str, str]:
        """The settings of the service under test, as LINKGATE_* values (names lower-case).

        Production's (deploy/k8s/base/settings.env, read as it is), with only
        OVERRIDES replaced; `access_log=False` or `tracking=False` for the comparison runs.
        """
        fields = {**production_settings(), **overrides(storage, port)}
        if not access_log:
            fields["access_log"] = "false"
        if not tracking:
            fields["tracking"] = "false"
        return fields

    def service_env(self, storage: stack.Storage, port: int, *, access_log: bool = True,
                    tracking: bool = True) -> dict[str, str]:
        """The environment a service process of this bench runs with."""
        fields = self.service_fields(storage, port, access_log=access_log, tracking=tracking)
        return {**stack.clean_env(), **{f"LINKGATE_{k.upper()}": v for k, v in fields.items()}}

    def settings(self, storage: stack.Storage) -> Settings:
        return Settings(**self.service_fields(storage, 8000))

    async def import_rows(self, storage: stack.Storage, rows: int) -> Figure:
        """`python -m service import` of a CSV of `rows` links (titles, two tags each) into `storage`."""
        path = self.workdir / "import.csv"
        with path.open("w") as out:
            out.write("url,title,tags\n")
            for n in range(rows):
                out.write(f"https://www.example.com/imported/2026/{n % 12 + 1:02d}/story-{n:07d}?ref=import,"
                          f"Story {n},news|y{n % 7}\n")
        env = self.service_env(storage, 8000)
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service", "import", str(path), env=env, cwd=stack.REPO,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        out, err = await proc.communicate()
        seconds = time.perf_counter() - started
        summary = out.decode().strip().splitlines()[-1] if out.strip() else err.decode()[-300:]
        ok = proc.returncode == 0 and f"created {rows}," in summary
        limit = 60.0 * rows / 1_000_000
        met = ok and seconds < limit
        return Figure(
            f"import of {rows:,} CSV rows (`python -m service import`, title and 2 tags each)",
            f"{rows / seconds:,.0f} rows/s ({seconds:.1f} s)" if ok else f"FAILED: {summary}",
            target=f"under {limit:.0f} s",
            verdict=report.Verdict(report.MET if met else report.NOT_MET,
                                   [] if met else [f"{seconds:.1f} s" if ok else "the import failed"]),
        )

    async def warm_cache(self, storage: stack.Storage, count: int) -> str:
        """Run `python -m service warm-cache` for a store; its own report line, timed."""
        if storage.redis_url is None:
            return "skipped (no Redis: the embedded cache lives in the server process)"
        env = self.service_env(storage, 8000)
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service", "warm-cache", "--limit", str(count), cwd=stack.REPO, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"python -m service warm-cache failed:\n{out.decode(errors='replace')}")
        seconds = time.perf_counter() - started
        log(f"  warmed {count:,} links in {seconds:.1f} s")
        return f"{count / seconds:,.0f} links/s ({seconds:.1f} s)"

    async def start_service(self, storage: stack.Storage, name: str, *, access_log: bool = True,
                            tracking: bool = True) -> stack.Server:
        port = stack.free_port()
        env = self.service_env(storage, port, access_log=access_log, tracking=tracking)
        server = stack.Server(
            name=name,
            argv=[sys.executable, "-m", "service", "serve", "--graceful-timeout", "2"],
            port=port,
            env=env,
            log_path=self.workdir / f"{name}.log",
            ready_path="/readyz",
            cpu=self.server_cpu,
        )
        self.servers.append(server)
        await server.start()
        return server

    async def start_ceiling(self, name: str, app: str = "bench.ceiling:app",
                            env: dict[str, str] | None = None) -> stack.Server:
        """The ceiling, or a floor of bench/floor.py (`app`), under the uvicorn settings of the service."""
        port = stack.free_port()
        server = stack.Server(
            name=name,
            argv=[
                sys.executable, "-m", "uvicorn", app,
                "--host", "127.0.0.1", "--port", str(port),
                "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                # the rest as `python -m service serve` sets them
                "--log-level", "warning", "--no-server-header", "--proxy-headers",
                "--forwarded-allow-ips", production_settings().get("forwarded_allow_ips", "127.0.0.1"),
                "--timeout-graceful-shutdown", "2",
            ],
            port=port,
            env={**stack.clean_env(), **(env or {})},
            log_path=self.workdir / f"{name}.log",
            ready_path="/ready",
            cpu=self.server_cpu,
        )
        self.servers.append(server)
        await server.start()
        return server

    async def stop(self, server: stack.Server) -> None:
        await server.stop()
        if server in self.servers:
            self.servers.remove(server)

    # --- wrk

    async def run_wrk(
        self, server: stack.Server, script: str, args: list[str], name: str, *, seconds: int | None = None,
        pause_ms: int = 0,
    ) -> wrk.WrkResult:
        """`pause_ms`: each connection waits that long between its requests (the scripts read
        BENCH_PAUSE_MS), so the offered load is about connections x 1000 / pause_ms per second."""
        seconds = seconds or self.config.seconds
        cmd = wrk.command(
            url=server.base_url + "/",
            script=script,
            script_args=args,
            seconds=seconds,
            connections=self.config.connections,
            cpu=self.wrk_cpu,
        )
        profiler = await self._profile(server, name)
        env = {**os.environ, "BENCH_PAUSE_MS": str(pause_ms)} if pause_ms else None
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout=seconds + 120)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        finally:
            if profiler is not None:
                await profiler.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"wrk exited with {proc.returncode}: {err.decode(errors='replace')[-2000:]}")
        text = out.decode(errors="replace")
        (self.workdir / f"wrk-{name}.txt").write_text(text)  # kept while the run lasts, for debugging
        return wrk.parse_output(text)

    async def paced(self, server: stack.Server, script: str, args: list[str], name: str,
                    peak_rps: float) -> wrk.WrkResult | None:
        """The same requests at about half `peak_rps`: the latency below saturation (report.p99_of)."""
        if peak_rps <= 0:
            return None
        pause_ms = max(1, round(self.config.connections * 1000 / (peak_rps / 2)))
        log(f"  paced: the same requests with {pause_ms} ms between a connection's requests "
            f"(about {self.config.connections * 1000 / pause_ms:,.0f}/s offered)")
        try:
            result = await self.run_wrk(server, script, args, name + "-paced", pause_ms=pause_ms)
        except Exception as exc:  # the saturated figures stand; the p99 is then judged on them
            log(f"  paced run FAILED: {type(exc).__name__}: {exc}"[:300])
            return None
        log(f"  paced: {result.requests_per_s:,.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms")
        return result

    async def _profile(self, server: stack.Server, name: str):
        """py-spy on the server during the run, when BENCH_PYSPY_DIR names a directory."""
        spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
        if self.config.pyspy_dir is None or server.pid is None or spy is None:
            return None
        self.config.pyspy_dir.mkdir(parents=True, exist_ok=True)
        # BENCH_PYSPY_FORMAT: flamegraph (.svg, the default), raw (collapsed stacks) or speedscope
        form = os.environ.get("BENCH_PYSPY_FORMAT", "flamegraph")
        suffix = {"flamegraph": "svg", "raw": "txt", "speedscope": "json"}.get(form, "out")
        return await asyncio.create_subprocess_exec(
            *[spy, "record", "--pid", str(server.pid), "--duration", str(self.config.seconds),
             "--rate", "100", "--nonblocking", "--format", form,
             "-o", str(self.config.pyspy_dir / f"{name}.{suffix}")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    async def workload(
        self,
        server: stack.Server,
        key: str,
        title: str,
        script: str,
        args: list[str],
        *,
        expected_status: int | None,
        check,
        after=None,
        seconds: int | None = None,
    ) -> WorkloadResult:
        """One wrk run and the checks after it; a failure is recorded, never raised."""
        result = WorkloadResult(key=key, title=title)
        check_interrupted()
        log(f"- {title}")
        try:
            before = await metrics_snapshot(server.base_url) if expected_status is not None else None
            result.wrk = await self.run_wrk(server, script, args, key, seconds=seconds)
            check_interrupted()
            if before is not None:
                after_snapshot = await metrics_snapshot(server.base_url)
                result.unexpected_statuses = unexpected_statuses(before, after_snapshot, expected_status)
                self.lookups.append((title, lookup_counts(before, after_snapshot)))
                if after is not None:
                    await after(result, before, after_snapshot)
            result.verification = await check()
            check_interrupted()
            figure = result.wrk
            log(
                f"  {figure.requests_per_s:,.0f} req/s, p50 {figure.p50_ms:.2f} ms, p99 {figure.p99_ms:.2f} ms, "
                f"errors {result.errors}, verified {result.verification.text()}"
            )
            for example in result.verification.examples:
                log(f"  verification: {example}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the run goes on; the table says FAILED
            result.error = f"{type(exc).__name__}: {exc}"[:300]
            log(f"  FAILED: {result.error}")
        return result


class Floors:
    """The floors of bench/floor.py, each run right after the workload it is the floor of.

    They give the create figure a baseline of its own (FastAPI with linkgate's
    request and answer models, storing nothing), and show what one Redis round
    trip a request costs on this machine, for creates (the limiter's) and for
    redirects (a miss of the in-process cache). Only with a real Redis.
    """

    # workload -> (app of bench/floor.py, what it is)
    OF = {
        "create": (
            ("create", "FastAPI floor of a create: LinkCreate in, LinkOut out (201), nothing stored"),
            ("create_redis", "the same plus one Redis round trip a request"),
        ),
        "uniform": (("redirect_redis", "the ceiling plus one Redis round trip a request (uncoalesced)"),),
    }

    def __init__(self, bench: Bench, redis_url: str | None, verify_n: int) -> None:
        self.bench = bench
        self.redis_url = redis_url
        self.verify_n = verify_n
        self.key = f"lgbench-floor:{os.getpid()}"
        self.servers: dict[str, stack.Server] = {}

    async def start(self) -> None:
        if self.redis_url is None:
            log("bench: no Redis, so no floors (bench/floor.py)")
            return
        env = {"BENCH_FLOOR_REDIS_URL": self.redis_url}
        for apps in self.OF.values():
            for app, _ in apps:
                self.servers[app] = await self.bench.start_ceiling(
                    f"floor-{app}", f"bench.floor:{app}", {**env, "BENCH_FLOOR_REDIS_KEY": f"{self.key}:{app}"})

    async def stop(self) -> None:
        for server in self.servers.values():
            await self.bench.stop(server)
        if self.redis_url is not None:
            client = aioredis.Redis.from_url(self.redis_url)
            try:
                await client.delete(*(f"{self.key}:{app}" for apps in self.OF.values() for app, _ in apps))
            finally:
                await client.aclose()

    async def _counted(self, app: str) -> int:
        client = aioredis.Redis.from_url(self.redis_url)
        try:
            return int(await client.get(f"{self.key}:{app}") or 0)
        finally:
            await client.aclose()

    async def run(self, workload: str, script: str, args: list[str]) -> list[WorkloadResult]:
        runs = []
        for app, what in self.OF.get(workload, ()) if self.servers else ():
            server = self.servers[app]
            before = await self._counted(app)
            check = (
                (lambda url=server.base_url: verify.floor_creates(url, self.verify_n)) if workload == "create"
                else (lambda url=server.base_url: verify.ceiling(url, ceiling_app.LOCATION, self.verify_n))
            )
            result = await self.bench.workload(server, f"floor_{app}", f"floor: {what}", script, args,
                                               expected_status=None, check=check)
            if result.wrk is not None and app.endswith("_redis"):
                # Every answer wrk counted made its round trip (the check's own requests come after).
                made = await self._counted(app) - before
                result.checks.append(Check(f"{made:,} Redis round trips for {result.wrk.requests:,} answers",
                                           made >= result.wrk.requests))
            runs.append(result)
        return runs

    @staticmethod
    def figures(service: WorkloadResult, floor_runs: list[WorkloadResult]) -> list[Figure]:
        out = []
        for floor in floor_runs:
            if floor.wrk is None or floor.error or not floor.ceiling_rps:
                out.append(Figure(floor.title, f"FAILED: {floor.error or 'no figure'}"))
                continue
            failed = [c.text for c in floor.checks if not c.passed]
            if floor.verification is not None and not floor.verification.ok:
                failed.append(f"answers checked {floor.verification.text()}")
            rps = floor.wrk.requests_per_s
            text = f"{rps:,.0f} req/s, {rps / floor.ceiling_rps:.2f} of the ceiling"
            if service.wrk is not None and not service.error:
                text += f"; the service's {service.key} run reached {service.wrk.requests_per_s / rps:.2f} of it"
            out.append(Figure(floor.title, text + (f" (FAILED: {'; '.join(failed)})" if failed else "")))
        return out


# --- figures measured outside wrk ------------------------------------------------


async def redis_memory(redis_url: str, prefix: str, sample: int = 1000) -> tuple[float, float, int] | None:
    """(average MEMORY USAGE of a cached link's key, average value length, keys under the prefix)."""
    client = aioredis.Redis.from_url(redis_url, socket_timeout=30)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=5000)]
        random.shuffle(keys)
        picked: list[bytes] = []
        lengths: list[int] = []
        for start in range(0, len(keys), 2000):
            chunk = keys[start : start + 2000]
            async with client.pipeline(transaction=False) as pipe:
                for key in chunk:
                    pipe.strlen(key)
                sizes = await pipe.execute()
            for key, size in zip(chunk, sizes, strict=True):
                if size:  # an empty value is a cached miss, not a link
                    picked.append(key)
                    lengths.append(size)
            if len(picked) >= sample:
                break
        picked, lengths = picked[:sample], lengths[:sample]
        if not picked:
            return None
        async with client.pipeline(transaction=False) as pipe:
            for key in picked:
                pipe.memory_usage(key, samples=0)
            usages = await pipe.execute()
        return sum(usages) / len(usages), sum(lengths) / len(lengths), len(keys)
    finally:
        await client.aclose()


def filter_costs() -> list[tuple[str, float]]:
    """Microseconds per call of the query filter, on what the redirect path runs."""
    limits = FilterLimits.from_settings(Settings(query_deny=seed.QUERY_DENY))
    target = seed.target_url(123_456)
    default = compile_filter(None, limits, target=target)
    location, _ = default.apply(target, seed.VISITOR_QUERY)
    if location != seed.expected_location(123_456, seed.VISITOR_QUERY):
        raise RuntimeError(f"query filter gave {location!r}")
    marketing = compile_filter(
        QueryPolicy(allow=["utm_*"], add={"src": "short"}), limits, target=target
    )
    shared = compile_filter(None, limits)  # as the redirect path holds it: no target of its own
    cases = [
        (f"apply(), default policy + deny list, `?{seed.VISITOR_QUERY}`", default.apply, (target, seed.VISITOR_QUERY)),
        ("apply(), default policy, no query", default.apply, (target, "")),
        (f"apply(), policy allow utm_* + add src, `?{seed.VISITOR_QUERY}`", marketing.apply, (target, seed.VISITOR_QUERY)),
        ("split(target), cutting a link's target for the shared default filter (once per link per "
         "local-cache refill, from its second visit with a query)", shared.split, (target,)),
    ]
    out = []
    for name, func, args in cases:
        timer = timeit.Timer(lambda func=func, args=args: func(*args))
        number, _ = timer.autorange()
        best = min(timer.repeat(repeat=5, number=number)) / number
        out.append((name, best * 1e6))
    return out


# --- the run -------------------------------------------------------------------


async def run(config: Config) -> int:
    wrk.ensure_installed(log)
    workdir = stack.workdir()
    bench = Bench(config, workdir)
    _live.append(bench)
    started = datetime.datetime.now(datetime.UTC)
    machine_info = machine.machine()

    pg_version = await stack.postgres_reachable(config.pg_admin_url)
    redis_version = await stack.redis_reachable(config.redis_url)
    postgres = pg_version is not None
    admin = config.pg_admin_url if postgres else None
    redis_url = config.redis_url if redis_version is not None else None
    backend = (
        f"PostgreSQL {pg_version} (database linkgate_bench)" if postgres else "SQLite (embedded default)"
    ) + (f" + Redis {redis_version} (key prefix lgbench:)" if redis_url else " + fakeredis in-process")
    log(f"bench: storage {backend}")
    if not postgres or not redis_url:
        log("bench: PostgreSQL and/or Redis did not answer on 127.0.0.1: using the embedded default for those")

    storages = {
        "main": stack.Storage("linkgate_bench", "lgbench:", admin, redis_url, workdir),
        "small": stack.Storage("linkgate_bench_10k", "lgbench10k:", admin, redis_url, workdir),
    }
    main, small = storages["main"], storages["small"]
    ceilings: list[WorkloadResult] = []
    results: list[WorkloadResult] = []
    figures: list[Figure] = []
    notes: list[str] = []
    verify_n = config.verify_samples
    data: workloads.Data | None = None

    try:
        log("bench: creating and migrating the bench databases")
        await main.create()
        await small.create()

        log(f"bench: seeding {config.links:,} links (bulk_create, chunks of {config.chunk:,})")
        memory_before_seed = await _used_memory(redis_url)
        seeded = await seed.seed(bench.settings(main), config.links, chunk=config.chunk, progress=log)
        check_interrupted()
        seed_growth = await _memory_growth(redis_url, main.redis_prefix, memory_before_seed)
        log(f"bench: seeding {config.small_links:,} links into the second database")
        seeded_small = await seed.seed(bench.settings(small), config.small_links, chunk=config.chunk, progress=log)
        pool_size = config.unknown_codes + verify_n
        unknown_all = seed.unknown_codes(
            seeded.codes, 3 * pool_size + config.unknown_codes, alphabet=bench.settings(main).hashids_alphabet, rng=bench.rng,
        )
        bench.rng.shuffle(unknown_all)
        # wrk draws from the pool; the check after it asks for codes wrk never sent;
        # the runs with the access log off and with tracking off, and the paced run, get codes of their own
        unknown_pool, unknown_checked = unknown_all[: config.unknown_codes], unknown_all[config.unknown_codes : pool_size]
        off_all = unknown_all[pool_size : 2 * pool_size]
        untracked_all = unknown_all[2 * pool_size : 3 * pool_size]
        unknown_paced = unknown_all[3 * pool_size :]
        unknown_off_pool, unknown_off_checked = off_all[: config.unknown_codes], off_all[config.unknown_codes :]
        untracked_pool, untracked_checked = untracked_all[: config.unknown_codes], untracked_all[config.unknown_codes :]
        access = await seed.bench_access(bench.settings(main), f"{started:%Y%m%d%H%M%S}")
        data = workloads.Data(
            links=config.links,
            small_links=config.small_links,
            verify_samples=verify_n,
            rng=bench.rng,
            run_tag=f"{started:%Y%m%d%H%M%S}",
            seeded=seeded,
            seeded_small=seeded_small,
            codes_file=seed.write_codes(workdir / "codes.txt", seeded.codes),
            small_file=seed.write_codes(workdir / "codes-small.txt", seeded_small.codes),
            unknown_file=seed.write_codes(workdir / "unknown.txt", unknown_pool),
            unknown_pool=unknown_pool,
            unknown_checked=unknown_checked,
            unknown_off_file=seed.write_codes(workdir / "unknown-off.txt", unknown_off_pool),
            unknown_off_pool=unknown_off_pool,
            unknown_off_checked=unknown_off_checked,
            unknown_untracked_file=seed.write_codes(workdir / "unknown-untracked.txt", untracked_pool),
            unknown_untracked_pool=untracked_pool,
            unknown_untracked_checked=untracked_checked,
            unknown_paced_file=seed.write_codes(workdir / "unknown-paced.txt", unknown_paced),
            access=access,
        )
        figures.append(Figure(
            f"seeding {config.links:,} links (bulk_create, {config.chunk:,} a call)",
            f"{seeded.rate:,.0f} links/s ({seeded.seconds:.1f} s)",
        ))
        figures.append(Figure(
            f"seeding {config.small_links:,} links", f"{seeded_small.rate:,.0f} links/s ({seeded_small.seconds:.1f} s)"
        ))

        log("bench: the ceiling (bare ASGI 302), run right before and after each workload")
        ceiling_server = await bench.start_ceiling("ceiling")

        async def ceiling_run(script: str, args: list[str]) -> WorkloadResult:
            result = await bench.workload(
                ceiling_server, "ceiling", f"ceiling run {len(ceilings) + 1} ({script})", script, args,
                expected_status=None, seconds=config.ceiling_seconds,
                check=lambda: verify.ceiling(ceiling_server.base_url, ceiling_app.LOCATION, verify_n),
            )
            ceilings.append(result)
            return result

        floors = Floors(bench, redis_url, verify_n)
        await floors.start()

        miss_ttl = bench.settings(main).cache_miss_ttl_seconds
        loads_per_code = -(-config.seconds // miss_ttl)  # one per code per miss-TTL the run spans
        memory_growth: list[tuple[str, tuple[int, int] | None]] = [("while seeding", seed_growth)]
        for process in workloads.PROCESSES:
            storage = storages[process.storage]
            if process.warms_redis_first:
                count = config.links if process.storage == "main" else config.small_links
                warmed = await bench.warm_cache(storage, count)
                figures.append(Figure(
                    f"warming Redis with {count:,} links ({process.storage}; `python -m service warm-cache`)", warmed
                ))
                check_interrupted()
            log(f"bench: the service on {storage_links(config, process.storage):,} links: {process.what}")
            lookups_before = await _code_lookups(storage) if process.counts_sql_lookups else None
            rows = workloads.of_process(process.name)
            server = await bench.start_service(storage, process.name)
            # The same service with the access log off, and with tracking off, for the on/off ratios
            # of each redirect workload.
            redirects = any(row.redirect for row in rows)
            server_off = (
                await bench.start_service(storage, process.name + "-log-off", access_log=False)
                if redirects else None
            )
            server_untracked = (
                await bench.start_service(storage, process.name + "-tracking-off", tracking=False)
                if redirects else None
            )
            for row in rows:
                script, args = row.script, row.args(data)
                memory_before = await _used_memory(redis_url) if row.key == "uniform" else None
                before = await ceiling_run(script, args)

                def on(seconds=None, row=row):
                    return bench.workload(
                        server, row.key, row.title(data), script, args, expected_status=row.expected_status,
                        check=lambda row=row, url=server.base_url: row.check(data, url), seconds=seconds,
                    )

                def twin(twin_server, suffix, label, twin_args, twin_check, seconds=None, row=row):
                    """The workload on a comparison twin: its own key, title, and (if given) arguments and check."""
                    check = twin_check or row.check
                    return bench.workload(
                        twin_server, row.key + suffix, f"{row.title(data)}, {label}", script,
                        (twin_args or row.args)(data), expected_status=row.expected_status,
                        check=lambda check=check, url=twin_server.base_url: check(data, url), seconds=seconds,
                    )

                def off(seconds=None, row=row):
                    return twin(server_off, report.LOG_OFF, "access log off", row.args_log_off, row.check_log_off,
                                seconds)

                def untracked(seconds=None, row=row):
                    return twin(server_untracked, report.TRACKING_OFF, "tracking off", row.args_tracking_off,
                                row.check_tracking_off, seconds)

                if row.redirect and server_off is not None and not process.counts_sql_lookups:
                    # Production, log off, tracking off, tracking off, log off, production, each half
                    # as long: each on/off ratio then compares runs centred on the same moment, so a
                    # load that drifts on the shared machine weighs on both alike. (Unknown codes run
                    # once each: their SQL-load check needs each run's distinct codes, which halves
                    # cannot add up.)
                    half = max(2, config.seconds // 2)
                    on_a, off_a, untracked_a = await on(half), await off(half), await untracked(half)
                    untracked_b, off_b, on_b = await untracked(half), await off(half), await on(half)
                    runs = [report.merged(on_a, on_b), report.merged(off_a, off_b),
                            report.merged(untracked_a, untracked_b)]
                else:
                    runs = [await on()]
                    if row.redirect and server_off is not None:
                        runs += [await off(), await untracked()]
                if row.redirect and runs[0].wrk is not None and runs[0].error is None:
                    runs[0].paced = await bench.paced(
                        server, script, (row.args_paced or row.args)(data), row.key, runs[0].wrk.requests_per_s
                    )
                # The floors of this workload, between the same two ceiling runs (bench/floor.py).
                floor_runs = await floors.run(row.key, script, args)
                after = await ceiling_run(script, args)
                for result in runs + floor_runs:
                    result.ceiling_rps = report.adjacent_ceiling(before, after)
                results += runs
                figures += floors.figures(runs[0], floor_runs)
                if row.key == "uniform":
                    memory_growth.append(("during the uniform runs", await _memory_growth(
                        redis_url, main.redis_prefix, memory_before
                    )))
                    figures.append(await _memory_figure(redis_url, main.redis_prefix, memory_growth))
            await bench.stop(server)
            for twin in (server_off, server_untracked):
                if twin is not None:
                    await bench.stop(twin)
            if process.counts_sql_lookups:
                lookups_after = await _code_lookups(storage)
                counted = [r for r in results if report.base_key(r.key) == "unknown"]
                misses = sum(int(dict(bench.lookups).get(r.title, {}).get("sql", 0)) for r in counted)
                counted[0].checks += _sql_lookup_checks(
                    counted, lookups_before, lookups_after, [misses],
                    extra_codes=len(unknown_checked) + len(unknown_off_checked) + len(untracked_checked),
                    loads_per_code=loads_per_code,
                )
        await bench.stop(ceiling_server)
        await floors.stop()
        figures.append(_scaling_figure(config, results, bench.lookups))

        # Last: it adds its links to the small database, after every workload that uses it.
        log(f"bench: importing {config.import_rows:,} rows into the second database")
        figures.append(await bench.import_rows(small, config.import_rows))

        log("bench: query filter cost per call")
        for name, micros in _pinned(bench.server_cpu, filter_costs):
            figures.append(Figure(f"query filter: {name}", f"{micros:.2f} µs"))
    finally:
        log("bench: cleaning up")
        for server in list(bench.servers):
            await bench.stop(server)
        for storage in storages.values():
            try:
                await storage.drop()
            except Exception as exc:  # keep cleaning the rest
                log(f"bench: could not drop {storage.name}: {exc}")
        shutil.rmtree(workdir, ignore_errors=True)

    if data is not None:
        notes.append(
            f"Unknown codes: {len(data.unknown_pool):,} random codes of the seeded codes' lengths and alphabet that "
            "no link has, drawn uniformly with replacement, so codes repeat within the run and the miss "
            "cache must answer the repeats; this workload runs first, on a service process of its own. "
            "SQL lookups are counted exactly on PostgreSQL: the index scans of links.code "
            "(pg_stat_user_indexes), read with nothing connected to the bench database, before that "
            "process starts and after it stops (a backend flushes its statistics as it exits). They are "
            f"compared with the distinct codes asked for: those wrk sent (bench/lua/codes.lua counts them) "
            f"plus {len(data.unknown_checked)} codes outside the pool that the check after the run asks for. The "
            "runs with the access log off and with tracking off each draw from a pool (and check codes) of their "
            "own, and their processes share the count, which covers all three; the paced run after the first "
            "draws from a fourth pool, whose distinct codes are counted too. The service's Redis-miss counter "
            "is shown too."
        )
    order = {key: n for n, key in enumerate(workloads.DISPLAY_ORDER)}

    def place(key: str) -> tuple[int, int]:
        """Each row's rank; its runs with the access log off and with tracking off right after its
        production-settings run."""
        twin = next((n for n, suffix in enumerate(report.TWIN_SUFFIXES, 1) if key.endswith(suffix)), 0)
        return order.get(report.base_key(key), len(order)), twin

    results.sort(key=lambda result: place(result.key))
    bench.lookups = _merge_lookups(bench.lookups)
    titles = {result.title: place(result.key) for result in results}
    bench.lookups.sort(key=lambda row: titles.get(row[0], (len(order), 0)))
    for result in results:
        for check in result.checks:
            figures.append(Figure(
                f"{result.title}: SQL lookups", check.text, "<= 1 per unknown code per miss-TTL",
                report.Verdict(report.MET if check.passed else report.NOT_MET),
            ))
    notes += [
        f"Query workload: links have the default query policy (forward), under the operator deny list "
        f"LINKGATE_QUERY_DENY={seed.QUERY_DENY}; the visitor sends `?{seed.VISITOR_QUERY}` and must get "
        f"the target (whose own `ref` wins) plus `&{seed.FORWARDED_QUERY}`.",
        "Nothing is flushed between workloads; the in-process cache and Redis warm up as they would in "
        "production. Order of the runs: unknown codes (a service process of its own); then Redis is "
        "warmed with every seeded link by `python -m service warm-cache` (imports do not fill it, and the "
        "uniform runs measure the steady state where Redis holds the links being visited); then hot, "
        "uniform, uniform with a query and creates on a second process, then the 10,000-link run on a "
        "third; a ceiling run right before and right after each (and each redirect workload's run with "
        "the access log off, on a twin process, right after its own, between the same two ceiling runs).",
        "Redis and PostgreSQL are not pinned: they share both cores with the server and wrk.",
        "Memory per cached link is Redis's MEMORY USAGE (key, value, object headers, main-dict entry); "
        "the TTL's entry in the expires dict (about 24-32 B) is not in it.",
    ]
    machine_info["load average at end (1, 5, 15 min)"] = machine.load_average()
    text_report = Report(
        date=started.strftime("%Y-%m-%d %H:%M UTC"),
        machine=machine_info,
        versions=machine.versions(postgres=pg_version, redis=redis_version),
        settings=_settings_text(config, bench, backend),
        ceilings=ceilings,
        workloads=results,
        figures=figures,
        postgres=postgres,
        lookups=bench.lookups,
        notes=notes,
    )
    markdown, code = report.render(text_report)
    config.results.write_text(markdown)
    log("")
    log(markdown)
    log(f"bench: wrote {config.results}")
    return code


def _merge_lookups(rows: list[tuple[str, dict[str, float]]]) -> list[tuple[str, dict[str, float]]]:
    """One row per workload: the halves of an on-off-off-on pair add up."""
    merged: dict[str, dict[str, float]] = {}
    for title, counts in rows:
        into = merged.setdefault(title, {})
        for name, value in counts.items():
            into[name] = into.get(name, 0.0) + value
    return list(merged.items())


def storage_links(config: Config, storage: str) -> int:
    return config.links if storage == "main" else config.small_links


def _scaling_figure(config: Config, results: list[WorkloadResult], lookups) -> Figure:
    """Uniform throughput over the small data set against the large one: within 20%."""
    found = {result.key: result for result in results}
    small_result, uniform = found.get("uniform_small"), found.get("uniform")
    if small_result is not None and uniform is not None and small_result.wrk and uniform.wrk:
        shares = dict(lookups)
        sql = [
            f"{counts['sql'] / total:.0%}" if (total := sum(counts.values())) else "-"
            for counts in (shares.get(small_result.title, {}), shares.get(uniform.title, {}))
        ]
        measured = (
            f"{config.small_links:,}: {small_result.wrk.requests_per_s:,.0f} req/s, "
            f"{config.links:,}: {uniform.wrk.requests_per_s:,.0f} req/s, ratio "
            f"{report.scaling_ratio(small_result.wrk.requests_per_s, uniform.wrk.requests_per_s):.2f} "
            f"(lookups answered by SQL: {sql[0]} and {sql[1]})"
        )
    else:
        measured = "a run is missing"
    return Figure(
        f"uniform throughput, {config.small_links:,} vs {config.links:,} links", measured,
        "within 20% (slower/faster >= 0.80)", report.judge_scaling(small_result, uniform),
    )


def _sql_lookup_checks(
    runs: WorkloadResult | list[WorkloadResult],
    before: tuple[int, int] | None,
    after: tuple[int, int] | None,
    redis_misses: list[int],
    *,
    extra_codes: int,
    loads_per_code: int,
) -> list[Check]:
    """At most one SQL lookup per unknown code per miss-TTL: wrk's distinct codes plus the checked ones.

    `runs`: the wrk runs the SQL counts span, with their paced runs (each with codes of its own).
    """
    runs = runs if isinstance(runs, list) else [runs]
    sent = [run.wrk.distinct_paths if run.wrk else None for run in runs]
    # A paced run draws from a pool of its own (workloads.Data.unknown_paced_file).
    sent += [run.paced.distinct_paths for run in runs if run.paced is not None]
    distinct = None if None in sent else sum(sent)
    if distinct is None:
        return [Check("wrk did not report the distinct codes it sent", False)]
    codes = distinct + extra_codes
    allowed = codes * loads_per_code
    misses = redis_misses[0] if redis_misses else None
    misses_text = f"{misses:,}" if misses is not None else "not counted"
    if before is not None and after is not None:
        lookups, seq_scans = after[0] - before[0], after[1] - before[1]
        if seq_scans:
            return [Check(
                f"SQL lookups not countable: {seq_scans} sequential scans of links "
                f"(index scans {lookups:,}, distinct unknown codes asked for {codes:,})",
                False,
            )]
        ok = lookups <= allowed
        return [Check(
            f"SQL lookups by code {lookups:,} {'<=' if ok else '>'} {loads_per_code} x {codes:,} distinct unknown "
            f"codes asked for ({distinct:,} by wrk, {extra_codes} by the check after it; PostgreSQL idx_scan of "
            f"uq_links_code; Redis misses during the wrk run {misses_text})",
            ok,
        )]
    if misses is None:
        return [Check("neither SQL lookups nor Redis misses could be counted", False)]
    # SQLite keeps no such statistics: the service's Redis misses bound its SQL loads
    # (concurrent misses of one code share one load, so this is stricter than needed).
    ok = misses <= distinct * loads_per_code
    return [Check(
        f"Redis misses {misses:,} {'<=' if ok else '>'} {loads_per_code} x {distinct:,} distinct unknown codes "
        "sent by wrk",
        ok,
    )]


async def _code_lookups(storage: stack.Storage) -> tuple[int, int] | None:
    """SQL lookups by code so far, or None (then the check falls back on the Redis-miss counter)."""
    try:
        return await storage.code_lookups()
    except Exception as exc:
        log(f"  could not count SQL lookups: {exc}")
        return None


def _pinned(cpu: int | None, func):
    """Run `func` on the server's CPU, as the hot path would."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return func()
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        return func()
    finally:
        os.sched_setaffinity(0, previous)


async def _used_memory(redis_url: str | None) -> int | None:
    if redis_url is None:
        return None
    client = aioredis.Redis.from_url(redis_url)
    try:
        return int((await client.info("memory"))["used_memory"])
    finally:
        await client.aclose()


async def _count_keys(redis_url: str, prefix: str) -> int:
    client = aioredis.Redis.from_url(redis_url, socket_timeout=30)
    try:
        return sum([1 async for _ in client.scan_iter(match=f"{prefix}*", count=5000)])
    finally:
        await client.aclose()


async def _memory_growth(redis_url: str | None, prefix: str, used_before: int | None) -> tuple[int, int] | None:
    """(bytes INFO used_memory grew by, keys under the prefix now) since `used_before`."""
    if redis_url is None or used_before is None:
        return None
    used_after = await _used_memory(redis_url)
    return (used_after - used_before if used_after is not None else 0), await _count_keys(redis_url, prefix)


async def _memory_figure(
    redis_url: str | None, prefix: str, growths: list[tuple[str, tuple[int, int] | None]]
) -> Figure:
    name = "Redis memory per cached link (80-character URL)"
    target = f"<= {report.MAX_BYTES_PER_CACHED_LINK:.0f} B"
    if redis_url is None:
        return Figure(name, "not measured (fakeredis)", target, report.judge_memory(None))
    measured = await redis_memory(redis_url, prefix)
    if measured is None:
        return Figure(name, "no cached links found", target, report.judge_memory(None))
    usage, value_length, keys = measured
    # INFO used_memory over the keys that appeared meanwhile: includes the expires entry and
    # the hash tables' growth, but Redis is shared, so only a large key count makes it telling.
    extra = ""
    previous_keys = 0
    for label, growth in growths:
        if growth is None:
            continue
        grown, keys_now = growth
        added = keys_now - previous_keys
        previous_keys = keys_now
        if added >= 1000:
            extra += f"; INFO used_memory grew {grown / added:.0f} B per key {label} ({added:,} keys)"
    return Figure(
        name,
        f"{usage:.0f} B (MEMORY USAGE, mean of {min(keys, 1000):,} keys; values {value_length:.0f} B; "
        f"{keys:,} keys under the prefix after the uniform run{extra})",
        target,
        report.judge_memory(usage),
    )


def _settings_text(config: Config, bench: Bench, backend: str) -> dict[str, str]:
    pin = (
        f"server `taskset -c {bench.server_cpu}`, wrk `taskset -c {bench.wrk_cpu}`"
        if bench.server_cpu is not None else "none (one core)"
    )
    return {
        "storage": backend,
        "service": "`python -m service serve` (uvicorn, uvloop, httptools) with the production settings "
        f"of deploy/k8s/base/settings.env: {_settings_env_text()}; every other setting at its default "
        "(local cache 50,000 links / 1 s, Redis TTL 86400 s, miss TTL 30 s, SQL pool 10, log buffer 20,000 "
        "lines); its stdout (access lines included) is a pipe the bench drains, as a container runtime does",
        "overrides": "; ".join(f"LINKGATE_{name.upper()}: {why}" for name, why in OVERRIDES.items()),
        "access log off": "each redirect workload runs a second time, right after, on a second service "
        "process with the same settings and LINKGATE_ACCESS_LOG=false (the unknown-code run with a pool "
        "of codes of its own)",
        "ceiling": "`uvicorn bench.ceiling:app --loop uvloop --http httptools --no-access-log "
        "--log-level warning --no-server-header --proxy-headers --forwarded-allow-ips "
        f"{production_settings().get('forwarded_allow_ips', '127.0.0.1')}` (the settings `serve` passes), "
        f"run for {config.ceiling_seconds} s (BENCH_CEILING_SECONDS) right before and right after each "
        "workload, with the workload's own wrk script and paths",
        "pinning": pin,
        "load": f"`wrk -t1 -c{config.connections} -d{config.seconds}s --latency -s bench/lua/<script>` "
        "(hot.lua, codes.lua, create.lua)",
        "links": f"{config.links:,} (BENCH_LINKS) and {config.small_links:,} (BENCH_SMALL_LINKS); "
        f"target URLs of {len(seed.target_url(0))} characters like `{seed.target_url(1234)}`",
        "verification": f"{config.verify_samples} answers per workload (BENCH_VERIFY_SAMPLES)",
    }


def _settings_env_text() -> str:
    return ", ".join(
        f"LINKGATE_{name.upper()}={value}" + (" (overridden)" if name in OVERRIDES else "")
        for name, value in production_settings().items()
    )


def main() -> int:
    config = Config.from_env()
    log(f"bench: the service runs with {SETTINGS_ENV.relative_to(stack.REPO)}: {_settings_env_text()}")
    for name, why in OVERRIDES.items():
        log(f"bench: override LINKGATE_{name.upper()}: {why}")
    # Only the bench's own LINKGATE_* settings apply, in this process and the servers.
    for name in [n for n in os.environ if n.startswith("LINKGATE_")]:
        del os.environ[name]
    lock = open(LOCK, "w")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(f"bench: another bench run holds {LOCK}")
    atexit.register(_kill_leftovers)
    try:
        return asyncio.run(_main(config))
    except (KeyboardInterrupt, asyncio.CancelledError):
        log("bench: interrupted; servers stopped and bench data removed")
        return 130


_live: list[Bench] = []


def _kill_leftovers() -> None:
    """Last resort when the event loop could not stop a server (e.g. a second Ctrl-C)."""
    for bench in _live:
        for server in bench.servers:
            if server.process is not None and server.process.poll() is None:
                server.process.kill()


_interrupted: list[str] = []


def check_interrupted() -> None:
    """Raise CancelledError once Ctrl-C or SIGTERM came, even if a cancellation got lost.

    (In Python 3.11, asyncio.wait_for can swallow a cancellation that arrives as
    its inner call finishes, which is exactly what happens when Ctrl-C also
    stops wrk.)
    """
    if _interrupted:
        raise asyncio.CancelledError(_interrupted[0])


async def _main(config: Config) -> int:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def interrupt(name: str) -> None:
        if _interrupted:
            log(f"bench: {name} again: still cleaning up (servers, databases, Redis keys)")
            return
        _interrupted.append(name)
        log(f"bench: {name}: stopping and cleaning up")
        task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupt, sig.name)
    return await run(config)
