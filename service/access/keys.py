"""API keys: ``lg_<id>_<secret>``, stored as a hash of the secret, checked in constant time.

``<id>`` (12 hex digits) is public: logs, metrics, audit events and the key
API name keys by it. ``<secret>`` is 48 hex digits (192 random bits); only
its SHA-256, or its HMAC-SHA256 under the server's pepper
(``LINKGATE_API_KEY_PEPPER``), is stored, and the whole key is shown once,
when it is made.

Each replica remembers a key it checked for ``LINKGATE_API_KEY_CACHE_TTL_SECONDS``
(2 s): a revocation answers 401 at once on the replica that made it and
within that bound on every other. Expiry is checked on every request.
``last_used_at`` is noted in memory and written in the background, at most
once a minute per key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError

from ..batching import Coalescer
from ..errors import InvalidInput, KeyNameTaken, KeyNotFound, StorageUnavailable, Unauthenticated
from ..store import sql
from ..store.models import ApiKey
from .policy import Permissions

log = logging.getLogger(__name__)
audit = logging.getLogger("linkgate.audit")

KEY_PATTERN = re.compile(r"lg_([0-9a-f]{12})_([0-9a-f]{48})")
# Anything shaped like a key, wherever it stands in a text (a path, a message).
_KEY_IN_TEXT = re.compile(r"(lg_[0-9a-f]{12}_)[0-9a-f]{8,}")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
LAST_USED_EVERY_SECONDS = 60.0
_DURATION = re.compile(r"(\d{1,6})([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def utc_now() -> datetime:
    return datetime.now(UTC)


def redact(text: str) -> str:
    """`text` with the secret of any key in it replaced: for echoing paths and inputs back."""
    return _KEY_IN_TEXT.sub(r"\1<redacted>", text) if "lg_" in text else text


def parse_duration(text: str) -> timedelta:
    """`90d`, `12h`, `30m`, `3600s`, `2w` -> a timedelta; anything else raises ValueError."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration like 90d, 12h, 30m or 2w")
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def key_status(key: ApiKey, now: datetime) -> str:
    if not key.enabled:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"


@dataclass(frozen=True, slots=True)
class Principal:
    """The key a request was authenticated with (never its secret)."""

    id: int
    key_id: str
    name: str
    role: str


@dataclass(frozen=True, slots=True)
class _Checked:
    """What a replica remembers of a key between checks."""

    principal: Principal
    secret_hash: str
    enabled: bool
    expires_at: datetime | None


# Compared against when the key id is unknown, so that answer takes as long as a wrong secret.
_DUMMY_HASH = hashlib.sha256(b"linkgate: no such key").hexdigest()


