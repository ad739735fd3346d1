"""What a run measured, the targets it is held to, the verdicts, and RESULTS.md.

Everything here is pure (no I/O), so the unit tests can pin the ratio and
verdict rules and the table layout without starting anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .wrk import WrkResult

MET, NOT_MET, FAILED, NONE = "met", "not met", "FAILED", "-"

# Socket errors tolerated before a workload's figure stops counting (a share of
# its requests); unexpected statuses are never tolerated.
MAX_SOCKET_ERROR_SHARE = 0.001


@dataclass(frozen=True)
class Target:
    """What one workload must reach, in the same run."""

    text: str
    min_ratio: float | None = None  # requests/s over the ceiling's
    max_p99_ms: float | None = None
    min_rps: float | None = None
    needs_postgres: bool = False


# Every redirect workload, in production settings (issue 10).
MAX_P99_MS = 10.0

TARGETS: dict[str, Target] = {
    "hot": Target(">= 0.70 of ceiling, p99 <= 10 ms", min_ratio=0.70, max_p99_ms=MAX_P99_MS),
    "uniform": Target(">= 0.45 of ceiling, p99 <= 10 ms", min_ratio=0.45, max_p99_ms=MAX_P99_MS),
    "uniform_query": Target(">= 0.35 of ceiling, p99 <= 10 ms", min_ratio=0.35, max_p99_ms=MAX_P99_MS),
    "unknown": Target(
        ">= 0.40 of ceiling, p99 <= 10 ms, <= 1 SQL load per code per miss-TTL", min_ratio=0.40, max_p99_ms=MAX_P99_MS
    ),
    "hot_limited": Target("reported: a Redis script call per visit (issue 11); p99 <= 10 ms", max_p99_ms=MAX_P99_MS),
    "create": Target(">= 3,000 links/s on PostgreSQL, with an API key", min_rps=3000.0, needs_postgres=True),
    "uniform_small": Target("p99 <= 10 ms", max_p99_ms=MAX_P99_MS),
}

# Each redirect workload runs a second time with LINKGATE_ACCESS_LOG=false, under this key suffix;
# with the access log on (production) it must reach this share of that run's requests/s.
LOG_OFF = "_log_off"
MIN_LOG_ON_VS_OFF = 0.90
# And a third time with LINKGATE_TRACKING=false (access log on): counting every visit may cost at
# most 10% of a workload's requests/s (issue 12).
TRACKING_OFF = "_tracking_off"
MIN_TRACKING_ON_VS_OFF = 0.90
TWIN_SUFFIXES = (LOG_OFF, TRACKING_OFF)


def base_key(key: str) -> str:
    """A workload's key without the suffix of a comparison twin."""
    for suffix in TWIN_SUFFIXES:
        if key.endswith(suffix):
            return key.removesuffix(suffix)
    return key


def is_twin(key: str) -> bool:
    return base_key(key) != key

MAX_BYTES_PER_CACHED_LINK = 200.0
MIN_SCALING_RATIO = 0.80  # 10k vs 1M uniform throughput "within 20%"


@dataclass
class Verification:
    """A sample of answers checked after a wrk run (status and exact Location)."""

    checked: int = 0
    failed: int = 0
    examples: list[str] = field(default_factory=list)  # the first few failures, for the log

    @property
    def ok(self) -> bool:
        return self.checked > 0 and self.failed == 0

    def record(self, failure: str | None, *, keep: int = 5) -> None:
        self.checked += 1
        if failure is not None:
            self.failed += 1
            if len(self.examples) < keep:
                self.examples.append(failure)

    def text(self) -> str:
        if not self.checked:
            return "not run"
        return f"{self.checked - self.failed}/{self.checked}" + ("" if self.ok else " FAILED")


@dataclass
class Check:
    """A yes/no fact a workload must also satisfy (e.g. SQL loads per unknown code)."""

    text: str
    passed: bool


