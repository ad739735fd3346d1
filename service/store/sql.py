"""SQL access: engines, and repository functions that take their session as a keyword."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, any_, bindparam, case, delete, event, func, insert, literal, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool

from ..errors import StorageUnavailable
from .models import ApiKey, Link, LinkTag, PendingInvalidation


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine; SQLite gets WAL, a busy timeout and foreign keys."""
    if url.startswith("sqlite"):
        kwargs: dict = {"connect_args": {"timeout": 30}}
        if ":memory:" in url or url.rstrip("/").endswith("sqlite+aiosqlite:"):
            kwargs["poolclass"] = StaticPool
        engine = create_async_engine(url, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # pragma: no cover - trivial
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)
    _ping_connections_that_sat_idle(engine)
    return engine


# A connection used within this many seconds is trusted without a ping.
PING_IF_IDLE_SECONDS = 5.0


def _ping_connections_that_sat_idle(engine: AsyncEngine) -> None:
    """pool_pre_ping, but only for connections that sat idle.

    SQLAlchemy's pre-ping costs a round trip on every checkout, which under
    load is most of a redirect batch's SQL time; a connection returned to
    the pool a moment ago is as good as a ping says. One that sat idle (the
    database may have restarted meanwhile) is pinged; if the ping fails the
    pool discards it and tries another (SQLAlchemy's DisconnectionError
    protocol, at most three attempts).
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _stamp(dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping_if_idle(dbapi_connection, record, proxy) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_IF_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError(str(exc)) from exc


# SQLSTATEs that mean the server is not there to answer: class 08 (connection
# exceptions), and a server shutting down or starting up (57P01 admin shutdown,
# 57P02 crash shutdown, 57P03 "the database system is shutting down", which a
# connect gets during a `pg_ctl stop`; asyncpg raises it as a plain DBAPIError).
_UNAVAILABLE_STATES = ("57P01", "57P02", "57P03")


def _sqlstate(exc: DBAPIError) -> str:
    for error in (exc.orig, getattr(exc.orig, "__cause__", None)):
        state = getattr(error, "sqlstate", None)
        if isinstance(state, str):
            return state
    return ""


def is_unavailable(exc: BaseException) -> bool:
    """True when an error means SQL could not be reached (not that the query was wrong)."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        state = _sqlstate(exc)
        if state.startswith("08") or state in _UNAVAILABLE_STATES:
            return True
    return isinstance(exc, (OSError, ConnectionError, TimeoutError))


