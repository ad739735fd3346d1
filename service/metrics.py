"""Prometheus metrics, served at /metrics.

Defined once per process. With more than one worker, `serve` points
PROMETHEUS_MULTIPROC_DIR at a fresh directory before the workers start, so
every worker writes its samples there and /metrics adds them up.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from . import __version__

REQUESTS = Counter(
    "linkgate_http_requests_total",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "linkgate_http_request_duration_seconds",
    "Time from request to response start, by method and route template.",
    ["method", "route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
REDIRECTS = Counter(
    "linkgate_redirects_total", "Redirects answered, by HTTP status.", ["status"]
)
CACHE_LOOKUPS = Counter(
    "linkgate_cache_lookups_total",
    "Redirect lookups by cache layer (local, redis) and result (hit, miss, error).",
    ["layer", "result"],
)
REDIS_ERRORS = Counter(
    "linkgate_redis_errors_total", "Redis commands that failed, by operation.", ["operation"]
)
SQL_ERRORS = Counter(
    "linkgate_sql_errors_total", "SQL operations that failed to reach the database.", ["operation"]
)
QUERY_PARAMS_DROPPED = Counter(
    "linkgate_query_params_over_limit_total",
    "Visitor query parameters dropped because they exceeded a filter limit.",
)
LOG_LINES_DROPPED = Counter(
    "linkgate_log_lines_dropped_total",
    "Log lines (access and application) dropped because stdout did not keep up and the "
    "in-process buffer (LINKGATE_LOG_BUFFER_LINES) was full.",
)
VISITS_RECORDED = Counter(
    "linkgate_visits_recorded_total", "Visits (redirects, 404s, 410s) the redirect handed to the recorder."
)
VISITS_SENT = Counter("linkgate_visits_sent_total", "Visit events appended to the visit stream.")
VISITS_DROPPED = Counter(
    "linkgate_visits_dropped_total",
    "Visit events dropped because the process's backlog was full (Redis away for too long).",
)
VISITS_BACKLOG = Gauge(
    "linkgate_visits_backlog", "Visit events recorded but not yet in the visit stream.", multiprocess_mode="livesum"
)
VISITS_FOLDED = Counter("linkgate_visits_folded_total", "Visit events folded into the SQL aggregates.")
VISITS_DUPLICATES = Counter(
    "linkgate_visits_duplicates_total",
    "Visit stream entries delivered again after they were folded (skipped, not counted twice).",
)
VISITS_INVALID = Counter(
    "linkgate_visits_invalid_total", "Visit stream entries that could not be read (skipped, logged)."
)
VISITS_FOLD_LAG = Histogram(
    "linkgate_visits_fold_lag_seconds",
    "From the oldest visit of a stream entry to the commit that folded it.",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0),
)
LINK_EVENTS_PUBLISHED = Counter(
    "linkgate_link_events_published_total", "Link events the relay published from the outbox."
)
WEBHOOK_DELIVERIES = Counter(
    "linkgate_webhook_deliveries_total", "Webhook delivery tries, by outcome.", ["outcome"]
)
EXPIRY_EVENTS = Counter("linkgate_expiry_events_total", "link.gone events the expiry timers recorded.")
LOCKS_LOST = Counter("linkgate_locks_lost_total", "Coordination locks lost while held (work cancelled).", ["name"])
RECONCILE_REPAIRED = Counter(
    "linkgate_reconcile_repaired_total", "What reconcile set right, by kind.", ["kind"]
)
RECONCILE_SCANNED = Counter("linkgate_reconcile_scanned_total", "Keys and rows reconcile compared.")
BUILD_INFO = Gauge(
    "linkgate_build_info", "Always 1; labels carry the running version.", ["version"],
    multiprocess_mode="max",
)
BUILD_INFO.labels(version=__version__).set(1)


class Tally:
    """Counts hot-path events in plain ints and adds them to their counters in one go.

    A prometheus Counter.inc costs about a microsecond (a lock and, with
    several workers, a write to a shared file); the redirect path counts three
    things per request, so it adds to a dict here instead, and flush() hands
    the sums on. The app flushes every second and before each scrape.
    """

    def __init__(self) -> None:
        self.counts: defaultdict = defaultdict(int)
        # Counts kept by other threads, each read through a function that
        # returns the increase since its last call (LogWriter.take_dropped).
        self.sources: list[tuple[object, Callable[[], int]]] = []

    def add(self, child, amount: int = 1) -> None:
        self.counts[child] += amount

    def flush(self) -> None:
        counts, self.counts = self.counts, defaultdict(int)
        for child, take in self.sources:
            counts[child] += take()
        for child, amount in counts.items():
            if amount:
                child.inc(amount)


TALLY = Tally()


def render() -> tuple[bytes, str]:
    """The exposition text for this process, or for all workers in multiprocess mode."""
    TALLY.flush()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