@dataclass
class WorkloadResult:
    key: str
    title: str
    wrk: WrkResult | None = None
    # Answers with a status other than the workload's expected one, counted by
    # the service itself (/metrics); None where not counted (the ceiling).
    unexpected_statuses: int | None = None
    verification: Verification | None = None
    checks: list[Check] = field(default_factory=list)
    error: str | None = None
    # The ceiling measured right before and right after this run (their mean): on a
    # shared machine the load moves within minutes, so each ratio uses its neighbours.
    ceiling_rps: float | None = None
    # The same requests again at half this run's rate (wrk pausing between a
    # connection's requests): the latency below saturation, which the p99
    # target is held to (see p99_of).
    paced: WrkResult | None = None

    @property
    def errors(self) -> int | None:
        """Socket errors plus unexpected statuses (wrk's non-2xx/3xx where the service did not count)."""
        if self.wrk is None:
            return None
        statuses = self.unexpected_statuses if self.unexpected_statuses is not None else self.wrk.non_2xx_3xx
        return self.wrk.socket_errors + statuses


@dataclass
class Verdict:
    state: str
    reasons: list[str] = field(default_factory=list)

    def text(self) -> str:
        return self.state + (f" ({'; '.join(self.reasons)})" if self.reasons else "")


def ok_figures(results: list[WorkloadResult]) -> list[float]:
    return [r.wrk.requests_per_s for r in results if r.wrk is not None and r.error is None]


def ceiling_rps(ceilings: list[WorkloadResult]) -> float | None:
    """The mean of the ceiling runs that produced a figure."""
    figures = ok_figures(ceilings)
    return sum(figures) / len(figures) if figures else None


def adjacent_ceiling(before: WorkloadResult | None, after: WorkloadResult | None) -> float | None:
    """The mean of the ceiling runs on either side of a workload (either alone if one failed)."""
    return ceiling_rps([c for c in (before, after) if c is not None])


def ratio(rps: float, ceiling: float | None) -> float | None:
    if not ceiling:
        return None
    return rps / ceiling


def merged_wrk(a: WrkResult, b: WrkResult) -> WrkResult:
    """Two wrk runs of the same requests as one: requests and time added, the worse of each percentile
    (percentiles cannot be added up; the worse one is the honest bound)."""
    requests, duration = a.requests + b.requests, a.duration_s + b.duration_s
    both = a.distinct_paths is not None and b.distinct_paths is not None
    return WrkResult(
        requests=requests,
        duration_s=duration,
        requests_per_s=requests / duration if duration else 0.0,
        latency_avg_ms=(a.latency_avg_ms * a.requests + b.latency_avg_ms * b.requests) / max(requests, 1),
        latency_max_ms=max(a.latency_max_ms, b.latency_max_ms),
        p50_ms=max(a.p50_ms, b.p50_ms),
        p75_ms=max(a.p75_ms, b.p75_ms),
        p90_ms=max(a.p90_ms, b.p90_ms),
        p99_ms=max(a.p99_ms, b.p99_ms),
        connect_errors=a.connect_errors + b.connect_errors,
        read_errors=a.read_errors + b.read_errors,
        write_errors=a.write_errors + b.write_errors,
        timeouts=a.timeouts + b.timeouts,
        non_2xx_3xx=a.non_2xx_3xx + b.non_2xx_3xx,
        # A lower bound of the paths the two sent (their union is not known).
        distinct_paths=max(a.distinct_paths, b.distinct_paths) if both else None,
    )


def merged(first: WorkloadResult, second: WorkloadResult) -> WorkloadResult:
    """The two halves of a workload run in A-B-B-A order (see bench/run.py) as one result."""
    if first.wrk is None or first.error is not None:
        return first
    if second.wrk is None or second.error is not None:
        return second
    verification = None
    if first.verification is not None or second.verification is not None:
        parts = [v for v in (first.verification, second.verification) if v is not None]
        verification = Verification(
            checked=sum(v.checked for v in parts), failed=sum(v.failed for v in parts),
            examples=[e for v in parts for e in v.examples][:5],
        )
    statuses = [r.unexpected_statuses for r in (first, second) if r.unexpected_statuses is not None]
    return WorkloadResult(
        key=first.key,
        title=first.title,
        wrk=merged_wrk(first.wrk, second.wrk),
        unexpected_statuses=sum(statuses) if statuses else None,
        verification=verification,
        checks=first.checks + second.checks,
    )