@dataclass
class Database:
    """The write engine and the (possibly replica) engine of the redirect read path."""

    engine: AsyncEngine
    read_engine: AsyncEngine

    def __post_init__(self) -> None:
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False)
        # The redirect path reads with single SELECTs: in autocommit they go
        # out alone, without the BEGIN and ROLLBACK round trips a transaction
        # adds around each (same pool; asyncpg only flips a flag per checkout).
        self._single_reads = (
            self.read_engine.execution_options(isolation_level="AUTOCOMMIT")
            if self.read_engine.dialect.name == "postgresql" else self.read_engine
        )
        self._primary_single_reads = (
            self.engine.execution_options(isolation_level="AUTOCOMMIT")
            if self.engine.dialect.name == "postgresql" else self.engine
        )

    @property
    def has_replica(self) -> bool:
        """Whether redirect reads go to a replica (LINKGATE_DATABASE_READ_URL), which may lag the primary."""
        return self.read_engine is not self.engine

    @classmethod
    def open(cls, url: str, read_url: str | None = None, *, pool_size: int = 10) -> Database:
        engine = make_engine(url, pool_size=pool_size)
        read_engine = make_engine(read_url, pool_size=pool_size) if read_url else engine
        return cls(engine=engine, read_engine=read_engine)

    async def close(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction; an unreachable database becomes StorageUnavailable."""
        try:
            async with self.sessions.begin() as session:
                yield session
        except IntegrityError:
            raise
        except Exception as exc:
            if is_unavailable(exc):
                raise StorageUnavailable(str(exc)) from exc
            raise

    @contextlib.asynccontextmanager
    async def read_connection(self, *, primary: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection to the redirect read path's engine (the replica when configured), for
        single-statement reads: on PostgreSQL in autocommit, so no transaction wraps them.

        primary=True: the primary's, even with a replica, for reads that must
        see every commit (a replica lags, and pg_wal_replay_pause() can stop it).
        """
        try:
            async with (self._primary_single_reads if primary else self._single_reads).connect() as connection:
                yield connection
        except Exception as exc:
            if is_unavailable(exc):
                raise StorageUnavailable(str(exc)) from exc
            raise

    @contextlib.asynccontextmanager
    async def reading(self, *, replica: bool = False) -> AsyncIterator[AsyncSession]:
        maker = self.read_sessions if replica else self.sessions
        try:
            async with maker() as session:
                yield session
        except Exception as exc:
            if is_unavailable(exc):
                raise StorageUnavailable(str(exc)) from exc
            raise


# --- repository ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Visibility:
    """Which links a query may see: a specification every link query of the API applies.

    Repository functions that read or change links on behalf of a key take
    one as a required keyword, so no use-case can forget the ownership
    filter: ``EVERYTHING`` for roles that may touch any link, ``owned_by(id)``
    for roles limited to the links their key created.
    """

    owner_id: int | None

    @classmethod
    def owned_by(cls, key_row_id: int) -> Visibility:
        return cls(owner_id=key_row_id)

    def apply(self, query):
        return query if self.owner_id is None else query.where(Link.created_by_id == self.owner_id)


Visibility.EVERYTHING = Visibility(owner_id=None)  # type: ignore[attr-defined]


async def insert_link(
    *,
    session: AsyncSession,
    url: str,
    redirect_status: int,
    query_policy: dict | None,
    alias: str | None,
    now: datetime,
    created_by_id: int | None,
    tags: list[str] | None = None,
    **lifecycle,
) -> Link:
    """Insert a row with its alias (and tags); `lifecycle`: any of LIFECYCLE_COLUMNS."""
    link = Link(
        code=alias,
        is_alias=alias is not None,
        url=url,
        redirect_status=redirect_status,
        query_policy=query_policy,
        created_at=now,
        updated_at=now,
        created_by_id=created_by_id,
        updated_by_id=created_by_id,
        visit_count=0,
        **{"flags": 0, **lifecycle},
    )
    session.add(link)
    await session.flush()
    if tags:
        await set_tags(session=session, link_id=link.id, tags=tags)
    return link


# What a new link may carry besides its URL, status and policy (None or 0 when not given).
LIFECYCLE_COLUMNS = ("title", "valid_since", "valid_until", "max_visits", "flags", "fallback_url", "password_hash")
_COPY_COLUMNS = (
    "id", "code", "url", "redirect_status", "query_policy", "is_alias", "created_at", "updated_at",
    "created_by_id", "updated_by_id", *LIFECYCLE_COLUMNS,
)


def _row_values(row: dict, now: datetime) -> dict:
    return {
        "url": row["url"], "redirect_status": row["redirect_status"], "query_policy": row["query_policy"],
        "is_alias": False, "created_at": now, "updated_at": now,
        "created_by_id": row.get("created_by_id"), "updated_by_id": row.get("created_by_id"),
        **{name: row.get(name) for name in LIFECYCLE_COLUMNS}, "flags": row.get("flags") or 0,
    }


async def insert_generated_links(
    *, session: AsyncSession, rows: list[dict], now: datetime, encode: Callable[[int], str]
) -> list[tuple[int, str]]:
    """Insert links whose codes are generated from their ids; returns (id, code) in row order.

    Each row has url, redirect_status, query_policy, and may have created_by_id,
    the LIFECYCLE_COLUMNS and tags. On PostgreSQL the ids come from the
    sequence first, so each row is written once, code included, by COPY
    (asyncpg's copy_records_to_table), far faster than INSERTs. On SQLite the
    rows are inserted, their ids returned, then their codes set: ids come from
    AUTOINCREMENT, so concurrent writers can never collide.
    """
    if not rows:
        return []
    if session.bind.dialect.name == "postgresql":
        sequence = func.nextval(literal("links_id_seq"))
        ids = (await session.execute(select(sequence).select_from(func.generate_series(1, len(rows))))).scalars().all()
        ids_codes = [(row_id, encode(row_id)) for row_id in ids]
        values = [{"id": row_id, "code": code, **_row_values(row, now)}
                  for (row_id, code), row in zip(ids_codes, rows, strict=True)]
        if any(value["query_policy"] for value in values):
            # COPY takes no JSON from asyncpg records; a batch with policies is INSERTed.
            await session.execute(insert(Link), values)
        else:
            connection = await session.connection()
            raw = await connection.get_raw_connection()
            await raw.driver_connection.copy_records_to_table(
                Link.__tablename__, records=[tuple(v[c] for c in _COPY_COLUMNS) for v in values],
                columns=_COPY_COLUMNS,
            )
    else:
        values = [_row_values(row, now) for row in rows]
        result = await session.execute(insert(Link).returning(Link.id, sort_by_parameter_order=True), values)
        ids_codes = [(row_id, encode(row_id)) for row_id in result.scalars().all()]
        # ORM bulk UPDATE by primary key: one executemany.
        await session.execute(update(Link), [{"id": row_id, "code": code} for row_id, code in ids_codes])
    tags = [(row_id, tag) for (row_id, _), row in zip(ids_codes, rows, strict=True) for tag in row.get("tags") or ()]
    await _insert_tags(session, tags)
    return ids_codes


async def _insert_tags(session: AsyncSession, tags: list[tuple[int, str]]) -> None:
    if not tags:
        return
    if session.bind.dialect.name == "postgresql":
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        await raw.driver_connection.copy_records_to_table(LinkTag.__tablename__, records=tags,
                                                          columns=("link_id", "tag"))
    else:
        await session.execute(insert(LinkTag), [{"link_id": link_id, "tag": tag} for link_id, tag in tags])


async def set_tags(*, session: AsyncSession, link_id: int, tags: list[str]) -> None:
    await session.execute(delete(LinkTag).where(LinkTag.link_id == link_id))
    if tags:
        await session.execute(insert(LinkTag), [{"link_id": link_id, "tag": tag} for tag in tags])


async def tag_counts(*, session: AsyncSession, visible: Visibility) -> list[tuple[str, int]]:
    """Each tag on live links `visible` sees, with how many it is on; most used first."""
    query = visible.apply(
        select(LinkTag.tag, func.count()).join(Link, Link.id == LinkTag.link_id).where(Link.deleted_at.is_(None))
    ).group_by(LinkTag.tag).order_by(func.count().desc(), LinkTag.tag)
    return [(tag, count) for tag, count in (await session.execute(query)).all()]


async def tags_of(*, session: AsyncSession, link_ids: list[int]) -> dict[int, list[str]]:
    if not link_ids:
        return {}
    rows = (await session.execute(
        select(LinkTag.link_id, LinkTag.tag).where(LinkTag.link_id.in_(link_ids)).order_by(LinkTag.tag)
    )).all()
    out: dict[int, list[str]] = {}
    for link_id, tag in rows:
        out.setdefault(link_id, []).append(tag)
    return out


async def find_live_link(*, session: AsyncSession, code: str, visible: Visibility) -> Link | None:
    """The link with this code unless it was deleted or is not `visible`; None otherwise."""
    query = visible.apply(select(Link).where(Link.code == code, Link.deleted_at.is_(None)))
    return (await session.execute(query)).scalar_one_or_none()


# Built once: constructing the statement per batch showed in profiles.
# Deleted links are found too: their code answers 410 (gone), not 404.
_TARGET_COLUMNS = (
    Link.code, Link.url, Link.redirect_status, Link.query_policy, Link.valid_since, Link.valid_until,
    Link.max_visits, Link.flags, Link.fallback_url, Link.deleted_at, Link.id, Link.password_hash.is_not(None),
)
_TARGETS = select(*_TARGET_COLUMNS).where(Link.code.in_(bindparam("codes", expanding=True)))
# PostgreSQL: the codes as one array parameter. An expanding IN renders one
# statement text per batch size, and each is prepared anew; this is one
# statement, prepared once per connection, whatever the batch.
_TARGETS_PG = select(*_TARGET_COLUMNS).where(
    Link.code == any_(bindparam("codes", type_=postgresql.ARRAY(Link.code.type)))
)


@dataclass(frozen=True, slots=True)
class Target:
    """What the redirect needs of one link, as one SQL row holds it."""

    url: str
    redirect_status: int
    query_policy: dict | None
    valid_since: datetime | None
    valid_until: datetime | None
    max_visits: int | None
    flags: int
    fallback_url: str | None
    deleted: bool
    id: int
    protected: bool = False  # it has a password (the hash itself never leaves SQL on this path)


def _target(row) -> Target:
    _, url, status, policy, since, until, max_visits, flags, fallback, deleted_at, row_id, protected = row
    since = since.replace(tzinfo=UTC) if since is not None and since.tzinfo is None else since
    until = until.replace(tzinfo=UTC) if until is not None and until.tzinfo is None else until
    return Target(url, status, policy, since, until, max_visits, flags or 0, fallback, deleted_at is not None, row_id,
                  bool(protected))


async def find_targets(*, connection: AsyncConnection, codes: list[str]) -> dict[str, Target]:
    """The redirect's view of each link among `codes` (deleted ones included), by code.

    Core, not the ORM: this is the redirect path's SQL, one query for a batch
    of codes, and ORM identity bookkeeping would only cost time here.
    """
    statement = _TARGETS_PG if connection.dialect.name == "postgresql" else _TARGETS
    rows = (await connection.execute(statement, {"codes": codes})).all()
    return {row[0]: _target(row) for row in rows}


async def find_password_hash(*, connection: AsyncConnection, code: str) -> str | None:
    """The argon2id hash of a live link's password; None when it has none (or no such live link)."""
    return (await connection.execute(
        select(Link.password_hash).where(Link.code == code, Link.deleted_at.is_(None))
    )).scalar_one_or_none()


async def find_any_link(*, session: AsyncSession, code: str) -> Link | None:
    """The link with this code, deleted or not (the preview page tells a deleted link's 410 from a 404)."""
    return (await session.execute(select(Link).where(Link.code == code))).scalar_one_or_none()


async def newest_live_targets(
    *, connection: AsyncConnection, limit: int, before_id: int | None
) -> list[tuple[int, str, Target]]:
    """(id, code, target) of live links, newest first (keyset on id)."""
    query = select(Link.id, *_TARGET_COLUMNS).where(Link.deleted_at.is_(None), Link.code.is_not(None))
    if before_id is not None:
        query = query.where(Link.id < before_id)
    rows = (await connection.execute(query.order_by(Link.id.desc()).limit(limit))).all()
    return [(row[0], row[1], _target(row[1:])) for row in rows]


@dataclass(frozen=True)
class LinkFilter:
    """What a listing asks for; every field optional. Statuses are the derived ones (lifecycle.state)."""

    tags: tuple[str, ...] = ()
    q: str | None = None
    status: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def apply(self, query, now: datetime):
        for tag in self.tags:
            query = query.where(
                select(LinkTag.link_id).where(LinkTag.link_id == Link.id, LinkTag.tag == tag).exists()
            )
        if self.q:
            # Bound as a parameter; LIKE's own wildcards in it are escaped.
            needle = "%" + self.q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            query = query.where(
                func.lower(Link.code).like(needle, escape="\\")
                | func.lower(Link.url).like(needle, escape="\\")
                | func.lower(func.coalesce(Link.title, "")).like(needle, escape="\\")
            )
        if self.status:
            query = query.where(status_clause(self.status, now))
        if self.created_after is not None:
            query = query.where(Link.created_at > self.created_after)
        if self.created_before is not None:
            query = query.where(Link.created_at < self.created_before)
        return query


def status_clause(status: str, now: datetime):
    """SQL for lifecycle.state.derive_status(...) == status, in the same order of precedence."""
    blocked = Link.flags.op("&")(2) != 0
    disabled = Link.flags.op("&")(1) != 0
    expired = and_(Link.valid_until.is_not(None), Link.valid_until <= now)
    exhausted = and_(Link.max_visits.is_not(None), Link.visit_count >= Link.max_visits)
    scheduled = and_(Link.valid_since.is_not(None), Link.valid_since > now)
    order = [("blocked", blocked), ("disabled", disabled), ("expired", expired), ("exhausted", exhausted),
             ("scheduled", scheduled)]
    earlier = []
    for name, condition in order:
        if name == status:
            return and_(condition, *[~c for c in earlier])
        earlier.append(condition)
    return and_(*[~c for c in earlier])  # active


async def list_live_links(
    *, session: AsyncSession, limit: int, before_id: int | None, visible: Visibility,
    filters: LinkFilter = LinkFilter(), now: datetime | None = None,
) -> list[Link]:
    """Newest first, keyset-paginated on the row id, only what is `visible` and passes `filters`."""
    query = visible.apply(select(Link).where(Link.deleted_at.is_(None), Link.code.is_not(None)))
    query = filters.apply(query, now or datetime.now(UTC))
    if before_id is not None:
        query = query.where(Link.id < before_id)
    query = query.order_by(Link.id.desc()).limit(limit)
    return list((await session.execute(query)).scalars())


async def remember_invalidation(*, session: AsyncSession, code: str, now: datetime) -> None:
    existing = await session.get(PendingInvalidation, code)
    if existing is None:
        session.add(PendingInvalidation(code=code, created_at=now))
    else:
        existing.created_at = now


async def pending_invalidations(*, session: AsyncSession, limit: int = 500) -> list[PendingInvalidation]:
    query = select(PendingInvalidation).order_by(PendingInvalidation.created_at).limit(limit)
    return list((await session.execute(query)).scalars())


async def forget_invalidations(*, session: AsyncSession, entries: list[PendingInvalidation]) -> None:
    """Drop entries that were handled, unless a newer write re-armed them meanwhile."""
    for entry in entries:
        await session.execute(
            delete(PendingInvalidation).where(
                PendingInvalidation.code == entry.code,
                PendingInvalidation.created_at == entry.created_at,
            )
        )


# --- API keys ----------------------------------------------------------------


async def insert_api_key(
    *, session: AsyncSession, key_id: str, name: str, role: str, secret_hash: str,
    created_at: datetime, expires_at: datetime | None,
) -> ApiKey:
    key = ApiKey(key_id=key_id, name=name, role=role, secret_hash=secret_hash, enabled=True,
                 created_at=created_at, expires_at=expires_at)
    session.add(key)
    await session.flush()
    return key


async def find_api_key(*, session: AsyncSession, key_id: str) -> ApiKey | None:
    return (await session.execute(select(ApiKey).where(ApiKey.key_id == key_id))).scalar_one_or_none()


async def find_api_keys(*, session: AsyncSession, key_ids: list[str]) -> list[ApiKey]:
    return list((await session.execute(select(ApiKey).where(ApiKey.key_id.in_(key_ids)))).scalars())


async def find_api_key_by_name(*, session: AsyncSession, name: str) -> ApiKey | None:
    return (await session.execute(select(ApiKey).where(ApiKey.name == name))).scalar_one_or_none()


async def list_api_keys(*, session: AsyncSession) -> list[ApiKey]:
    return list((await session.execute(select(ApiKey).order_by(ApiKey.id))).scalars())


async def key_names(*, session: AsyncSession, ids: set[int]) -> dict[int, str]:
    rows = (await session.execute(select(ApiKey.id, ApiKey.name).where(ApiKey.id.in_(sorted(ids))))).all()
    return {row_id: name for row_id, name in rows}


async def set_keys_last_used(*, session: AsyncSession, used: dict[int, datetime]) -> None:
    # ORM bulk UPDATE by primary key: one executemany.
    await session.execute(update(ApiKey), [{"id": row_id, "last_used_at": at} for row_id, at in used.items()])


# --- visit limits -------------------------------------------------------------


async def visit_count(*, connection: AsyncConnection, code: str) -> int:
    counted = (await connection.execute(select(Link.visit_count).where(Link.code == code))).scalar_one_or_none()
    return counted or 0


async def add_visits(*, session: AsyncSession, counts: dict[str, int], now: datetime) -> None:
    """Add each link's visits to its count; a link that reaches its limit gets its gone_at."""
    for code, count in counts.items():
        new_count = Link.visit_count + count
        await session.execute(
            update(Link).where(Link.code == code).values(
                visit_count=new_count,
                gone_at=case(
                    (and_(Link.gone_at.is_(None), Link.max_visits.is_not(None), new_count >= Link.max_visits), now),
                    else_=Link.gone_at,
                ),
            )
        )


async def exhausted_links(*, session: AsyncSession, codes: list[str]) -> list:
    """Those of `codes` whose visits reached their max_visits (Core rows with the link's columns)."""
    if not codes:
        return []
    return (await session.execute(select(*Link.__table__.columns).where(
        Link.code.in_(codes), Link.max_visits.is_not(None), Link.visit_count >= Link.max_visits,
        Link.deleted_at.is_(None),
    ))).all()


async def count_visit(*, session: AsyncSession, code: str, counts: bool, now: datetime) -> bool:
    """Admit one visit in SQL alone (Redis away): True unless the link is used up. Exact: the
    conditional UPDATE is atomic."""
    if not counts:
        row = (await session.execute(
            select(Link.visit_count, Link.max_visits).where(Link.code == code)
        )).one_or_none()
        return row is not None and (row[1] is None or row[0] < row[1])
    new_count = Link.visit_count + 1
    admitted = (await session.execute(
        update(Link).where(
            Link.code == code, Link.max_visits.is_not(None), Link.visit_count < Link.max_visits
        ).values(
            visit_count=new_count,
            gone_at=case((new_count >= Link.max_visits, now), else_=Link.gone_at),
        ).returning(Link.id)
    )).first()
    return admitted is not None


# --- import, export, purge ----------------------------------------------------


async def existing_codes(*, session: AsyncSession, codes: list[str]) -> dict[str, int | None]:
    """Which of `codes` are taken (deleted links included: codes are never reused), and by whom."""
    if not codes:
        return {}
    rows = (await session.execute(select(Link.code, Link.created_by_id).where(Link.code.in_(codes)))).all()
    return {code: owner for code, owner in rows}


async def insert_coded_links(*, session: AsyncSession, rows: list[dict], now: datetime) -> None:
    """Insert links whose code is given: an alias (``is_alias``), or a generated code whose row id
    comes with it (``id``: an import keeping the codes of an export)."""
    if not rows:
        return
    postgres = session.bind.dialect.name == "postgresql"
    needs_id = [row for row in rows if row.get("id") is None]
    if postgres and needs_id:
        sequence = func.nextval(literal("links_id_seq"))
        ids = (await session.execute(select(sequence).select_from(func.generate_series(1, len(needs_id))))).scalars().all()
        for row, row_id in zip(needs_id, ids, strict=True):
            row["id"] = row_id
    values = []
    for row in rows:
        value = {**_row_values(row, now), "code": row["code"], "is_alias": row.get("is_alias", False)}
        if row.get("id") is not None:
            value["id"] = row["id"]
        values.append(value)
    if postgres:
        await session.execute(insert(Link), values)
        # Ids given by an import must never be handed out again by the sequence.
        await session.execute(text(
            "SELECT setval('links_id_seq', GREATEST((SELECT MAX(id) FROM links), "
            "(SELECT last_value FROM links_id_seq)))"
        ))
        ids = [value["id"] for value in values]
    else:
        ids = []
        for value in values:  # SQLite: AUTOINCREMENT takes explicit ids and moves past them
            ids.append((await session.execute(insert(Link).returning(Link.id), [value])).scalar_one())
    await _insert_tags(session, [(row_id, tag) for row_id, row in zip(ids, rows, strict=True)
                                 for tag in row.get("tags") or ()])


async def export_links(*, session: AsyncSession, after_id: int, limit: int) -> list[tuple[Link, list[str]]]:
    """Live links in id order (keyset after `after_id`), with their tags."""
    links = list((await session.execute(
        select(Link).where(Link.deleted_at.is_(None), Link.code.is_not(None), Link.id > after_id)
        .order_by(Link.id).limit(limit)
    )).scalars())
    ids = [link.id for link in links]
    tags: dict[int, list[str]] = {}
    if ids:
        for link_id, tag in (await session.execute(
            select(LinkTag.link_id, LinkTag.tag).where(LinkTag.link_id.in_(ids)).order_by(LinkTag.tag)
        )).all():
            tags.setdefault(link_id, []).append(tag)
    return [(link, tags.get(link.id, [])) for link in links]


async def purge_gone(*, session: AsyncSession, before: datetime, now: datetime) -> list[str]:
    """Delete (keeping the rows, so codes stay reserved) links expired or used up before `before`."""
    gone = and_(
        Link.deleted_at.is_(None),
        (Link.valid_until.is_not(None) & (Link.valid_until < before)) | (Link.gone_at.is_not(None) & (Link.gone_at < before)),
    )
    codes = list((await session.execute(select(Link.code).where(gone))).scalars())
    if codes:
        await session.execute(update(Link).where(gone).values(deleted_at=now))
    return codes
