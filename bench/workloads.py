"""What `python -m bench` sends to the service: one row per workload, one per service process.

Adding a workload means adding a row to WORKLOADS (and its target to
report.TARGETS): its wrk script and the script's arguments, the status every
answer must have, how a sample of answers is checked after the run, and the
service process that serves it. The run (bench/run.py) measures each row
between two ceiling runs sent the same requests, in the order of PROCESSES and
then of WORKLOADS.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from . import seed, verify
from .report import Verification


@dataclass
class Data:
    """What the run seeded and wrote before the first workload: what the rows' arguments and checks use."""

    links: int
    small_links: int
    verify_samples: int
    rng: random.Random
    run_tag: str
    seeded: seed.Seeded
    seeded_small: seed.Seeded
    codes_file: Path
    small_file: Path
    unknown_file: Path
    unknown_pool: list[str]
    # Unknown codes wrk never sends, asked for by the check after the run.
    unknown_checked: list[str]
    # The same for the run with the access log off: codes of its own, so its
    # misses are not already cached by the first run.
    unknown_off_file: Path
    unknown_off_pool: list[str]
    unknown_off_checked: list[str]
    # And for the run with tracking off.
    unknown_untracked_file: Path
    unknown_untracked_pool: list[str]
    unknown_untracked_checked: list[str]
    # The paced run after it (the p99 at half the rate) draws from a third pool:
    # codes the first run did not send would otherwise cost SQL loads that none
    # of the counted runs' distinct codes account for.
    unknown_paced_file: Path
    # The admin key the create workload sends, and the link with max_visits.
    access: seed.Access

    @property
    def hot_index(self) -> int:
        return self.links // 2

    @property
    def hot_code(self) -> str:
        return self.seeded.codes[self.hot_index]

    def random_seed(self) -> str:
        """A fresh seed for codes.lua, so each run draws its own codes."""
        return str(self.rng.randrange(1, 2**31))


@dataclass(frozen=True)
class Workload:
    """One wrk run against the service, and the check of its answers after it."""

    key: str
    title: Callable[[Data], str]
    script: str  # in bench/lua/
    args: Callable[[Data], list[str]]  # what the script's init(args) gets
    expected_status: int
    check: Callable[[Data, str], Awaitable[Verification]]  # (data, the server's base URL)
    process: str  # the name of the Process that serves it
    # A redirect workload also runs with the access log off and with tracking
    # off, beside the production-settings run; these give those runs'
    # arguments and checks when they differ.
    redirect: bool = True
    args_log_off: Callable[[Data], list[str]] | None = None
    check_log_off: Callable[[Data, str], Awaitable[Verification]] | None = None
    args_tracking_off: Callable[[Data], list[str]] | None = None
    check_tracking_off: Callable[[Data, str], Awaitable[Verification]] | None = None
    # The paced run's arguments, when they differ from `args`.
    args_paced: Callable[[Data], list[str]] | None = None


@dataclass(frozen=True)
class Process:
    """A `python -m service serve` process, started for its workloads and stopped after them."""

    name: str
    storage: str  # "main" (BENCH_LINKS links) or "small" (BENCH_SMALL_LINKS)
    what: str  # for the log
    # Count PostgreSQL's SQL lookups by code around this process and its access-log-off twin
    # (they must be the only clients of the database).
    counts_sql_lookups: bool = False
    # Fill Redis with every link of its storage first (`python -m service warm-cache`).
    warms_redis_first: bool = False


PROCESSES: tuple[Process, ...] = (
    # Unknown codes first, on a process of their own: stopping it closes its SQL
    # connections, which makes PostgreSQL's per-index counters exact (Storage.code_lookups).
    Process("service-unknown", "main", "unknown codes", counts_sql_lookups=True),
    # The uniform runs measure the steady state, where Redis holds the links
    # being visited (imports do not fill it).
    Process("service", "main", "the other workloads", warms_redis_first=True),
    Process("service-small", "small", "the smaller data set", warms_redis_first=True),
)


def _redirects(data: Data, base_url: str, *, query: str = "") -> Awaitable[Verification]:
    sample = verify.seeded_sample(data.seeded.codes, data.verify_samples, data.rng, query=query)
    return verify.redirects(base_url, sample, query=query)


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        key="unknown",
        title=lambda d: f"unknown codes (pool of {len(d.unknown_pool):,})",
        script="codes.lua",
        args=lambda d: [str(d.unknown_file), "", d.random_seed()],
        expected_status=404,
        check=lambda d, url: verify.not_found(url, d.unknown_checked),
        process="service-unknown",
        args_log_off=lambda d: [str(d.unknown_off_file), "", d.random_seed()],
        args_paced=lambda d: [str(d.unknown_paced_file), "", d.random_seed()],
        check_log_off=lambda d, url: verify.not_found(url, d.unknown_off_checked),
        args_tracking_off=lambda d: [str(d.unknown_untracked_file), "", d.random_seed()],
        check_tracking_off=lambda d, url: verify.not_found(url, d.unknown_untracked_checked),
    ),
    Workload(
        key="hot",
        title=lambda d: "hot: one code",
        script="hot.lua",
        args=lambda d: [d.hot_code],
        expected_status=302,
        check=lambda d, url: verify.redirects(
            url, [(d.hot_code, seed.target_url(d.hot_index))] * d.verify_samples
        ),
        process="service",
    ),
    Workload(
        key="hot_limited",
        title=lambda d: "hot: one code with max_visits (a browser's visits, each counted)",
        script="hot.lua",
        args=lambda d: [d.access.limited_code, seed.BROWSER_AGENT],
        expected_status=302,
        check=lambda d, url: verify.redirects(url, [(d.access.limited_code, seed.LIMITED_URL)] * d.verify_samples),
        process="service",
    ),
    Workload(
        key="uniform",
        title=lambda d: f"uniform over {d.links:,} links",
        script="codes.lua",
        args=lambda d: [str(d.codes_file), "", d.random_seed()],
        expected_status=302,
        check=lambda d, url: _redirects(d, url),
        process="service",
    ),
    Workload(
        key="uniform_query",
        title=lambda d: f"uniform over {d.links:,}, with `?{seed.VISITOR_QUERY}`",
        script="codes.lua",
        args=lambda d: [str(d.codes_file), "?" + seed.VISITOR_QUERY, d.random_seed()],
        expected_status=302,
        check=lambda d, url: _redirects(d, url, query=seed.VISITOR_QUERY),
        process="service",
    ),
    Workload(
        key="create",
        title=lambda d: "create: POST /api/v1/links",
        script="create.lua",
        args=lambda d: [d.run_tag, d.access.api_key],
        expected_status=201,
        check=lambda d, url: verify.creates(url, d.run_tag, d.verify_samples, d.access.api_key),
        process="service",
        redirect=False,
    ),
    Workload(
        key="uniform_small",
        title=lambda d: f"uniform over {d.small_links:,} links",
        script="codes.lua",
        args=lambda d: [str(d.small_file), "", d.random_seed()],
        expected_status=302,
        check=lambda d, url: verify.redirects(
            url, verify.seeded_sample(d.seeded_small.codes, d.verify_samples, d.rng)
        ),
        process="service-small",
    ),
)

# The order of the rows in RESULTS.md (the run order is PROCESSES, then WORKLOADS).
DISPLAY_ORDER = ("hot", "hot_limited", "uniform", "uniform_query", "unknown", "create", "uniform_small")


def of_process(name: str) -> list[Workload]:
    return [workload for workload in WORKLOADS if workload.process == name]