def p99_of(result: WorkloadResult) -> float | None:
    """The p99 a redirect workload's target is held to: its paced run's, when it had one.

    At saturation wrk's 64 connections always have a request waiting, so the
    mean latency is connections / throughput (Little's law) and the p99 is a
    multiple of it: a measure of the queue wrk builds, not of the service. The
    bare-ASGI ceiling itself passes 10 ms so on a slow machine. The paced
    run offers half the load the workload reached, where a visitor's latency
    is the service's own; the saturated p99 is shown beside it.
    """
    run = result.paced if result.paced is not None else result.wrk
    return None if run is None else run.p99_ms


def judge(result: WorkloadResult, ceiling: float | None, *, postgres: bool) -> Verdict:
    """met / not met against the workload's target; FAILED when it did not run or answered wrong.

    Ratios use the workload's adjacent ceiling when it has one, else `ceiling` (the run's mean).
    """
    if result.ceiling_rps is not None:
        ceiling = result.ceiling_rps
    if result.error is not None:
        return Verdict(FAILED, [result.error])
    if result.wrk is None:
        return Verdict(FAILED, ["no wrk result"])
    if result.verification is not None and not result.verification.ok:
        return Verdict(FAILED, ["verification failed"])
    target = TARGETS.get(result.key)
    reasons: list[str] = []
    wrk = result.wrk
    if result.unexpected_statuses:
        reasons.append(f"{result.unexpected_statuses} unexpected statuses")
    if wrk.socket_errors > MAX_SOCKET_ERROR_SHARE * max(wrk.requests, 1):
        reasons.append(f"{wrk.socket_errors} socket errors")
    reasons += [f"failed: {check.text}" for check in result.checks if not check.passed]
    if target is None:
        return Verdict(NOT_MET if reasons else NONE, reasons)
    if target.min_ratio is not None:
        measured = ratio(wrk.requests_per_s, ceiling)
        if measured is None:
            reasons.append("no ceiling measured")
        elif measured < target.min_ratio:
            reasons.append(f"ratio {below(measured, target.min_ratio)}")
    p99 = p99_of(result)
    if target.max_p99_ms is not None and p99 is not None and p99 > target.max_p99_ms:
        paced = "paced " if result.paced is not None else ""
        reasons.append(f"{paced}p99 {p99:.1f} ms > {target.max_p99_ms:g} ms")
    if target.min_rps is not None and wrk.requests_per_s < target.min_rps:
        reasons.append(f"{wrk.requests_per_s:,.0f}/s < {target.min_rps:,.0f}/s")
    if target.needs_postgres and not postgres:
        reasons.append("not on PostgreSQL")
    return Verdict(NOT_MET if reasons else MET, reasons)


def twin_pairs(workloads: list[WorkloadResult], suffix: str) -> list[tuple[WorkloadResult, WorkloadResult | None]]:
    """Each production-settings redirect run with its twin under `suffix` (None if that is missing)."""
    by_key = {result.key: result for result in workloads}
    return [
        (result, by_key.get(result.key + suffix))
        for result in workloads
        if not is_twin(result.key) and any(r.key == result.key + suffix for r in workloads)
    ]


def log_off_pairs(workloads: list[WorkloadResult]) -> list[tuple[WorkloadResult, WorkloadResult | None]]:
    """Each production-settings redirect run with its access-log-off twin (None if that is missing)."""
    return twin_pairs(workloads, LOG_OFF)


