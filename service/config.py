"""Settings: every default lives here and only here.

Each field is read from an environment variable named ``LINKGATE_<FIELD>``
(upper case), or from a file of that name in the secrets directory
(``LINKGATE_SECRETS_DIR``, e.g. a mounted Kubernetes Secret), so the salt and
the database password never have to sit in a plain environment variable.
The prefix matters on Kubernetes: a Service named ``redis`` injects
``REDIS_PORT`` and friends into every pod, and unprefixed names would collide.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "LINKGATE_"
DEV_HASHIDS_SALT = "linkgate-development-salt-do-not-use-in-production"
HASHIDS_DEFAULT_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ1234567890"
# hashids takes these out of the alphabet to separate numbers; what is left
# carries the id. Too little left and codes grow past CODE_PATTERN's 64.
HASHIDS_SEPARATORS = frozenset("cfhistuCFHISTU")

CommaList = Annotated[list[str], NoDecode]


def _split_list(value: object) -> object:
    """Env vars carry lists as comma-separated text (``"http,https"``)."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            return json.loads(stripped)
        return [item.strip() for item in stripped.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Every operator-facing knob of linkgate, with its default."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        extra="ignore",
    )

    # --- deployment -------------------------------------------------------
    env: Literal["development", "production"] = Field(
        "development",
        description="'production' refuses to start without a real hashids salt.",
    )
    host: str = Field("127.0.0.1", description="Address `python -m service serve` binds.")
    port: int = Field(8000, ge=1, le=65535, description="Port `python -m service serve` binds.")
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes of `serve`.")
    trusted_proxies: CommaList = Field(
        default_factory=list,
        description=(
            "CIDRs of proxies (an ingress) whose X-Forwarded-For is believed: the client address is then "
            "the rightmost entry not in them. Empty: the peer address, always."
        ),
    )
    public_base_url: str = Field(
        "http://127.0.0.1:8000",
        description="What every short_url starts with; its host is refused as a link target.",
    )

    # --- storage ----------------------------------------------------------
    database_url: str = Field(
        "sqlite+aiosqlite:///./linkgate.db",
        description="SQLAlchemy async URL: postgresql+asyncpg://... or sqlite+aiosqlite:///file.db.",
    )
    database_read_url: str | None = Field(
        None, description="Optional read replica used only by the redirect read path."
    )
    database_pool_size: int = Field(10, ge=1, le=200, description="SQL connections per process.")
    redis_url: str | None = Field(
        None, description="redis://host:port/db; unset means an in-process fakeredis."
    )
    redis_cluster: bool = Field(
        False,
        description=(
            "LINKGATE_REDIS_URL is one node of a Redis Cluster (any node; the client learns the others). "
            "Every key of one link shares a hash tag, so nothing linkgate does spans two slots."
        ),
    )
    redis_key_prefix: str = Field("lg:", description="Prefix of every Redis key linkgate writes.")

    # --- codes ------------------------------------------------------------
    hashids_salt: str | None = Field(
        None, description="Secret salt of generated codes; required in production."
    )
    hashids_min_length: int = Field(6, ge=1, le=32, description="Shortest generated code.")
    hashids_alphabet: str = Field(
        HASHIDS_DEFAULT_ALPHABET, description="Characters of generated codes (16 or more, unique)."
    )

    # --- redirects --------------------------------------------------------
    default_redirect_status: Literal[301, 302, 307, 308] = Field(
        302, description="Status of links created without redirect_status."
    )
    permanent_redirect_max_age: int = Field(
        3600, ge=0, description="Cache-Control max-age (seconds) sent with 301 and 308."
    )

    gone_redirect_url: str | None = Field(
        None,
        description=(
            "Where visitors of a link that is gone (expired, used up, disabled, blocked, deleted) and has no "
            "fallback_url of its own are sent (302); unset: a 410 Gone page."
        ),
    )
    max_visits_count_bots: bool = Field(
        False,
        description="Count crawlers and chat-app link previews toward max_visits (by default they do not use it up).",
    )

    # --- target URLs ------------------------------------------------------
    allowed_schemes: CommaList = Field(
        default_factory=lambda: ["http", "https"],
        description="Schemes a target URL may use.",
    )
    max_url_length: int = Field(4096, ge=32, le=65536, description="Longest target URL accepted.")
    allow_private_targets: bool = Field(
        False,
        description="Allow IP-literal targets in loopback, private, link-local or reserved ranges.",
    )
    blocked_hosts: CommaList = Field(
        default_factory=list,
        description="Further target hosts refused (the public base URL's host always is).",
    )

    # --- cache ------------------------------------------------------------
    cache_ttl_seconds: int = Field(86400, ge=1, description="Redis TTL of a cached link.")
    cache_miss_ttl_seconds: int = Field(
        30, ge=1, description="Redis TTL of a cached 'no such code' answer."
    )
    local_cache_size: int = Field(
        50000, ge=0, description="Links held in each process's in-memory cache (0 disables)."
    )
    local_cache_ttl_seconds: float = Field(
        1.0,
        ge=0,
        le=60,
        description="Longest a replica serves a link from memory: the bound on cross-replica staleness.",
    )

    # --- API --------------------------------------------------------------
    list_default_limit: int = Field(20, ge=1, le=1000, description="Page size of GET /api/v1/links.")
    list_max_limit: int = Field(100, ge=1, le=1000, description="Largest page a client may ask for.")
    sql_retry_after_seconds: int = Field(
        5, ge=1, description="Retry-After sent with 503 when SQL is unreachable."
    )

    # --- access control ---------------------------------------------------
    api_key_pepper: str | None = Field(
        None,
        description=(
            "Secret mixed into every stored key hash (HMAC-SHA256); unset: plain SHA-256. "
            "Changing it invalidates every key."
        ),
    )
    api_key_cache_ttl_seconds: float = Field(
        2.0, ge=0, le=60,
        description="How long a replica trusts a key it checked: the bound on a revocation reaching every replica.",
    )
    authz_model_file: str | None = Field(
        None, description="casbin model (.conf) to use instead of the one shipped in the package."
    )
    authz_policy_file: str | None = Field(
        None, description="casbin policy (.csv) of roles and permissions to use instead of the shipped one."
    )
    rate_limit_per_key: str = Field(
        "6000/minute",
        description=(
            "API requests of one key (N/second, N/minute or N/hour; off for none): 100 a second sustained, "
            "well above an interactive client, so only a runaway script meets it."
        ),
    )
    rate_limit_per_address: str = Field(
        "60/minute",
        description=(
            "API requests without a valid key from one address, failed authentication included: "
            "a client with a key never needs many, a key guesser does."
        ),
    )
    unknown_code_limit_per_address: str = Field(
        "120/minute",
        description=(
            "Redirects of codes that do not exist from one address: people mistype a few, "
            "a code scanner thousands. Known codes always redirect."
        ),
    )

    password_attempts_per_link: str = Field(
        "30/minute",
        description=(
            "Password attempts on one password-protected link, from anyone (the form or the X-Link-Password "
            "header): bounds a guesser spread over many addresses."
        ),
    )
    password_attempts_per_address: str = Field(
        "10/minute",
        description="Password attempts from one address, on any link: a person mistypes a few, a guesser many.",
    )

    # --- pages for visitors (service/pages) -------------------------------
    templates_dir: str | None = Field(
        None,
        description=(
            "A directory of templates that replace the shipped ones by file name (base.html, not_found.html, "
            "gone.html, password.html, preview.html, unlocked.html, error.html); the rest stay as shipped."
        ),
    )

    # --- query filter (the gateway policy) --------------------------------
    query_default_mode: Literal["forward", "drop"] = Field(
        "forward", description="Mode of links that carry no query policy of their own."
    )
    query_deny: CommaList = Field(
        default_factory=list,
        description="Parameter name globs stripped from every redirect (e.g. fbclid,gclid,session*).",
    )
    query_max_params: int = Field(64, ge=0, description="Visitor parameters forwarded per request.")
    query_max_name_length: int = Field(128, ge=1, description="Longest forwarded parameter name.")
    query_max_value_length: int = Field(1024, ge=0, description="Longest forwarded parameter value.")
    query_max_location_length: int = Field(
        8192, ge=256, description="Longest Location header (bytes) a redirect may send."
    )
    query_max_add: int = Field(16, ge=0, le=256, description="Most fixed parameters (`add`) in one policy.")
    query_max_patterns: int = Field(32, ge=1, description="Most allow/deny patterns in one policy.")
    query_max_pattern_length: int = Field(128, ge=1, description="Longest allow/deny pattern.")

    # --- visit analytics ----------------------------------------------------
    tracking: bool = Field(
        True,
        description=(
            "Count every redirect and every 404/410 as a visit event (off: no event is made, "
            "the stats stay where they are)."
        ),
    )
    tracking_referrer_path: bool = Field(
        False,
        description="Keep the referrer's path as well as its host (never its query or fragment).",
    )
    tracking_exclude: CommaList = Field(
        default_factory=list,
        description=(
            "CIDRs (your own monitors) whose visits are counted without a visitor hash and without "
            "a referrer."
        ),
    )
    tracking_honour_dnt: bool = Field(
        True,
        description="Count requests with `Sec-GPC: 1` or `DNT: 1` without a visitor hash and without a referrer.",
    )
    tracking_ipv4_prefix: int = Field(
        24, ge=0, le=24,
        description="Bits of an IPv4 address kept in an event (at most 24: a raw address is never kept).",
    )
    tracking_ipv6_prefix: int = Field(
        48, ge=0, le=48,
        description="Bits of an IPv6 address kept in an event (at most 48: a raw address is never kept).",
    )
    visits_buffer_size: int = Field(
        100_000, ge=100, le=10_000_000,
        description=(
            "Visit events one process holds while Redis cannot take them; past this the oldest are "
            "dropped and counted (linkgate_visits_dropped_total)."
        ),
    )
    visits_flush_seconds: float = Field(
        0.25, gt=0, le=0.25,
        description="Longest a visit event waits in the process before it is sent to the visit stream.",
    )
    visits_flush_size: int = Field(
        1000, ge=1, le=10_000,
        description="Events that make the process send at once instead of waiting for the next flush.",
    )
    visits_stream_retention_seconds: int = Field(
        86400, ge=60,
        description=(
            "Age past which visit stream entries are trimmed (XADD MINID), folded or not: how long a "
            "stopped consumer, or another reader of the stream, may fall behind."
        ),
    )
    visits_consumer_in_process: bool = Field(
        True,
        description=(
            "Fold visit events into the stats inside the server process (the embedded default). "
            "Off when `python -m service consume-visits` runs on its own."
        ),
    )
    visits_consumer_batch: int = Field(
        50_000, ge=1, le=100_000,
        description="Visit events a consumer folds in one SQL transaction at most (more: fewer, larger upserts; "
        "a batch is only as large as what waits in the stream).",
    )
    visits_claim_idle_seconds: float = Field(
        30.0, ge=1,
        description=(
            "Events a consumer was handed but has not acknowledged for this long are claimed by another "
            "(a consumer that died mid-batch)."
        ),
    )
    geoip_db: str | None = Field(
        None,
        description=(
            "A MaxMind-format country database (.mmdb) the operator provides; unset: every country is "
            "unknown. Nothing is ever downloaded."
        ),
    )

    # --- coordination (many replicas) ----------------------------------------
    coordination_in_process: bool = Field(
        True,
        description=(
            "Run the outbox relay, webhook deliveries and expiry timers in the server process, one replica "
            "at a time under a Redis lock (the others wait their turn)."
        ),
    )
    lock_ttl_seconds: float = Field(
        15.0, gt=0, le=600,
        description="TTL of the coordination locks; the holder's watchdog extends them every third of it.",
    )
    events_relay_interval_seconds: float = Field(
        0.2, gt=0, le=60,
        description="How often the relay looks for unpublished link events (a commit on this replica wakes it at once).",
    )
    events_stream_max_length: int = Field(
        100_000, ge=100,
        description="Link events the link-event stream keeps (approximate MAXLEN); older ones are trimmed.",
    )
    expiry_interval_seconds: float = Field(
        1.0, gt=0, le=60, description="How often the expiry timers pop links whose valid_until has come.",
    )
    reconcile_batch: int = Field(
        1000, ge=10, le=100_000, description="Keys (or rows) reconcile compares per round trip.",
    )
    webhook_max_attempts: int = Field(
        8, ge=1, le=30,
        description="Tries of one webhook delivery before it is marked failed (backoff doubles from 1 s, max 10 min).",
    )
    webhook_timeout_seconds: float = Field(5.0, gt=0, le=60, description="Timeout of one webhook request.")
    webhook_allow_private: bool = Field(
        False,
        description=(
            "Allow webhook endpoints that resolve to loopback, private, link-local or reserved addresses, "
            "and plain http (for local development only)."
        ),
    )

    # --- logging ----------------------------------------------------------
    log_level: str = Field("INFO", description="Python log level name.")
    access_log: bool = Field(
        True,
        description="One JSON line per request on stdout (INFO: a LINKGATE_LOG_LEVEL above INFO turns it off too).",
    )
    log_buffer_lines: int = Field(
        20_000,
        ge=100,
        le=1_000_000,
        description="Log lines each process holds while stdout is slow; past that, lines are dropped and "
        "counted in linkgate_log_lines_dropped_total, never waited for.",
    )

    @property
    def access_lines(self) -> bool:
        """Whether access lines are written: on, and INFO records not filtered out by the log level."""
        level = logging.getLevelName(self.log_level.upper())
        return self.access_log and isinstance(level, int) and level <= logging.INFO

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Read the environment (and the secrets directory, when one is named) now."""
        secrets_dir = os.environ.get(f"{ENV_PREFIX}SECRETS_DIR") or None
        return cls(_secrets_dir=secrets_dir, **overrides)  # type: ignore[call-arg]

    @field_validator(
        "allowed_schemes", "blocked_hosts", "query_deny", "trusted_proxies", "tracking_exclude", mode="before"
    )
    @classmethod
    def _lists_from_text(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("allowed_schemes")
    @classmethod
    def _lower_schemes(cls, value: list[str]) -> list[str]:
        return [scheme.lower() for scheme in value]

    @field_validator("trusted_proxies", "tracking_exclude")
    @classmethod
    def _are_networks(cls, value: list[str], info) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{info.field_name}: {item!r} is not an address or CIDR") from None
        return value

    @field_validator("rate_limit_per_key", "rate_limit_per_address", "unknown_code_limit_per_address",
                     "password_attempts_per_link", "password_attempts_per_address")
    @classmethod
    def _rate_is_parseable(cls, value: str) -> str:
        from .access.rates import parse_rate  # config stays importable on its own

        parse_rate(value)
        return value.strip().lower()

    @field_validator("api_key_pepper", mode="before")
    @classmethod
    def _pepper_without_whitespace(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("gone_redirect_url")
    @classmethod
    def _gone_url_is_absolute(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("gone_redirect_url must be an absolute http(s) URL")
        return value.strip()

    @field_validator("public_base_url")
    @classmethod
    def _base_url_has_host(cls, value: str) -> str:
        try:
            parts = urlsplit(value.strip())
            parts.port  # noqa: B018 - raises on a port that is not 0-65535
        except ValueError:
            raise ValueError("public_base_url must be an absolute http(s) URL with a valid port") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("public_base_url must be an absolute http(s) URL")
        if "@" in parts.netloc or parts.query or parts.fragment:
            # Short URLs are this plus "/<code>"; a query or fragment would swallow the code.
            raise ValueError("public_base_url must not carry user info, a query or a fragment")
        return value.strip().rstrip("/")

    @field_validator("hashids_salt", mode="before")
    @classmethod
    def _salt_without_whitespace(cls, value: object) -> object:
        # A secret file is read stripped; the same secret in an env var must
        # give the same salt (and codes), trailing newline or not.
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("hashids_alphabet")
    @classmethod
    def _alphabet_is_usable(cls, value: str) -> str:
        if len(set(value)) != len(value) or len(value) < 16:
            raise ValueError("hashids_alphabet needs 16 or more unique characters")
        if any(not (ch.isascii() and (ch.isalnum() or ch in "_-")) for ch in value):
            raise ValueError("hashids_alphabet may hold only [A-Za-z0-9_-]")
        if len(set(value) - HASHIDS_SEPARATORS) < 16:
            raise ValueError(
                "hashids_alphabet needs 16 or more characters besides c, f, h, i, s, t, u "
                "(either case), which hashids keeps as separators"
            )
        return value

    @model_validator(mode="after")
    def _production_needs_salt(self) -> Settings:
        if self.env == "production" and self.uses_dev_salt:
            raise ValueError(
                "LINKGATE_HASHIDS_SALT must be set to a secret of your own when LINKGATE_ENV=production"
            )
        return self

    @model_validator(mode="after")
    def _cluster_needs_a_node(self) -> Settings:
        if self.redis_cluster and not self.redis_url:
            raise ValueError("LINKGATE_REDIS_CLUSTER=true needs LINKGATE_REDIS_URL: one node of the cluster")
        return self

    @property
    def effective_salt(self) -> str:
        return self.hashids_salt or DEV_HASHIDS_SALT

    @property
    def uses_dev_salt(self) -> bool:
        return self.effective_salt == DEV_HASHIDS_SALT

    @property
    def public_host(self) -> str:
        return (urlsplit(self.public_base_url).hostname or "").lower()