@dataclass
class KeyService:
    """Key use-cases and request authentication, opened once by the app's lifespan."""

    db: sql.Database
    permissions: Permissions
    pepper: str | None = None
    cache_ttl_seconds: float = 2.0
    clock: Callable[[], datetime] = utc_now
    monotonic: Callable[[], float] = time.monotonic
    _checked: dict[str, tuple[float, _Checked | None]] = field(default_factory=dict)
    _reads: Coalescer | None = None
    _used: dict[int, datetime] = field(default_factory=dict)
    _written: dict[int, float] = field(default_factory=dict)
    _names: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Single flight: when a busy key's entry expires, every request in
        # flight misses at once; they share one SQL read instead of one each
        # (a profile of creates showed that stampede every TTL).
        self._reads = Coalescer(self._read_many, max_in_flight=2, max_batch=200)

    # --- secrets -------------------------------------------------------------

    def hash_secret(self, secret: str) -> str:
        if self.pepper:
            return hmac.new(self.pepper.encode(), secret.encode(), hashlib.sha256).hexdigest()
        return hashlib.sha256(secret.encode()).hexdigest()

    # --- use-cases -------------------------------------------------------------

    def _check_new(self, name: str, role: str) -> None:
        if not NAME_PATTERN.fullmatch(name):
            raise InvalidInput("name", "must be 1-64 of A-Z a-z 0-9 _ . - and start with a letter or digit")
        roles = self.permissions.roles
        if role not in roles:
            raise InvalidInput("role", f"must be one of the policy's roles: {', '.join(roles)}")

    async def create(
        self, *, name: str, role: str, expires_at: datetime | None = None, lifetime: timedelta | None = None,
        by: Principal | None = None,
    ) -> tuple[ApiKey, str]:
        """Make a key (expiring at `expires_at`, or `lifetime` from now); returns its row and the whole
        key, which is never shown again."""
        self._check_new(name, role)
        now = self.clock()
        if lifetime is not None:
            expires_at = now + lifetime
        if expires_at is not None:
            try:
                expires_at = expires_at.astimezone(UTC)
            except OverflowError:
                raise InvalidInput("expires_at", "is outside the years 1-9999 in UTC") from None
        if expires_at is not None and expires_at <= now:
            raise InvalidInput("expires_at", "must be in the future")
        key_id, secret = secrets.token_hex(6), secrets.token_hex(24)
        try:
            async with self.db.transaction() as session:
                key = await sql.insert_api_key(
                    session=session, key_id=key_id, name=name, role=role,
                    secret_hash=self.hash_secret(secret), created_at=now, expires_at=expires_at,
                )
        except IntegrityError:
            # Names are unique for good (a revoked key keeps its row): the constraint decides races.
            raise KeyNameTaken(name) from None
        audit.info("key created", extra={
            "event": "key.created", "key_id": key_id, "key_name": name, "role": role,
            "by_key_id": by.key_id if by else None, "by_key_name": by.name if by else "cli",
        })
        return key, f"lg_{key_id}_{secret}"

    async def list(self) -> list[ApiKey]:
        async with self.db.reading() as session:
            return await sql.list_api_keys(session=session)

    async def get(self, key_id: str) -> ApiKey:
        async with self.db.reading() as session:
            key = await sql.find_api_key(session=session, key_id=key_id)
        if key is None:
            raise KeyNotFound(key_id)
        return key

    async def get_by_name(self, name: str) -> ApiKey:
        async with self.db.reading() as session:
            key = await sql.find_api_key_by_name(session=session, name=name)
        if key is None:
            raise KeyNotFound(name)
        return key

    async def revoke(self, key_id: str, *, by: Principal | None = None) -> ApiKey:
        """Revoke for good: from the next request on here, within the cache TTL everywhere."""
        async with self.db.transaction() as session:
            key = await sql.find_api_key(session=session, key_id=key_id)
            if key is None:
                raise KeyNotFound(key_id)
            if key.enabled:
                key.enabled = False
                key.revoked_at = self.clock()
        self._checked.pop(key_id, None)
        audit.info("key revoked", extra={
            "event": "key.revoked", "key_id": key.key_id, "key_name": key.name,
            "by_key_id": by.key_id if by else None, "by_key_name": by.name if by else "cli",
        })
        return key

    # --- authentication -------------------------------------------------------

    async def authenticate(self, token: str) -> Principal:
        """The key's principal; Unauthenticated when it is malformed, unknown, revoked or expired."""
        match = KEY_PATTERN.fullmatch(token)
        if match is None:
            raise Unauthenticated("The credential is not a linkgate API key (lg_<id>_<secret>).")
        key_id, secret = match.groups()
        checked = await self._lookup(key_id)
        given = self.hash_secret(secret)
        if not hmac.compare_digest(given, checked.secret_hash if checked else _DUMMY_HASH) or checked is None:
            raise Unauthenticated("The API key is not valid.")
        if not checked.enabled:
            raise Unauthenticated("The API key was revoked.")
        if checked.expires_at is not None and checked.expires_at <= self.clock():
            raise Unauthenticated("The API key has expired.")
        return checked.principal

    async def _lookup(self, key_id: str) -> _Checked | None:
        now = self.monotonic()
        held = self._checked.get(key_id)
        if held is not None and held[0] > now:
            return held[1]
        checked = await self._reads.get(key_id)
        if len(self._checked) >= 10_000:
            # Guessed ids fill this too; forgetting everything only costs a read per key.
            self._checked.clear()
        self._checked[key_id] = (now + self.cache_ttl_seconds, checked)
        if checked is not None:
            self._names[checked.principal.id] = checked.principal.name
        return checked

    async def _read_many(self, key_ids: list[str]) -> list[_Checked | None]:
        async with self.db.reading() as session:
            keys = {key.key_id: key for key in await sql.find_api_keys(session=session, key_ids=key_ids)}
        return [
            None if key is None else _Checked(
                principal=Principal(id=key.id, key_id=key.key_id, name=key.name, role=key.role),
                secret_hash=key.secret_hash, enabled=key.enabled, expires_at=key.expires_at,
            )
            for key in (keys.get(key_id) for key_id in key_ids)
        ]

    # --- last use -------------------------------------------------------------

    def note_used(self, principal: Principal) -> None:
        """Remember that the key was used now; written by flush_last_used, at most once a minute."""
        written = self._written.get(principal.id)
        if written is None or self.monotonic() - written >= LAST_USED_EVERY_SECONDS:
            self._used[principal.id] = self.clock()

    async def flush_last_used(self) -> int:
        """Write the noted times; returns how many keys were written."""
        used, self._used = self._used, {}
        if not used:
            return 0
        try:
            async with self.db.transaction() as session:
                await sql.set_keys_last_used(session=session, used=used)
        except StorageUnavailable:
            for row_id, at in used.items():
                self._used.setdefault(row_id, at)
            raise
        now = self.monotonic()
        for row_id in used:
            self._written[row_id] = now
        return len(used)

    async def flush_last_used_forever(self, every_seconds: float = LAST_USED_EVERY_SECONDS) -> None:
        while True:
            await asyncio.sleep(every_seconds)
            with contextlib.suppress(StorageUnavailable):
                await self.flush_last_used()

    # --- names, for created_by / updated_by --------------------------------

    async def names(self, ids: set[int]) -> dict[int, str]:
        """The names of these keys (names never change, so they are remembered for good)."""
        missing = {row_id for row_id in ids if row_id not in self._names}
        if missing:
            async with self.db.reading() as session:
                self._names.update(await sql.key_names(session=session, ids=missing))
        return {row_id: self._names[row_id] for row_id in ids if row_id in self._names}