def judge_on_vs_off(on: WorkloadResult, off: WorkloadResult | None, minimum: float) -> tuple[float | None, Verdict]:
    """Requests/s of the production run over its twin's: at least `minimum`."""
    if off is None or on.wrk is None or off.wrk is None or on.error or off.error:
        return None, Verdict(FAILED, ["a run is missing"])
    measured = on.wrk.requests_per_s / off.wrk.requests_per_s if off.wrk.requests_per_s else 0.0
    if measured < minimum:
        return measured, Verdict(NOT_MET, [below(measured, minimum)])
    return measured, Verdict(MET)


def judge_log_on_vs_off(on: WorkloadResult, off: WorkloadResult | None) -> tuple[float | None, Verdict]:
    """Requests/s with the access log on over the same workload with it off: >= MIN_LOG_ON_VS_OFF."""
    return judge_on_vs_off(on, off, MIN_LOG_ON_VS_OFF)


def judge_tracking_on_vs_off(on: WorkloadResult, off: WorkloadResult | None) -> tuple[float | None, Verdict]:
    """Requests/s with visit tracking on over the same workload with it off: >= MIN_TRACKING_ON_VS_OFF."""
    return judge_on_vs_off(on, off, MIN_TRACKING_ON_VS_OFF)


def judge_memory(bytes_per_link: float | None) -> Verdict:
    if bytes_per_link is None:
        return Verdict(NOT_MET, ["not measured (no real Redis)"])
    if bytes_per_link > MAX_BYTES_PER_CACHED_LINK:
        return Verdict(NOT_MET, [f"{bytes_per_link:.0f} B > {MAX_BYTES_PER_CACHED_LINK:.0f} B"])
    return Verdict(MET)


def scaling_ratio(small_rps: float, large_rps: float) -> float:
    """The slower of the two over the faster: 1.0 means no difference."""
    low, high = sorted((small_rps, large_rps))
    return low / high if high else 0.0


def judge_scaling(small: WorkloadResult | None, large: WorkloadResult | None) -> Verdict:
    if small is None or large is None or small.wrk is None or large.wrk is None:
        return Verdict(FAILED, ["a run is missing"])
    if small.error or large.error:
        return Verdict(FAILED, ["a run failed"])
    measured = scaling_ratio(small.wrk.requests_per_s, large.wrk.requests_per_s)
    if measured < MIN_SCALING_RATIO:
        return Verdict(NOT_MET, [below(measured, MIN_SCALING_RATIO)])
    return Verdict(MET)


# --- formatting ----------------------------------------------------------------


def below(measured: float, target: float) -> str:
    """"measured < target", with as many decimals as it takes to tell them apart (0.898 < 0.90, not 0.90 < 0.90)."""
    digits = 2
    while digits < 4 and f"{measured:.{digits}f}" == f"{target:.{digits}f}":
        digits += 1
    return f"{measured:.{digits}f} < {target:.2f}"


def fmt_rps(value: float) -> str:
    return f"{value:,.0f}"


def fmt_ms(value: float) -> str:
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _ceiling_row(ceilings: list[WorkloadResult]) -> list[str]:
    """One row for every ceiling run: mean req/s, the slowest p50 and p99, the runs' spread."""
    ran = [c for c in ceilings if c.wrk is not None and c.error is None]
    title = f"ceiling: bare ASGI 302 ({len(ceilings)} runs, before and after each workload)"
    failed = len(ceilings) - len(ran)
    verified = sum(c.verification.checked for c in ran if c.verification is not None)
    wrong = sum(c.verification.failed for c in ran if c.verification is not None)
    checked = f"{verified - wrong}/{verified}" + (" FAILED" if wrong else "") if verified else "not run"
    if not ran:
        return [title, "-", "-", "-", "-", "-", "-", "", Verdict(FAILED, ["no ceiling run"]).text(), checked]
    figures = ok_figures(ran)
    mean = sum(figures) / len(figures)
    errors = sum(c.errors or 0 for c in ran)
    return [
        title,
        fmt_rps(mean),
        fmt_ms(max(c.wrk.p50_ms for c in ran)),
        fmt_ms(max(c.wrk.p99_ms for c in ran)),
        f"{errors:,}",
        f"{sum(c.wrk.non_2xx_3xx for c in ran):,}",
        f"runs {min(figures):,.0f}-{max(figures):,.0f}",
        "",
        Verdict(FAILED, [f"{failed} runs failed"]).text() if failed else NONE,
        checked,
    ]


