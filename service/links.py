"""Link use-cases: create, read, list, update, delete. SQL first, then the cache."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError

from . import metrics
from .batching import Coalescer
from .codes import CodeCodec
from .config import Settings
from .errors import AliasTaken, Forbidden, InvalidInput, LinkNotFound, StorageUnavailable
from .pages.password_hash import hash_password
from .lifecycle.state import LinkFlags, check_permanent, check_window, normal_tags, with_flag
from .access.grant import Grant
from .coordination import events
from .query_filter import FilterLimits, PolicyError, QueryPolicy, check_policy
from .store import sql
from .store.cache import CachedLink, CacheUnavailable, LinkCache, cached_link
from .store.models import Link
from .targets import TargetRules, normalise_target

log = logging.getLogger(__name__)
audit = logging.getLogger("linkgate.audit")

_UNSET = object()
_MAX_ROW_ID = 2**63 - 1


def utc_now() -> datetime:
    return datetime.now(UTC)


def in_utc(moment: datetime | None, field: str) -> datetime | None:
    """The same instant in UTC, as it reads back from the database."""
    if moment is None:
        return None
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(field, "is outside the years 1-9999 in UTC") from None


def encode_cursor(row_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = text.partition(":")
        if kind != "id" or not value.isdigit():
            raise ValueError(text)
        row_id = int(value)
        # Row ids fit a signed 64-bit integer; a larger number would reach SQL
        # and fail there (SQLite raises OverflowError) instead of answering 422.
        if row_id > _MAX_ROW_ID:
            raise ValueError(text)
        return row_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("cursor", "is not a cursor this service handed out") from None


def cached_form(link: Link) -> CachedLink:
    return cached_link(link, deleted=link.deleted_at is not None)


@dataclass(frozen=True, eq=False)
class _NewLink:
    """A validated create waiting for its batch (compared by identity: every create is its own)."""

    url: str
    redirect_status: int
    query_policy: dict | None
    created_by_id: int | None = None
    # Lifecycle columns (sql.LIFECYCLE_COLUMNS) and "tags", only those given.
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Inserted:
    code: str


@dataclass
class LinkService:
    """Everything the link use-cases need, opened once by the app's lifespan."""

    settings: Settings
    db: sql.Database
    cache: LinkCache
    codec: CodeCodec
    target_rules: TargetRules
    filter_limits: FilterLimits
    clock: Callable[[], datetime] = utc_now
    # Called with a code whenever its link changes, so this replica's
    # in-memory redirect cache forgets it at once.
    on_change: list[Callable[[str], None]] = field(default_factory=list)
    redrop_after_seconds: float = 2.0
    # Set by the app's lifespan: what limited links admitted and SQL does not know yet.
    visit_limits: object | None = None
    # Set by the app's lifespan: tells the other replicas (pub/sub) and the
    # relay of committed changes, and keeps the expiry timers (coordination/).
    changes: object | None = None
    _background: set[asyncio.Task] = field(default_factory=set)
    _redrop_codes: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        # As many insert transactions at once as the pool has connections for;
        # each waits mostly on its commit.
        self._creates: Coalescer[_NewLink, Link] = Coalescer(
            self._insert_generated, max_in_flight=self.settings.database_pool_size, max_batch=500
        )

    # --- validation --------------------------------------------------------

    def _policy_dict(self, policy: QueryPolicy | None) -> dict | None:
        if policy is None:
            return None
        try:
            check_policy(policy, self.filter_limits)
        except PolicyError as exc:
            raise InvalidInput(exc.field, exc.reason) from None
        return policy.model_dump(mode="json")

    def _status(self, status: int | None) -> int:
        return status if status is not None else self.settings.default_redirect_status

    def _fallback(self, url: str | None) -> str | None:
        if url is None:
            return None
        try:
            return normalise_target(url, self.target_rules)
        except InvalidInput as exc:
            raise InvalidInput("fallback_url", exc.reason) from None

    def _new_lifecycle(
        self, *, status: int, title: str | None = None, tags: list[str] | None = None,
        valid_since: datetime | None = None, valid_until: datetime | None = None,
        max_visits: int | None = None, disabled: bool = False, fallback_url: str | None = None,
        past_allowed: bool = False,
    ) -> dict:
        """The lifecycle columns of a new link, checked; only those that differ from a plain link."""
        valid_since, valid_until = in_utc(valid_since, "valid_since"), in_utc(valid_until, "valid_until")
        check_window(valid_since, valid_until)
        if valid_until is not None and valid_until <= self.clock() and not past_allowed:
            raise InvalidInput("valid_until", "is in the past: the link would be gone before it is made")
        check_permanent(status, max_visits)
        values = {
            "title": title, "valid_since": valid_since, "valid_until": valid_until, "max_visits": max_visits,
            "flags": int(LinkFlags.DISABLED) if disabled else 0, "fallback_url": self._fallback(fallback_url),
            "tags": normal_tags(tags),
        }
        return {name: value for name, value in values.items() if value}

    # --- use-cases ---------------------------------------------------------

    async def create(
        self,
        *,
        grant: Grant,
        url: str,
        alias: str | None = None,
        redirect_status: int | None = None,
        query: QueryPolicy | None = None,
        password: str | None = None,
        **lifecycle,
    ) -> Link:
        """Create a link owned by the grant's key; `lifecycle`: title, tags, valid_since,
        valid_until, max_visits, disabled, fallback_url. `password`: stored only as its hash."""
        target = normalise_target(url, self.target_rules)
        if alias is not None:
            self.codec.check_alias(alias)
        policy = self._policy_dict(query)
        status = self._status(redirect_status)
        extra = self._new_lifecycle(status=status, **lifecycle)
        if password is not None:
            extra["password_hash"] = await hash_password(password)
        owner = grant.principal.id
        if alias is None:
            # Creates that arrive together share one transaction (group commit).
            link = await self._creates.get(
                _NewLink(url=target, redirect_status=status, query_policy=policy, created_by_id=owner, extra=extra)
            )
            self._audit("link.created", link.code, grant)
            return link
        now = self.clock()
        try:
            async with self.db.transaction() as session:
                link = await sql.insert_link(
                    session=session, url=target, redirect_status=status, query_policy=policy,
                    alias=alias, now=now, created_by_id=owner, **extra,
                )
                await events.record(session=session, now=now,
                                    events=[events.change(events.CREATED, link, tags=extra.get("tags", []))])
        except IntegrityError:
            # The unique constraint on code decides alias races.
            raise AliasTaken(alias) from None
        except StorageUnavailable:
            metrics.SQL_ERRORS.labels(operation="create").inc()
            raise
        await self._cache_new([link])
        self._audit("link.created", link.code, grant)
        return link

    @staticmethod
    def _audit(event: str, code: str, grant: Grant) -> None:
        # The key's public id and name, never anything of its secret.
        audit.info(event, extra={"event": event, "code": code, "key_id": grant.principal.key_id,
                                 "key_name": grant.principal.name})

    async def bulk_create(
        self, urls: list[str], *, redirect_status: int | None = None, owner_id: int | None = None
    ) -> list[str]:
        """Create many links in one transaction (seeding, imports); returns their codes in order.

        Each URL passes the same rules as a single create; one that does not
        refuses the whole batch.
        """
        status = self._status(redirect_status)
        batch = [
            _NewLink(url=normalise_target(url, self.target_rules), redirect_status=status, query_policy=None,
                     created_by_id=owner_id)
            for url in urls
        ]
        # An import is not a sign its links will be visited soon: unlike a
        # single create it does not fill Redis (a million imported links
        # would take ~170 MB there and a redis-py round of ~40 us each). It
        # only drops cached misses for the new codes, in one DEL.
        return [link.code for link in await self._insert_generated(batch, warm_cache=False)]

    async def _insert_generated(
        self, batch: list[_NewLink], *, warm_cache: bool = True
    ) -> list[Link] | list[_Inserted]:
        """Insert links with generated codes in one transaction, then warm (or clear) the cache."""
        now = self.clock()
        rows = [
            {"url": new.url, "redirect_status": new.redirect_status, "query_policy": new.query_policy,
             "created_by_id": new.created_by_id, **new.extra}
            for new in batch
        ]
        links = []
        try:
            async with self.db.transaction() as session:
                ids_codes = await sql.insert_generated_links(
                    session=session, rows=rows, now=now, encode=self.codec.encode
                )
                if warm_cache:
                    links = [self._built(row_id, code, new, now)
                             for (row_id, code), new in zip(ids_codes, batch, strict=True)]
                    await events.record(session=session, now=now, events=[
                        events.change(events.CREATED, link, tags=link.tags) for link in links])
        except StorageUnavailable:
            metrics.SQL_ERRORS.labels(operation="create").inc()
            raise
        if not warm_cache:
            # Seeding (the benchmark's million links) builds no Link objects
            # and writes no events: at ~10 us each they were a third of the
            # seeding time. Imports go through lifecycle.transfer instead.
            await self._clear_misses([code for _, code in ids_codes])
            return [_Inserted(code) for _, code in ids_codes]
        await self._cache_new(links)
        return links

    @staticmethod
    def _built(row_id: int, code: str, new: _NewLink, now: datetime) -> Link:
        """The Link just inserted, built from what was sent instead of read back."""
        columns = {name: value for name, value in new.extra.items() if name != "tags"}
        link = Link(id=row_id, code=code, is_alias=False, url=new.url, redirect_status=new.redirect_status,
                    query_policy=new.query_policy, created_at=now, updated_at=now, deleted_at=None,
                    created_by_id=new.created_by_id, updated_by_id=new.created_by_id, visit_count=0,
                    **{"flags": 0, **columns})
        link.tags = new.extra.get("tags", [])  # type: ignore[attr-defined]
        return link

    async def purge_gone(self, *, before: datetime) -> list[str]:
        """Delete links expired or used up before `before`; returns their codes."""
        async with self.db.transaction() as session:
            now = self.clock()
            codes = await sql.purge_gone(session=session, before=before, now=now)
            await events.record_for_codes(session=session, kind=events.DELETED, codes=codes, now=now, reason="purged")
        for code in codes:
            await self._invalidate(code)
        return codes

    # --- for imports (lifecycle.transfer) ---------------------------------

    def normalise(self, url: str) -> str:
        return normalise_target(url, self.target_rules)

    def lifecycle_for_import(self, *, status: int, **fields) -> dict:
        """As for a create, except that an exported link that expired may come back expired."""
        return self._new_lifecycle(status=status, past_allowed=True, **fields)

    async def clear_misses(self, codes: list[str]) -> None:
        await self._clear_misses(codes)

    async def _clear_misses(self, codes: list[str]) -> None:
        for code in codes:
            self._changed(code)
        if not await self.cache.drop(*codes):
            for code in codes:
                await self._remember_stale(code)

    async def _cache_new(self, links: list[Link]) -> None:
        # A cached "no such code" (a visitor tried the code before it existed)
        # would otherwise outlive the create.
        for link in links:
            self._changed(link.code)
        if not await self.cache.put_many({link.code: cached_form(link) for link in links}):
            for link in links:
                await self._remember_stale(link.code)
        if self.changes is not None:
            await self.changes.schedule_expiry([link for link in links if link.valid_until is not None])

    async def warm_cache(self, limit: int, *, chunk: int = 10_000) -> int:
        """Write the newest `limit` live links to Redis; returns how many were written.

        For after a Redis flush or failover, or an import: visitors then find
        those links in Redis instead of each first visit reaching SQL.
        """
        warmed, before = 0, None
        while warmed < limit:
            async with self.db.read_connection() as connection:
                rows = await sql.newest_live_targets(
                    connection=connection, limit=min(chunk, limit - warmed), before_id=before
                )
            if not rows:
                break
            links = {code: cached_link(target, deleted=False) for _, code, target in rows}
            if not await self.cache.put_many(links):
                raise CacheUnavailable("redis did not take the entries")
            warmed += len(rows)
            before = rows[-1][0]
        return warmed

    async def tag_counts(self, *, grant: Grant) -> list[tuple[str, int]]:
        """The tags on the links the grant reaches, with how many links carry each."""
        async with self.db.reading() as session:
            return await sql.tag_counts(session=session, visible=grant.visibility)

    async def tags(self, links: list[Link]) -> dict[int, list[str]]:
        """Each link's tags, by row id (from the link when it carries them, else in one query)."""
        known = {link.id: link.tags for link in links if hasattr(link, "tags")}
        missing = [link.id for link in links if link.id not in known]
        if missing:
            async with self.db.reading() as session:
                known.update(await sql.tags_of(session=session, link_ids=missing))
        return known

    async def get(self, code: str, *, grant: Grant) -> Link:
        """The link, if the grant reaches it; LinkNotFound as for an unknown code otherwise."""
        async with self.db.reading() as session:
            link = await sql.find_live_link(session=session, code=code, visible=grant.visibility)
        if link is None:
            raise LinkNotFound(code)
        return link

    async def list(
        self, *, grant: Grant, limit: int | None, cursor: str | None, filters: sql.LinkFilter = sql.LinkFilter()
    ) -> tuple[list[Link], str | None]:
        page = limit or self.settings.list_default_limit
        if not 1 <= page <= self.settings.list_max_limit:
            raise InvalidInput("limit", f"must be between 1 and {self.settings.list_max_limit}")
        before = decode_cursor(cursor) if cursor else None
        async with self.db.reading() as session:
            links = await sql.list_live_links(
                session=session, limit=page + 1, before_id=before, visible=grant.visibility,
                filters=filters, now=self.clock(),
            )
        if len(links) > page:
            links = links[:page]
            return links, encode_cursor(links[-1].id)
        return links, None

    async def update(self, code: str, *, grant: Grant, may_block: bool = False, **changes) -> Link:
        """Change what `changes` names (url, redirect_status, query, title, tags, valid_since,
        valid_until, max_visits, disabled, blocked, fallback_url, password); `blocked` needs `may_block`."""
        if "blocked" in changes and not may_block:
            raise Forbidden(grant.principal.role, "links", "block")
        if changes.get("url") is not None:
            changes["url"] = normalise_target(changes["url"], self.target_rules)
        if "query" in changes:
            changes["query_policy"] = self._policy_dict(changes.pop("query"))
        if "fallback_url" in changes:
            changes["fallback_url"] = self._fallback(changes["fallback_url"])
        for name in ("valid_since", "valid_until"):
            if name in changes:
                changes[name] = in_utc(changes[name], name)
        if "tags" in changes:
            changes["tags"] = normal_tags(changes["tags"] or [])
        if "password" in changes:
            password = changes.pop("password")
            changes["password_hash"] = None if password is None else await hash_password(password)
        async with self.db.transaction() as session:
            link = await sql.find_live_link(session=session, code=code, visible=grant.visibility)
            if link is None:
                raise LinkNotFound(code)
            self._apply(link, changes)
            if "tags" in changes:
                await sql.set_tags(session=session, link_id=link.id, tags=changes["tags"])
            link.updated_at = now = self.clock()
            link.updated_by_id = grant.principal.id
            await events.record(session=session, now=now, events=[events.change(
                events.UPDATED, link, tags=changes.get("tags"),
                changed=("query" if name == "query_policy" else name for name in changes))])
        await self._invalidate(code)
        if self.changes is not None and "valid_until" in changes:
            await self.changes.schedule_expiry([link])
        self._audit("link.updated", code, grant)
        return link

    def _apply(self, link: Link, changes: dict) -> None:
        """Set the changed fields on the row, refusing a state that cannot hold (422 naming the field)."""
        for name in ("url", "redirect_status", "query_policy", "title", "valid_since", "valid_until",
                     "max_visits", "fallback_url", "password_hash"):
            if name in changes:
                setattr(link, name, changes[name])
        if "disabled" in changes:
            link.flags = with_flag(link.flags or 0, LinkFlags.DISABLED, bool(changes["disabled"]))
        if "blocked" in changes:
            link.flags = with_flag(link.flags or 0, LinkFlags.BLOCKED, bool(changes["blocked"]))
        check_window(link.valid_since, link.valid_until)
        check_permanent(link.redirect_status, link.max_visits)
        if "max_visits" in changes and link.max_visits is not None:
            counted = (link.visit_count or 0) + (self.visit_limits.pending(link.code) if self.visit_limits else 0)
            if link.max_visits < counted:
                raise InvalidInput("max_visits", f"is below the {counted} visits already counted")
            if link.max_visits > counted:
                link.gone_at = None

    async def delete(self, code: str, *, grant: Grant) -> None:
        async with self.db.transaction() as session:
            link = await sql.find_live_link(session=session, code=code, visible=grant.visibility)
            if link is None:
                raise LinkNotFound(code)
            link.deleted_at = now = self.clock()
            link.updated_by_id = grant.principal.id
            await events.record(session=session, now=now, events=[events.change(events.DELETED, link)])
        await self._invalidate(code)
        self._audit("link.deleted", code, grant)

    # --- cache coherence ---------------------------------------------------

    def _changed(self, code: str) -> None:
        for callback in self.on_change:
            callback(code)
        if self.changes is not None:
            self.changes.committed(code)

    async def _invalidate(self, code: str) -> None:
        """Drop every cached copy; if Redis cannot be told, remember it in SQL."""
        self._changed(code)
        if not await self.cache.drop(code):
            await self._remember_stale(code)
            return
        # A redirect that read the old row just before this commit may still
        # write it back to Redis after the drop above; drop once more when any
        # such load has long finished.
        self._redrop_codes.add(code)
        task = asyncio.get_running_loop().create_task(self._drop_again(code))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def aclose(self) -> None:
        """Run the pending second drops now rather than lose them at shutdown."""
        pending = list(self._background)
        for task in pending:
            task.cancel()
        codes = {code for code in self._redrop_codes}
        self._redrop_codes.clear()
        if codes:
            await self.cache.drop(*codes)

    async def _drop_again(self, code: str) -> None:
        await asyncio.sleep(self.redrop_after_seconds)
        self._redrop_codes.discard(code)
        self._changed(code)
        if not await self.cache.drop(code):
            await self._remember_stale(code)

    async def _remember_stale(self, code: str) -> None:
        """Redis could not be told: record the code so the drain loop drops its entry later."""
        try:
            async with self.db.transaction() as session:
                await sql.remember_invalidation(session=session, code=code, now=self.clock())
        except StorageUnavailable:
            log.error("could not drop cached %s nor remember to; it may be stale for its TTL", code)

    async def drain_pending_invalidations(self) -> int:
        """Drop cache entries left stale while Redis was away; returns how many."""
        async with self.db.reading() as session:
            pending = await sql.pending_invalidations(session=session)
        if not pending:
            return 0
        if not await self.cache.drop(*(entry.code for entry in pending)):
            return 0
        async with self.db.transaction() as session:
            await sql.forget_invalidations(session=session, entries=pending)
        return len(pending)
