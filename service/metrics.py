"""Prometheus metrics, served at /metrics.

Defined once per process. With more than one worker, `serve` points
PROMETHEUS_MULTIPROC_DIR at a fresh directory before the workers start, so
every worker writes its samples there and /metrics adds them up.
"""

from __future__ import annotations

import os

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
BUILD_INFO = Gauge(
    "linkgate_build_info", "Always 1; labels carry the running version.", ["version"],
    multiprocess_mode="max",
)
BUILD_INFO.labels(version=__version__).set(1)


def render() -> tuple[bytes, str]:
    """The exposition text for this process, or for all workers in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