def workload_table(
    ceilings: list[WorkloadResult], workloads: list[WorkloadResult], *, postgres: bool
) -> tuple[list[str], list[Verdict]]:
    """The Markdown table of every wrk run, and each service workload's verdict (in order)."""
    ceiling = ceiling_rps(ceilings)
    lines = [
        "| workload | req/s | p50 | p99 | errors | non-2xx/3xx (wrk) | ceiling next to it (req/s) "
        "| vs ceiling | target | verdict | verified |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    row = _ceiling_row(ceilings)
    lines.append("| " + " | ".join([*row[:6], "-", row[6], *row[7:]]) + " |")
    verdicts: list[Verdict] = []
    for result in workloads:
        verdict = judge(result, ceiling, postgres=postgres)
        verdicts.append(verdict)
        target = TARGETS[result.key].text if result.key in TARGETS else ""
        verified = result.verification.text() if result.verification is not None else "not run"
        reference = result.ceiling_rps if result.ceiling_rps is not None else ceiling
        if result.wrk is None:
            cells = [result.title, "-", "-", "-", "-", "-", "-", "-", target, verdict.text(), verified]
        else:
            wrk = result.wrk
            cells = [
                result.title,
                fmt_rps(wrk.requests_per_s),
                fmt_ms(wrk.p50_ms),
                fmt_ms(wrk.p99_ms) + (
                    f" (paced at {fmt_rps(result.paced.requests_per_s)}/s: p50 {fmt_ms(result.paced.p50_ms)}, "
                    f"p99 {fmt_ms(result.paced.p99_ms)})" if result.paced is not None else ""
                ),
                f"{result.errors:,}",
                f"{wrk.non_2xx_3xx:,}",
                fmt_rps(reference) if reference else "-",
                fmt_ratio(ratio(wrk.requests_per_s, reference)),
                target,
                verdict.text(),
                verified,
            ]
        lines.append("| " + " | ".join(cells) + " |")
    if any(c.error is not None or c.wrk is None for c in ceilings):
        verdicts.append(Verdict(FAILED, ["a ceiling run failed"]))
    return lines, verdicts


@dataclass
class Figure:
    """A figure outside the wrk table: seeding rate, memory per link, filter cost, ..."""

    name: str
    measured: str
    target: str = ""
    verdict: Verdict | None = None


# (twin suffix, what differs, the ratio the production run must reach)
COMPARISONS = (
    (LOG_OFF, "access log", MIN_LOG_ON_VS_OFF),
    (TRACKING_OFF, "visit tracking", MIN_TRACKING_ON_VS_OFF),
)


def twin_table(workloads: list[WorkloadResult], suffix: str) -> tuple[list[str], list[Verdict]]:
    """Each redirect workload with the production settings and on its twin, and the ratio."""
    _, what, minimum = next(c for c in COMPARISONS if c[0] == suffix)
    lines = [
        f"| workload | req/s, {what} on | p99 | req/s, {what} off | p99 | on/off | target | verdict |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    verdicts = []
    for on, off in twin_pairs(workloads, suffix):
        measured, verdict = judge_on_vs_off(on, off, minimum)
        verdicts.append(verdict)
        cells = [on.title]
        for run in (on, off):
            ran = run is not None and run.wrk is not None
            cells += [fmt_rps(run.wrk.requests_per_s), fmt_ms(run.wrk.p99_ms)] if ran else ["-", "-"]
        cells += [fmt_ratio(measured), f">= {minimum:.2f}", verdict.text()]
        lines.append("| " + " | ".join(cells) + " |")
    return lines, verdicts


def log_off_table(workloads: list[WorkloadResult]) -> tuple[list[str], list[Verdict]]:
    """Each redirect workload with the access log on (production) and off, and the ratio."""
    return twin_table(workloads, LOG_OFF)


# The table: (label, workload key).
SUMMARY_ROWS = (
    ("hot: one code", "hot"),
    ("uniform over every link", "uniform"),
    ("uniform with query filtering", "uniform_query"),
    ("unknown codes", "unknown"),
)


def summary_table(workloads: list[WorkloadResult], ceiling: float | None, *, postgres: bool) -> list[str]:
    """The targets at a glance: ratios to the ceiling, access log on vs off, p99 of every redirect workload."""
    by_key = {result.key: result for result in workloads}
    lines = ["| workload | target | measured | verdict |", "|---|---|---|---|"]
    for label, key in SUMMARY_ROWS:
        result = by_key.get(key)
        if result is None:
            continue
        target = TARGETS[key]
        reference = result.ceiling_rps if result.ceiling_rps is not None else ceiling
        measured = ratio(result.wrk.requests_per_s, reference) if result.wrk is not None else None
        ok = measured is not None and measured >= (target.min_ratio or 0.0) and result.error is None
        verdict = judge(result, ceiling, postgres=postgres)
        state = FAILED if verdict.state == FAILED else (MET if ok else NOT_MET)
        lines.append(f"| {label} | >= {target.min_ratio:.2f} of ceiling | {fmt_ratio(measured)} | {state} |")
    for suffix, what, minimum in COMPARISONS:
        pairs = twin_pairs(workloads, suffix)
        if not pairs:
            continue
        judged = [(on, *judge_on_vs_off(on, off, minimum)) for on, off in pairs]
        states = {verdict.state for _, _, verdict in judged}
        state = FAILED if FAILED in states else (NOT_MET if NOT_MET in states else MET)
        measured = ", ".join(f"{on.key} {fmt_ratio(value)}" for on, value, _ in judged)
        lines.append(f"| {what} on vs off | on >= {minimum:.2f} of off, every workload "
                     f"| {measured} | {state} |")
    redirects = [
        result for result in workloads
        if not is_twin(result.key) and TARGETS.get(result.key, Target("")).max_p99_ms is not None
    ]
    if redirects:
        slow = [r for r in redirects if r.wrk is None or (p99_of(r) or 0.0) > MAX_P99_MS]
        measured = ", ".join(f"{r.key} {fmt_ms(p99_of(r)) if r.wrk else '-'}" for r in redirects)
        state = NOT_MET if slow else MET
        if any(r.wrk is None for r in redirects):
            state = FAILED
        label = "p99, every redirect workload"
        if any(r.paced is not None for r in redirects):
            label += " (at half the rate it reached; saturated p99 in the tables below)"
        lines.append(f"| {label} | <= {MAX_P99_MS:g} ms | {measured} | {state} |")
    return lines


def figures_table(figures: list[Figure]) -> list[str]:
    lines = ["| figure | measured | target | verdict |", "|---|---|---|---|"]
    for figure in figures:
        verdict = figure.verdict.text() if figure.verdict is not None else NONE
        lines.append(f"| {figure.name} | {figure.measured} | {figure.target or NONE} | {verdict} |")
    return lines


def lookups_table(rows: list[tuple[str, dict[str, float]]]) -> list[str]:
    """Shares of each workload's redirect lookups answered by memory, Redis and SQL (the service's counters)."""
    lines = [
        "| workload | lookups | local memory | Redis | SQL (Redis miss) | Redis error |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for title, counts in rows:
        total = sum(counts.values())
        if not total:
            lines.append(f"| {title} | 0 | - | - | - | - |")
            continue
        shares = [f"{counts.get(k, 0.0) / total:.1%}" for k in ("local", "redis", "sql", "error")]
        lines.append(f"| {title} | {total:,.0f} | " + " | ".join(shares) + " |")
    return lines


def exit_code(verdicts: list[Verdict]) -> int:
    """Non-zero when any workload FAILED (wrong answers or no run); unmet targets are results, not failures."""
    return 1 if any(v.state == FAILED for v in verdicts) else 0


@dataclass
class Report:
    """Everything RESULTS.md shows."""

    date: str
    machine: dict[str, str]
    versions: dict[str, str]
    settings: dict[str, str]
    ceilings: list[WorkloadResult]
    workloads: list[WorkloadResult]
    figures: list[Figure]
    postgres: bool
    lookups: list[tuple[str, dict[str, float]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def render(report: Report) -> tuple[str, int]:
    """RESULTS.md's text, and the exit code the run deserves."""
    table, verdicts = workload_table(report.ceilings, report.workloads, postgres=report.postgres)
    log_off, log_off_verdicts = log_off_table(report.workloads)
    tracking_off, tracking_off_verdicts = twin_table(report.workloads, TRACKING_OFF)
    verdicts += log_off_verdicts + tracking_off_verdicts
    verdicts += [f.verdict for f in report.figures if f.verdict is not None]
    ran = ok_figures(report.ceilings)
    spread = f"{min(ran):,.0f}-{max(ran):,.0f} req/s" if ran else "not measured"
    out = [
        "# linkgate benchmark results",
        "",
        f"Written by `python -m bench` (`make bench`) on {report.date}, with the production settings "
        "(deploy/k8s/base/settings.env; the overrides are listed under Settings).",
        "",
        "## Targets",
        "",
        *summary_table(report.workloads, ceiling_rps(report.ceilings), postgres=report.postgres),
        "",
        f"Ratios are to the bare-ASGI ceiling measured right before and after each workload "
        f"(it ran at {spread} within this run).",
        "",
        "## Access log on (production) vs off",
        "",
        *log_off,
        "",
        "Between the same two ceiling runs, each redirect workload runs on a service process with the "
        "production settings, on a twin with LINKGATE_ACCESS_LOG=false and on one with LINKGATE_TRACKING=false, "
        "in halves: production, access log off, tracking off, tracking off, access log off, production, so each "
        "pair is centred on the same moment (unknown codes: whole runs in that order, each twin with a pool of "
        "codes of its own); each figure adds up its two halves (requests over time; "
        "the worse half's percentiles). The production process then runs it once more, paced at about half "
        "its rate: the p99 target is judged on that run.",
        "",
        "## Visit tracking on (production) vs off",
        "",
        *tracking_off,
        "",
        "The twin with LINKGATE_TRACKING=false has the production settings otherwise (access log on), and "
        "runs between the same two ceiling runs, in the order above. Without tracking no visit event is made: "
        "nothing is counted, and the stats stay empty.",
        "",
        "## Redirects and creates under wrk",
        "",
        *table,
        "",
        "`vs ceiling` is requests/s over the ceiling next to the workload: the mean of two ceiling runs "
        "sent the same requests (the workload's wrk script and paths) right before and right after it, in "
        "this same run; the machine is shared, and its load moves within minutes. `errors` counts socket "
        "errors plus answers whose status was not the one the workload expects, as the service's own "
        "/metrics counted them (the ceiling: wrk's non-2xx/3xx). "
        "`verified` is how many sampled answers, checked after the wrk run with httpx, had the "
        "expected status and exact Location.",
        "",
        "## Where redirect lookups were answered",
        "",
        *lookups_table(report.lookups),
        "",
        "From the service's linkgate_cache_lookups_total at /metrics, before and after each wrk run.",
        "",
        "## Other figures",
        "",
        *figures_table(report.figures),
        "",
        "## Machine",
        "",
        *[f"- {name}: {value}" for name, value in report.machine.items()],
        "",
        "## Versions",
        "",
        *[f"- {name}: {value}" for name, value in report.versions.items()],
        "",
        "## Settings",
        "",
        *[f"- {name}: {value}" for name, value in report.settings.items()],
    ]
    if report.notes:
        out += ["", "## Notes", "", *[f"- {note}" for note in report.notes]]
    return "\n".join(out) + "\n", exit_code(verdicts)
